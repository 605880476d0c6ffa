//! Consent: the scopes a user granted a client, kept as one sorted, space-separated set
//! per (tenant, user, client). Granting more scopes widens the set (union). Revoking a
//! consent revokes, in the same transaction, everything the client still holds for the
//! user.

use super::{Conn, Result, Store, in_transaction, on_conn, with_pool};
use crate::clock::UnixTime;

/// One stored consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// What revoking a consent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentRevocation {
    /// There was a consent to revoke.
    pub existed: bool,
    /// Live grants of the user for the client that were revoked with it.
    pub grants_revoked: u64,
}

fn split(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

impl Store {
    /// The scopes `user_id` granted `client_id`, or `None` when never asked.
    #[tracing::instrument(name = "db.consent_scopes", skip_all)]
    pub async fn consent_scopes(
        &self,
        tenant_id: &str,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Vec<String>>> {
        let row: Option<(String,)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT scope FROM consents WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(s,)| split(&s)))
    }

    /// Adds `scopes` to what the user granted the client (union, sorted).
    #[tracing::instrument(name = "db.record_consent", skip_all)]
    pub async fn record_consent(
        &self,
        tenant_id: &str,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        now: UnixTime,
    ) -> Result<()> {
        let mut unit = self.begin().await?;
        record(unit.conn(), tenant_id, user_id, client_id, scopes, now).await?;
        unit.commit().await
    }

    /// Every consent a user gave, by client id.
    #[tracing::instrument(name = "db.list_consents", skip_all)]
    pub async fn list_consents(&self, tenant_id: &str, user_id: &str) -> Result<Vec<Consent>> {
        let rows: Vec<(String, String, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT client_id, scope, created_at, updated_at FROM consents \
                 WHERE tenant_id = $1 AND user_id = $2 ORDER BY client_id",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(client_id, scope, created_at, updated_at)| Consent {
                client_id,
                scopes: split(&scope),
                created_at,
                updated_at,
            })
            .collect())
    }

    /// Forgets a consent; `false` when there was none.
    #[tracing::instrument(name = "db.revoke_consent", skip_all)]
    pub async fn revoke_consent(
        &self,
        tenant_id: &str,
        user_id: &str,
        client_id: &str,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM consents WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3")
                .bind(tenant_id)
                .bind(user_id)
                .bind(client_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Forgets a consent and revokes every live grant of the user for the client in
    /// the same transaction: the grants are marked revoked (their refresh tokens die
    /// with them) and their unexpired access tokens go on the denylist. Without a
    /// consent nothing is written, so a first-party client's grants are left alone.
    #[tracing::instrument(name = "db.revoke_consent_and_grants", skip_all)]
    pub async fn revoke_consent_and_grants(
        &self,
        tenant_id: &str,
        user_id: &str,
        client_id: &str,
        now: UnixTime,
    ) -> Result<ConsentRevocation> {
        let out = in_transaction!(self, tx => {
            let n = sqlx::query(
                "DELETE FROM consents WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Ok(ConsentRevocation { existed: false, grants_revoked: 0 });
            }
            let grants_revoked = super::grants::revoke_live_grants!(
                tx, tenant_id, now, "user_id" = user_id, "client_id" = client_id
            );
            Ok(ConsentRevocation { existed: true, grants_revoked })
        });
        // After the commit: see `Store::revoked`.
        self.revoked();
        out
    }
}

/// [`Store::record_consent`] on `conn` (a unit of work's: the read and the write see
/// the same consent).
pub async fn record(
    conn: Conn<'_>,
    tenant_id: &str,
    user_id: &str,
    client_id: &str,
    scopes: &[String],
    now: UnixTime,
) -> Result<()> {
    on_conn!(conn, tx => {
        let existing: Option<(String,)> = sqlx::query_as(
            "SELECT scope FROM consents WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut all: Vec<String> = existing.as_ref().map(|(s,)| split(s)).unwrap_or_default();
        all.extend(scopes.iter().cloned());
        all.sort();
        all.dedup();
        let scope = all.join(" ");
        sqlx::query(
            "INSERT INTO consents (tenant_id, user_id, client_id, scope, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (tenant_id, user_id, client_id) DO UPDATE SET scope = excluded.scope, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(client_id)
        .bind(&scope)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    });
    Ok(())
}
