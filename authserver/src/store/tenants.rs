//! Tenant rows.

use super::{Error, Result, Store, in_transaction, with_pool};
use crate::clock::UnixTime;
use crate::domain::tenant::{IssuerRoute, Tenant, TenantSpec};

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    issuer: String,
    display_name: String,
    settings: String,
    created_at: i64,
    updated_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(r: TenantRow) -> Self {
        Tenant {
            id: r.id,
            issuer: r.issuer,
            display_name: r.display_name,
            settings: serde_json::from_str(&r.settings)
                .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())),
            created_at: r.created_at,
            updated_at: r.updated_at,
            parsed: crate::domain::tenant::ParsedPolicy::default(),
        }
    }
}

const COLUMNS: &str = "id, issuer, display_name, settings, created_at, updated_at";

impl Store {
    /// Creates the tenant or updates its issuer and display name; settings are kept.
    /// Returns whether anything changed (so callers can stay quiet on no-ops).
    #[tracing::instrument(name = "db.upsert_tenant", skip_all)]
    pub async fn upsert_tenant(&self, spec: &TenantSpec, now: UnixTime) -> Result<bool> {
        // Issuers must be unique as routing sees them (scheme, case-insensitive host,
        // default port dropped, trailing slash ignored), not just as strings: two tenants
        // whose issuers route alike would share every request.
        let route = IssuerRoute::parse(&spec.issuer);
        let changed = in_transaction!(self, tx => {
            let others: Vec<(String, String)> =
                sqlx::query_as("SELECT id, issuer FROM tenants WHERE id <> $1")
                    .bind(&spec.id)
                    .fetch_all(&mut *tx)
                    .await?;
            if let Some((other, _)) = others
                .iter()
                .find(|(_, issuer)| route.is_some() && IssuerRoute::parse(issuer) == route)
            {
                tracing::debug!(tenant = %spec.id, other = %other, "issuer already routed to another tenant");
                return Err(Error::Conflict {
                    constraint: "tenants_issuer_normalized".to_owned(),
                });
            }
            sqlx::query(
                "INSERT INTO tenants (id, issuer, display_name, settings, created_at, updated_at) \
                 VALUES ($1, $2, $3, '{}', $4, $4) \
                 ON CONFLICT (id) DO UPDATE SET issuer = excluded.issuer, \
                     display_name = excluded.display_name, updated_at = excluded.updated_at \
                 WHERE tenants.issuer <> excluded.issuer OR tenants.display_name <> excluded.display_name",
            )
            .bind(&spec.id)
            .bind(&spec.issuer)
            .bind(&spec.display_name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map(|r| r.rows_affected())?
        });
        Ok(changed > 0)
    }

    /// Replaces a tenant's settings (a JSON object). Returns whether it changed.
    pub async fn set_tenant_settings(
        &self,
        id: &str,
        settings: &serde_json::Value,
        now: UnixTime,
    ) -> Result<bool> {
        let text = settings.to_string();
        let n = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE tenants SET settings = $2, updated_at = $3 WHERE id = $1 AND settings <> $2",
            )
            .bind(id)
            .bind(&text)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }

    /// Deletes a tenant; its clients and keys go with it (foreign keys). Returns whether
    /// it existed.
    #[tracing::instrument(name = "db.delete_tenant", skip_all)]
    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }

    #[tracing::instrument(name = "db.get_tenant", skip_all)]
    pub async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tenants WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await
        })?;
        Ok(row.map(Tenant::from))
    }

    #[tracing::instrument(name = "db.list_tenants", skip_all)]
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tenants ORDER BY id"
            )))
            .fetch_all(pool)
            .await
        })?;
        Ok(rows.into_iter().map(Tenant::from).collect())
    }
}
