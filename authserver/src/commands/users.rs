//! `authserver users …`: bootstrap end users directly in the database. Passwords are
//! read from stdin only, never echoed, logged or printed.

use anyhow::Context as _;
use secrecy::SecretString;
use serde_json::json;

use super::clients::tenant_or_default;
use super::keys::ensure_declared_tenants;
use super::{Context, UsageError, open, require_current_schema};
use crate::cli::{CreateUserArgs, UsersCommand};
use crate::clients::Actor;
use crate::domain::user::NewUser;
use crate::mfa::MfaError;
use crate::store::users::StoredUser;
use crate::users;

pub async fn run(settings: &crate::config::Settings, cmd: UsersCommand) -> anyhow::Result<()> {
    let ctx = open(settings.clone(), true).await?;
    require_current_schema(&ctx.store).await?;
    ensure_declared_tenants(&ctx).await?;
    let result = match cmd {
        UsersCommand::Create(args) => create(&ctx, *args).await,
        UsersCommand::List { tenant } => list(&ctx, tenant).await,
        UsersCommand::Delete { username, tenant } => delete(&ctx, tenant, &username).await,
        UsersCommand::SetPassword {
            username, tenant, ..
        } => set_password(&ctx, tenant, &username).await,
        UsersCommand::ResetMfa { username, tenant } => reset_mfa(&ctx, tenant, &username).await,
        UsersCommand::ResetPasskeys { username, tenant } => {
            reset_passkeys(&ctx, tenant, &username).await
        }
        UsersCommand::SetMfaRequired {
            username,
            tenant,
            required,
        } => set_mfa_required(&ctx, tenant, &username, required).await,
        UsersCommand::Consents { username, tenant } => consents(&ctx, tenant, &username).await,
        UsersCommand::RevokeConsent {
            username,
            client_id,
            tenant,
        } => revoke_consent(&ctx, tenant, &username, &client_id).await,
    };
    ctx.store.close().await;
    result
}

/// Reads the password from stdin: everything up to EOF, minus one trailing newline (what
/// `echo` or a heredoc adds). Bounded, so a stray pipe cannot exhaust memory.
async fn read_password() -> anyhow::Result<SecretString> {
    const LIMIT: u64 = 64 * 1024;
    let buf = tokio::task::spawn_blocking(|| {
        use std::io::Read as _;
        let mut buf = Vec::new();
        std::io::stdin()
            .take(LIMIT + 1)
            .read_to_end(&mut buf)
            .map(|_| buf)
    })
    .await?
    .context("failed to read the password from stdin")?;
    if buf.len() as u64 > LIMIT {
        return Err(UsageError("the password on stdin is too long".to_owned()).into());
    }
    let mut text = String::from_utf8(buf)
        .map_err(|_| UsageError("the password on stdin is not UTF-8".to_owned()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(UsageError("no password on stdin".to_owned()).into());
    }
    Ok(SecretString::from(text))
}

fn usage_or(e: users::Error, what: &'static str) -> anyhow::Error {
    match e {
        e @ (users::Error::Invalid(_)
        | users::Error::AlreadyExists(_)
        | users::Error::UnknownTenant(_)) => UsageError(e.to_string()).into(),
        other => anyhow::Error::new(other).context(what),
    }
}

async fn create(ctx: &Context, args: CreateUserArgs) -> anyhow::Result<()> {
    let password = read_password().await?;
    println!("{}", create_value(ctx, args, &password).await?);
    Ok(())
}

/// `users create` with `password` (read from stdin by the command): what it prints.
pub(crate) async fn create_value(
    ctx: &Context,
    args: CreateUserArgs,
    password: &SecretString,
) -> anyhow::Result<serde_json::Value> {
    let tenant = tenant_or_default(ctx, args.tenant.clone()).await?;
    let mut profile = serde_json::Map::new();
    for (claim, value) in [
        ("name", &args.name),
        ("given_name", &args.given_name),
        ("family_name", &args.family_name),
    ] {
        if let Some(v) = value {
            profile.insert(claim.to_owned(), v.clone().into());
        }
    }
    let user = NewUser {
        username: args.username,
        email: args.email,
        email_verified: args.email_verified,
        profile,
    };
    let created = ctx
        .users
        .create(&tenant, &user, password, Actor::Cli)
        .await
        .map_err(|e| usage_or(e, "failed to create the user"))?;
    Ok(json!({ "user_id": created.user_id, "username": created.username }))
}

async fn list(ctx: &Context, tenant: Option<String>) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    for u in ctx.users.list(&tenant).await? {
        println!(
            "{}",
            json!({
                "tenant": tenant,
                "user_id": u.user_id,
                "username": u.username,
                "email": u.email,
                "email_verified": u.email_verified,
                "profile": u.profile,
                "has_password": u.password_hash.is_some(),
                "created_at": u.created_at,
                "updated_at": u.updated_at,
            })
        );
    }
    Ok(())
}

async fn delete(ctx: &Context, tenant: Option<String>, username: &str) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    if ctx.users.delete(&tenant, username, Actor::Cli).await? {
        println!("deleted user {username}");
        Ok(())
    } else {
        anyhow::bail!("user {username:?} does not exist in tenant {tenant:?}")
    }
}

async fn set_password(ctx: &Context, tenant: Option<String>, username: &str) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    let password = read_password().await?;
    match ctx
        .users
        .set_password(&tenant, username, &password, Actor::Cli)
        .await
    {
        Ok(u) => {
            println!(
                "{}",
                json!({ "user_id": u.user_id, "username": u.username })
            );
            Ok(())
        }
        Err(users::Error::NotFound(_)) => {
            anyhow::bail!("user {username:?} does not exist in tenant {tenant:?}")
        }
        Err(e) => Err(usage_or(e, "failed to set the password")),
    }
}

async fn existing_user(ctx: &Context, tenant: &str, username: &str) -> anyhow::Result<StoredUser> {
    ctx.users
        .get_by_username(tenant, username)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user {username:?} does not exist in tenant {tenant:?}"))
}

/// Prints the user's MFA state as one JSON line (never a secret or a code).
async fn print_mfa(ctx: &Context, user: &StoredUser, removed: Option<bool>) -> anyhow::Result<()> {
    let s = ctx
        .mfa
        .status(&user.tenant_id, &user.user_id)
        .await
        .context("failed to read the user's MFA state")?;
    let mut out = json!({
        "user_id": user.user_id,
        "username": user.username,
        "totp_enrolled": s.totp_enrolled,
        "recovery_codes_left": s.recovery_codes_left,
        "passkeys": s.passkeys,
        "mfa_required": s.required_for_user,
    });
    if let Some(removed) = removed {
        out["removed"] = removed.into();
    }
    println!("{out}");
    Ok(())
}

async fn reset_mfa(ctx: &Context, tenant: Option<String>, username: &str) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    let user = existing_user(ctx, &tenant, username).await?;
    let removed = ctx
        .mfa
        .remove(&tenant, &user.user_id, Actor::Cli.as_str())
        .await
        .context("failed to reset the user's MFA")?;
    print_mfa(ctx, &user, Some(removed)).await
}

async fn reset_passkeys(
    ctx: &Context,
    tenant: Option<String>,
    username: &str,
) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    let user = existing_user(ctx, &tenant, username).await?;
    let removed = crate::passkeys::PasskeyService::new(ctx.store.clone(), ctx.clock.clone())
        .remove_all(&tenant, &user.user_id, Actor::Cli.as_str())
        .await
        .context("failed to remove the user's passkeys")?;
    print_mfa(ctx, &user, Some(removed > 0)).await
}

async fn set_mfa_required(
    ctx: &Context,
    tenant: Option<String>,
    username: &str,
    required: bool,
) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    let user = existing_user(ctx, &tenant, username).await?;
    match ctx
        .mfa
        .set_required(&tenant, &user.user_id, required, Actor::Cli.as_str())
        .await
    {
        Ok(()) => print_mfa(ctx, &user, None).await,
        // Deleted between the lookup and the update.
        Err(MfaError::UnknownUser) => {
            anyhow::bail!("user {username:?} does not exist in tenant {tenant:?}")
        }
        Err(e) => Err(anyhow::Error::new(e).context("failed to set mfa_required")),
    }
}

async fn consents(ctx: &Context, tenant: Option<String>, username: &str) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    match ctx.users.consents(&tenant, username).await {
        Ok(list) => {
            for c in list {
                println!(
                    "{}",
                    json!({
                        "client_id": c.client_id,
                        "scopes": c.scopes,
                        "granted_at": c.created_at,
                        "updated_at": c.updated_at,
                    })
                );
            }
            Ok(())
        }
        Err(users::Error::NotFound(_)) => {
            anyhow::bail!("user {username:?} does not exist in tenant {tenant:?}")
        }
        Err(e) => Err(usage_or(e, "failed to list the user's consents")),
    }
}

async fn revoke_consent(
    ctx: &Context,
    tenant: Option<String>,
    username: &str,
    client_id: &str,
) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    match ctx
        .users
        .revoke_consent(&tenant, username, client_id, Actor::Cli)
        .await
    {
        Ok(revoked) => {
            println!(
                "{}",
                json!({ "username": username, "client_id": client_id, "revoked": revoked })
            );
            Ok(())
        }
        Err(users::Error::NotFound(_)) => {
            anyhow::bail!("user {username:?} does not exist in tenant {tenant:?}")
        }
        Err(e) => Err(usage_or(e, "failed to revoke the consent")),
    }
}
