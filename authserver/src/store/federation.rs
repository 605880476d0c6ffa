//! Federated identities (`federated_identities`): upstream accounts (provider id and
//! upstream `sub`) linked to local users, with the claims the provider forwards. A
//! link is written with whatever else its step writes (a provisioned user, the audit
//! event) in one unit of work.

use serde_json::{Map, Value};

use super::users::StoredUser;
use super::{Conn, Error, Result, Store, on_conn, with_pool};
use crate::clock::UnixTime;
use crate::domain::user::normalize_username;

/// The upstream's tokens of a link's last sign-in, sealed under the KEK `kek_id`
/// (`federation::tokens` seals and opens them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedTokens {
    pub kek_id: String,
    /// base64url of the sealed bytes.
    pub sealed: String,
}

/// A stored link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIdentity {
    pub tenant_id: String,
    pub provider_id: String,
    pub subject: String,
    pub user_id: String,
    pub email: Option<String>,
    /// The forwarded claims of the last upstream sign-in.
    pub claims: Map<String, Value>,
    pub created_at: UnixTime,
    pub last_sign_in_at: UnixTime,
    /// Kept when the provider has `storeTokens`; replaced (or cleared) at every sign-in.
    pub tokens: Option<SealedTokens>,
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: String,
    provider_id: String,
    subject: String,
    user_id: String,
    email: Option<String>,
    claims: String,
    created_at: i64,
    last_sign_in_at: i64,
    tokens_sealed: Option<String>,
    tokens_kek_id: Option<String>,
}

const COLUMNS: &str = "tenant_id, provider_id, subject, user_id, email, claims, created_at, \
     last_sign_in_at, tokens_sealed, tokens_kek_id";

fn decode(row: Row) -> Result<FederatedIdentity> {
    let Ok(Value::Object(claims)) = serde_json::from_str::<Value>(&row.claims) else {
        return Err(Error::Corrupt(format!(
            "claims of the {:?} link of user {:?} are not a JSON object",
            row.provider_id, row.user_id
        )));
    };
    Ok(FederatedIdentity {
        tenant_id: row.tenant_id,
        provider_id: row.provider_id,
        subject: row.subject,
        user_id: row.user_id,
        email: row.email,
        claims,
        created_at: row.created_at,
        last_sign_in_at: row.last_sign_in_at,
        tokens: match (row.tokens_sealed, row.tokens_kek_id) {
            (Some(sealed), Some(kek_id)) => Some(SealedTokens { kek_id, sealed }),
            _ => None,
        },
    })
}

/// The sealed tokens as their two columns.
fn token_columns(f: &FederatedIdentity) -> (Option<&str>, Option<&str>) {
    f.tokens.as_ref().map_or((None, None), |t| {
        (Some(t.sealed.as_str()), Some(t.kek_id.as_str()))
    })
}

/// Links an upstream account in a unit of work. A link of the same upstream account
/// that exists already (another tab linked it first) is
/// `Conflict { constraint: "federated_identities_pkey" }` on PostgreSQL and a
/// `Conflict` on SQLite: the caller shows it as a refused link.
pub async fn insert(conn: Conn<'_>, f: &FederatedIdentity) -> Result<()> {
    let claims = Value::Object(f.claims.clone()).to_string();
    let (sealed, kek_id) = token_columns(f);
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO federated_identities (tenant_id, provider_id, subject, user_id, email, \
                 claims, created_at, last_sign_in_at, tokens_sealed, tokens_kek_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&f.tenant_id)
        .bind(&f.provider_id)
        .bind(&f.subject)
        .bind(&f.user_id)
        .bind(&f.email)
        .bind(&claims)
        .bind(f.created_at)
        .bind(f.last_sign_in_at)
        .bind(sealed)
        .bind(kek_id)
        .execute(c)
        .await?;
    });
    Ok(())
}

/// Inserts a provisioned user (no password) in a unit of work; a taken username is
/// `Conflict { constraint: "users_username_key" }`.
pub async fn insert_user(conn: Conn<'_>, user: &StoredUser) -> Result<()> {
    let profile = Value::Object(user.profile.clone()).to_string();
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO users (tenant_id, user_id, username, username_normalized, email, \
             email_verified, profile, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&user.tenant_id)
        .bind(&user.user_id)
        .bind(&user.username)
        .bind(normalize_username(&user.username))
        .bind(&user.email)
        .bind(user.email_verified)
        .bind(&profile)
        .bind(&user.password_hash)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(c)
        .await?;
    });
    Ok(())
}

/// What an upstream sign-in refreshes on the user row: the mapped profile claims and,
/// when the upstream says it is verified, the e-mail address.
#[derive(Debug, Clone, PartialEq)]
pub struct Refresh<'a> {
    pub profile: &'a Map<String, Value>,
    /// `Some` to replace the address and its verification.
    pub email: Option<(&'a str, bool)>,
    pub at: UnixTime,
}

/// Refreshes the link (forwarded claims, address, last sign-in, kept tokens) and the
/// user's profile, in a unit of work.
pub async fn refresh(
    mut conn: Conn<'_>,
    link: &FederatedIdentity,
    user: &StoredUser,
    r: &Refresh<'_>,
) -> Result<()> {
    let claims = Value::Object(link.claims.clone()).to_string();
    let profile = Value::Object(r.profile.clone()).to_string();
    let (sealed, kek_id) = token_columns(link);
    on_conn!(conn.reborrow(), c => {
        sqlx::query(
            "UPDATE federated_identities SET claims = $4, email = $5, last_sign_in_at = $6, \
                 tokens_sealed = $7, tokens_kek_id = $8 \
             WHERE tenant_id = $1 AND provider_id = $2 AND subject = $3",
        )
        .bind(&link.tenant_id)
        .bind(&link.provider_id)
        .bind(&link.subject)
        .bind(&claims)
        .bind(&link.email)
        .bind(r.at)
        .bind(sealed)
        .bind(kek_id)
        .execute(c)
        .await?;
    });
    let (email, verified) = match r.email {
        Some((e, v)) => (Some(e.to_owned()), v),
        None => (user.email.clone(), user.email_verified),
    };
    on_conn!(conn, c => {
        sqlx::query(
            "UPDATE users SET profile = $3, email = $4, email_verified = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(&user.tenant_id)
        .bind(&user.user_id)
        .bind(&profile)
        .bind(&email)
        .bind(verified)
        .bind(r.at)
        .execute(c)
        .await?;
    });
    Ok(())
}

/// Removes a user's link in a unit of work; `false` when the user has no such link
/// (someone else's link removes nothing).
pub async fn delete(
    conn: Conn<'_>,
    tenant_id: &str,
    user_id: &str,
    provider_id: &str,
    subject: &str,
) -> Result<bool> {
    let n = on_conn!(conn, c => {
        sqlx::query(
            "DELETE FROM federated_identities \
             WHERE tenant_id = $1 AND user_id = $2 AND provider_id = $3 AND subject = $4",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(provider_id)
        .bind(subject)
        .execute(c)
        .await?
        .rows_affected()
    });
    Ok(n > 0)
}

impl Store {
    /// The link of an upstream account.
    #[tracing::instrument(name = "db.get_federated_identity", skip_all)]
    pub async fn get_federated_identity(
        &self,
        tenant_id: &str,
        provider_id: &str,
        subject: &str,
    ) -> Result<Option<FederatedIdentity>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM federated_identities \
                 WHERE tenant_id = $1 AND provider_id = $2 AND subject = $3"
            )))
            .bind(tenant_id)
            .bind(provider_id)
            .bind(subject)
            .fetch_optional(pool)
            .await?
        });
        row.map(decode).transpose()
    }

    /// A user's links, oldest first.
    #[tracing::instrument(name = "db.list_federated_identities", skip_all)]
    pub async fn list_federated_identities(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<FederatedIdentity>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM federated_identities WHERE tenant_id = $1 AND user_id = $2 \
                 ORDER BY created_at, provider_id, subject"
            )))
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(decode).collect()
    }

    /// The claims forwarded by the user's most recent upstream sign-in (empty when the
    /// user has no link): what ID tokens and userinfo add.
    #[tracing::instrument(name = "db.forwarded_claims", skip_all)]
    pub async fn forwarded_claims(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Map<String, Value>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM federated_identities WHERE tenant_id = $1 AND user_id = $2 \
                 ORDER BY last_sign_in_at DESC, provider_id, subject LIMIT 1"
            )))
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row
            .map(decode)
            .transpose()?
            .map(|f| f.claims)
            .unwrap_or_default())
    }

    /// The user's most recently used link with `provider_id` that keeps tokens.
    #[tracing::instrument(name = "db.link_with_tokens", skip_all)]
    pub async fn link_with_tokens(
        &self,
        tenant_id: &str,
        user_id: &str,
        provider_id: &str,
    ) -> Result<Option<FederatedIdentity>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM federated_identities WHERE tenant_id = $1 AND user_id = $2 \
                 AND provider_id = $3 AND tokens_sealed IS NOT NULL \
                 ORDER BY last_sign_in_at DESC, subject LIMIT 1"
            )))
            .bind(tenant_id)
            .bind(user_id)
            .bind(provider_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(decode).transpose()
    }

    /// Every link whose kept tokens are sealed under another KEK than `kek_id`.
    #[tracing::instrument(name = "db.links_sealed_elsewhere", skip_all)]
    pub async fn links_sealed_elsewhere(&self, kek_id: &str) -> Result<Vec<FederatedIdentity>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM federated_identities \
                 WHERE tokens_sealed IS NOT NULL AND tokens_kek_id <> $1"
            )))
            .bind(kek_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(decode).collect()
    }

    /// Replaces kept tokens sealed under `(link, old kek id)` with theirs re-sealed, in one
    /// transaction; a link whose tokens changed meanwhile (a sign-in) is left alone.
    #[tracing::instrument(name = "db.reseal_upstream_tokens", skip_all)]
    pub async fn reseal_upstream_tokens(
        &self,
        updates: &[(FederatedIdentity, String)],
    ) -> Result<u64> {
        let mut unit = self.begin().await?;
        let mut n = 0;
        for (link, old_kek_id) in updates {
            let (sealed, kek_id) = token_columns(link);
            n += on_conn!(unit.conn(), c => {
                sqlx::query(
                    "UPDATE federated_identities SET tokens_sealed = $4, tokens_kek_id = $5 \
                     WHERE tenant_id = $1 AND provider_id = $2 AND subject = $3 \
                     AND tokens_kek_id = $6",
                )
                .bind(&link.tenant_id)
                .bind(&link.provider_id)
                .bind(&link.subject)
                .bind(sealed)
                .bind(kek_id)
                .bind(old_kek_id)
                .execute(c)
                .await?
                .rows_affected()
            });
        }
        unit.commit().await?;
        Ok(n)
    }
}
