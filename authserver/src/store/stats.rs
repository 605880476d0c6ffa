//! Figures for the Management API's `GET /stats`: counts of a tenant's clients, users and
//! live sessions, and the tokens issued per grant type (see `oauth::issuance`).

use super::{Result, Store, in_transaction, with_pool};
use crate::clock::UnixTime;

/// How long token counts are kept: `GET /stats` reads the last day.
pub const KEPT_FOR: i64 = 2 * 86_400;

impl Store {
    /// Adds `(tenant, bucket, grant type, issued)` counts, one upsert per row, in one
    /// transaction, and drops those tenants' buckets older than [`KEPT_FOR`] (so the
    /// table needs no purge target: it holds at most two days of buckets).
    #[tracing::instrument(name = "db.add_token_counts", skip_all)]
    pub async fn add_token_counts(
        &self,
        rows: &[(&str, i64, &str, u64)],
        now: UnixTime,
    ) -> Result<()> {
        let mut tenants: Vec<&str> = rows.iter().map(|r| r.0).collect();
        tenants.sort_unstable();
        tenants.dedup();
        in_transaction!(self, tx => {
            for tenant in &tenants {
                sqlx::query("DELETE FROM token_counts WHERE tenant_id = $1 AND bucket < $2")
                    .bind(*tenant)
                    .bind(now.saturating_sub(KEPT_FOR))
                    .execute(&mut *tx)
                    .await?;
            }
            for (tenant, bucket, grant, issued) in rows {
                sqlx::query(
                    "INSERT INTO token_counts (tenant_id, bucket, grant_type, issued) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, bucket, grant_type) \
                     DO UPDATE SET issued = token_counts.issued + excluded.issued",
                )
                .bind(*tenant)
                .bind(*bucket)
                .bind(*grant)
                .bind(i64::try_from(*issued).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
    }

    /// Tokens issued per grant type in buckets from `since` on.
    #[tracing::instrument(name = "db.token_counts_since", skip_all)]
    pub async fn token_counts_since(
        &self,
        tenant_id: &str,
        since: UnixTime,
    ) -> Result<Vec<(String, i64)>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT grant_type, CAST(SUM(issued) AS BIGINT) FROM token_counts \
                 WHERE tenant_id = $1 AND bucket >= $2 GROUP BY grant_type ORDER BY grant_type",
            )
            .bind(tenant_id)
            .bind(since)
            .fetch_all(pool)
            .await?
        }))
    }

    /// How many clients, users and live account sessions the tenant has.
    #[tracing::instrument(name = "db.tenant_counts", skip_all)]
    pub async fn tenant_counts(&self, tenant_id: &str, now: UnixTime) -> Result<(i64, i64, i64)> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, (i64, i64, i64)>(
                "SELECT (SELECT COUNT(*) FROM clients WHERE tenant_id = $1), \
                        (SELECT COUNT(*) FROM users WHERE tenant_id = $1), \
                        (SELECT COUNT(*) FROM sessions WHERE tenant_id = $1 \
                           AND expires_at > $2 AND idle_expires_at > $2)",
            )
            .bind(tenant_id)
            .bind(now)
            .fetch_one(pool)
            .await?
        }))
    }
}
