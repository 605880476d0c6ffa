//! `authserver keys …`

use anyhow::Context as _;

use super::{Context, open, require_current_schema};
use crate::cli::KeysCommand;
use crate::clock::rfc3339;
use crate::config::Settings;
use crate::crypto::kek::Kek;
use crate::domain::signing_key::RotationMode;

pub async fn run(settings: &Settings, cmd: KeysCommand) -> anyhow::Result<()> {
    let ctx = open(settings.clone(), true).await?;
    require_current_schema(&ctx.store).await?;
    ensure_declared_tenants(&ctx).await?;
    let result = match cmd {
        KeysCommand::Generate { tenant } => generate(&ctx, tenant).await,
        KeysCommand::Rotate {
            tenant,
            if_due,
            now,
        } => {
            let mode = if now {
                RotationMode::Now
            } else if if_due {
                RotationMode::IfDue
            } else {
                RotationMode::Force
            };
            rotate(&ctx, tenant, mode).await
        }
        KeysCommand::List { tenant, json } => list(&ctx, tenant, json).await,
        KeysCommand::Reencrypt { old_key_env } => reencrypt(&ctx, &old_key_env).await,
    };
    ctx.store.close().await;
    result
}

/// Tenants from the config file (and `--dev`'s default) exist before keys are made for
/// them; existing rows are left as they are (only `serve` updates them).
pub(crate) async fn ensure_declared_tenants(ctx: &Context) -> anyhow::Result<()> {
    for spec in &ctx.settings.tenants {
        if ctx.store.get_tenant(&spec.id).await?.is_none() {
            ctx.store.upsert_tenant(spec, ctx.clock.now()).await?;
        }
    }
    Ok(())
}

async fn tenant_ids(ctx: &Context, only: Option<String>) -> anyhow::Result<Vec<String>> {
    match only {
        Some(id) => {
            if ctx.store.get_tenant(&id).await?.is_none() {
                anyhow::bail!("tenant {id:?} does not exist");
            }
            Ok(vec![id])
        }
        None => Ok(ctx
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect()),
    }
}

async fn generate(ctx: &Context, tenant: Option<String>) -> anyhow::Result<()> {
    // Existing keys must be readable: never add keys next to ones a wrong key can't open.
    ctx.keys.check_decryptable().await?;
    for id in tenant_ids(ctx, tenant).await? {
        let new = ctx.keys.bootstrap(&id).await?;
        if new.is_empty() {
            println!("tenant {id}: keys already exist, nothing to do");
        }
        for k in new {
            println!("tenant {id}: generated {} key {}", k.alg, k.kid);
        }
    }
    Ok(())
}

async fn rotate(ctx: &Context, tenant: Option<String>, mode: RotationMode) -> anyhow::Result<()> {
    ctx.keys.check_decryptable().await?;
    for id in tenant_ids(ctx, tenant).await? {
        let new = ctx.keys.rotate(&id, mode).await?;
        if new.is_empty() {
            println!("tenant {id}: no rotation due");
        }
        for k in &new {
            println!(
                "tenant {id}: new {} key {} activates at {}",
                k.alg,
                k.kid,
                rfc3339(k.activates_at)
            );
        }
        if mode == RotationMode::Now && !new.is_empty() {
            println!(
                "tenant {id}: emergency rotation: the new keys sign now and the previous keys \
                 left the JWKS; relying parties that cached the JWKS reject new tokens until \
                 they refetch it"
            );
        }
    }
    Ok(())
}

async fn list(ctx: &Context, tenant: Option<String>, json: bool) -> anyhow::Result<()> {
    let now = ctx.clock.now();
    let mut rows = Vec::new();
    for id in tenant_ids(ctx, tenant).await? {
        for k in ctx.store.list_keys(&id).await? {
            rows.push((id.clone(), k));
        }
    }
    let opt = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339);
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(tenant, k)| {
                serde_json::json!({
                    "tenant": tenant,
                    "kid": k.meta.kid,
                    "alg": k.meta.alg.as_str(),
                    "state": k.meta.state(now).as_str(),
                    "created_at": rfc3339(k.meta.created_at),
                    "activated_at": rfc3339(k.meta.activates_at),
                    "retiring_at": k.meta.superseded_at.map(rfc3339),
                    "retire_at": k.meta.retires_at.map(rfc3339),
                    "source": k.source,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<44} {:<6} {:<9} {:<21} {:<21} {:<21}",
        "TENANT", "KID", "ALG", "STATE", "CREATED", "ACTIVATED", "RETIRE"
    );
    for (tenant, k) in &rows {
        println!(
            "{:<10} {:<44} {:<6} {:<9} {:<21} {:<21} {:<21}",
            tenant,
            k.meta.kid,
            k.meta.alg.as_str(),
            k.meta.state(now).as_str(),
            rfc3339(k.meta.created_at),
            rfc3339(k.meta.activates_at),
            opt(k.meta.retires_at),
        );
    }
    Ok(())
}

async fn reencrypt(ctx: &Context, old_key_env: &str) -> anyhow::Result<()> {
    let old = std::env::var(old_key_env).with_context(|| {
        format!("environment variable {old_key_env} (--old-key-env) is not set")
    })?;
    let old = Kek::from_hex(&secrecy::SecretString::from(old))
        .with_context(|| format!("{old_key_env} is not a valid ENCRYPTION_KEY"))?;
    let n = ctx.keys.reencrypt(&old).await?;
    println!(
        "re-encrypted {n} private key(s) from {} to {}",
        old.id(),
        ctx.kek.id()
    );
    let n = ctx
        .mfa
        .reencrypt(&old)
        .await
        .context("failed to re-encrypt the TOTP secrets")?;
    println!(
        "re-encrypted {n} TOTP secret(s) from {} to {}",
        old.id(),
        ctx.kek.id()
    );
    let n = crate::subject::reseal_tenant_secrets(&ctx.store, &old, &ctx.kek).await?;
    println!("re-encrypted {n} tenant secret(s)");
    let n = crate::federation::tokens::reseal(&ctx.store, &old, &ctx.kek)
        .await
        .context("failed to re-encrypt the kept upstream tokens")?;
    println!("re-encrypted {n} upstream token set(s)");
    Ok(())
}
