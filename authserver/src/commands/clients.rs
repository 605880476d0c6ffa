//! `authserver clients …`: bootstrap clients directly in the database. Running servers
//! pick the change up within a second (change feed).

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use serde_json::json;

use super::keys::ensure_declared_tenants;
use super::{Context, UsageError, open, require_current_schema};
use crate::cli::{ClientsCommand, CreateClientArgs};
use crate::clients::{self, Actor, SecretRequest};
use crate::config::Settings;
use crate::domain::client::{AuthMethod, ClientSpec, ClientType, GrantType, SubjectType};

pub async fn run(settings: &Settings, cmd: ClientsCommand) -> anyhow::Result<()> {
    let ctx = open(settings.clone(), true).await?;
    require_current_schema(&ctx.store).await?;
    ensure_declared_tenants(&ctx).await?;
    let result = match cmd {
        ClientsCommand::Create(args) => create(&ctx, *args).await,
        ClientsCommand::List { tenant } => list(&ctx, tenant).await,
        ClientsCommand::Delete { id, tenant } => delete(&ctx, tenant, &id).await,
        ClientsCommand::ListRetired { tenant } => list_retired(&ctx, tenant).await,
        ClientsCommand::PurgeRetired { id, tenant } => purge_retired(&ctx, tenant, &id).await,
        ClientsCommand::RotateSecret {
            id,
            tenant,
            overlap_seconds,
        } => rotate(&ctx, tenant, &id, overlap_seconds).await,
    };
    ctx.store.close().await;
    result
}

/// `--tenant`, or the only tenant, or `default`.
pub(crate) async fn tenant_or_default(
    ctx: &Context,
    tenant: Option<String>,
) -> anyhow::Result<String> {
    if let Some(t) = tenant {
        return Ok(t);
    }
    let tenants = ctx.store.list_tenants().await?;
    match tenants.as_slice() {
        [only] => Ok(only.id.clone()),
        _ if tenants
            .iter()
            .any(|t| t.id == crate::domain::tenant::DEFAULT_TENANT) =>
        {
            Ok(crate::domain::tenant::DEFAULT_TENANT.to_owned())
        }
        [] => anyhow::bail!("no tenant exists: declare one in the config file or use --dev"),
        _ => anyhow::bail!("several tenants exist: choose one with --tenant"),
    }
}

fn spec_from_args(args: &CreateClientArgs) -> anyhow::Result<ClientSpec> {
    let client_type = if args.public {
        ClientType::Public
    } else {
        ClientType::Confidential
    };
    let grant_types = if args.grant_types.is_empty() {
        if args.redirect_uris.is_empty() {
            vec![GrantType::ClientCredentials]
        } else {
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        }
    } else {
        args.grant_types
            .iter()
            .map(|g| g.trim().parse::<GrantType>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--grant-types: {e}"))?
    };
    let auth_method = match &args.auth_method {
        Some(m) => m
            .parse::<AuthMethod>()
            .map_err(|e| anyhow::anyhow!("--auth-method: {e}"))?,
        None if args.public => AuthMethod::None,
        None => AuthMethod::ClientSecretBasic,
    };
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let mut spec = ClientSpec {
        client_id: args.id.clone(),
        client_type,
        grant_types,
        redirect_uris: args.redirect_uris.clone(),
        post_logout_redirect_uris: args.post_logout_redirect_uris.clone(),
        scopes: words(&args.scopes),
        audiences: words(&args.audiences),
        auth_method,
        jwks_uri: args.jwks_uri.clone(),
        dpop_bound_access_tokens: args.dpop_bound_access_tokens,
        first_party: args.first_party,
        introspect_any_token: args.introspect_any_token,
        refresh_without_offline_access: args.refresh_without_offline_access,
        sector_identifier_uri: args.sector_identifier_uri.clone(),
        allowed_cors_origins: args.allowed_cors_origins.clone(),
        require_pushed_authorization_requests: args.require_par,
        ..ClientSpec::default()
    };
    if let Some(l) = args.refresh_token_lifetime {
        spec.refresh_token_lifetime_seconds = l;
    }
    if let Some(t) = &args.subject_type {
        spec.subject_type = match t.as_str() {
            "public" => SubjectType::Public,
            "pairwise" => SubjectType::Pairwise,
            other => anyhow::bail!(
                "--subject-type: unknown subject type {other:?} (expected public or pairwise)"
            ),
        };
    }
    if let Some(a) = &args.id_token_alg {
        spec.id_token_alg = Some(a.parse().map_err(|()| {
            anyhow::anyhow!(
                "--id-token-alg: unknown algorithm {a:?} (expected RS256, ES256 or EdDSA)"
            )
        })?);
    }
    if let Some(l) = args.access_token_lifetime {
        spec.access_token_lifetime_seconds = l;
    }
    if let Some(a) = &args.access_token_alg {
        spec.access_token_alg = Some(a.parse().map_err(|()| {
            anyhow::anyhow!(
                "--access-token-alg: unknown algorithm {a:?} (expected RS256, ES256 or EdDSA)"
            )
        })?);
    }
    Ok(spec)
}

async fn create(ctx: &Context, args: CreateClientArgs) -> anyhow::Result<()> {
    println!("{}", create_value(ctx, args).await?);
    Ok(())
}

/// `clients create`: what it prints (`client_id`, and `client_secret` when generated).
pub(crate) async fn create_value(
    ctx: &Context,
    args: CreateClientArgs,
) -> anyhow::Result<serde_json::Value> {
    let tenant = tenant_or_default(ctx, args.tenant.clone()).await?;
    let spec = spec_from_args(&args).map_err(|e| UsageError(format!("{e:#}")))?;
    let registered = match ctx
        .clients
        .create(&tenant, &spec, SecretRequest::GenerateIfMissing, Actor::Cli)
        .await
    {
        Ok(r) => r,
        Err(
            e @ (clients::Error::Invalid(_)
            | clients::Error::AlreadyExists(_)
            | clients::Error::Retired { .. }),
        ) => {
            return Err(UsageError(e.to_string()).into());
        }
        Err(e) => return Err(e).context("failed to create the client"),
    };
    let mut out = json!({ "client_id": spec.client_id });
    if let Some(secret) = registered.generated_secret {
        out["client_secret"] = secret.expose_secret().into();
    }
    Ok(out)
}

async fn list(ctx: &Context, tenant: Option<String>) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    for c in ctx.store.list_clients(&tenant).await? {
        let mut v = serde_json::to_value(&c.spec)?;
        v["tenant"] = tenant.clone().into();
        println!("{v}");
    }
    Ok(())
}

async fn delete(ctx: &Context, tenant: Option<String>, id: &str) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    match ctx.clients.delete(&tenant, id, Actor::Cli).await? {
        Some(r) => {
            println!(
                "{}",
                json!({
                    "deleted": id,
                    "grants_revoked": r.grants_revoked,
                    "consents_deleted": r.consents_deleted,
                    "authorization_requests_deleted": r.requests_deleted,
                    "retired_until": r.reusable_at,
                })
            );
            Ok(())
        }
        None => anyhow::bail!("client {id:?} does not exist in tenant {tenant:?}"),
    }
}

async fn list_retired(ctx: &Context, tenant: Option<String>) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    for r in ctx.clients.list_retired(&tenant).await? {
        println!(
            "{}",
            json!({
                "client_id": r.client_id,
                "tenant": tenant,
                "retired_at": r.retired_at,
                "reusable_at": r.reusable_at,
            })
        );
    }
    Ok(())
}

async fn purge_retired(ctx: &Context, tenant: Option<String>, id: &str) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    match ctx.clients.purge_retired(&tenant, id, Actor::Cli).await {
        Ok(()) => {
            println!("{}", json!({ "purged": id }));
            Ok(())
        }
        Err(e @ (clients::Error::NotRetired(_) | clients::Error::RetiredUntil { .. })) => {
            Err(UsageError(e.to_string()).into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn rotate(
    ctx: &Context,
    tenant: Option<String>,
    id: &str,
    overlap: u64,
) -> anyhow::Result<()> {
    let tenant = tenant_or_default(ctx, tenant).await?;
    let secret = match ctx
        .clients
        .rotate_secret(&tenant, id, None, overlap, Actor::Cli)
        .await
    {
        Ok(s) => s,
        Err(e @ clients::Error::Invalid(_)) => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    let mut out = json!({ "client_id": id, "previous_secret_valid_for_seconds": overlap });
    if let Some(s) = secret {
        out["client_secret"] = s.expose_secret().into();
    }
    println!("{out}");
    Ok(())
}
