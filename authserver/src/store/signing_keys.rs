//! Signing key rows. Private keys are stored sealed; this module never sees plaintext.

use super::{Error, Result, Store, in_transaction, on_conn, with_pool};
use crate::clock::UnixTime;
use crate::domain::signing_key::{Algorithm, KeyMeta, Supersede};

/// A stored key: public facts, the public JWK, and the sealed private key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub tenant_id: String,
    pub meta: KeyMeta,
    pub public_jwk: serde_json::Value,
    pub sealed_private_key: Vec<u8>,
    pub kek_id: String,
    pub source: String,
}

/// A key about to be inserted.
#[derive(Debug, Clone)]
pub struct NewStoredKey {
    pub meta: KeyMeta,
    pub public_jwk: serde_json::Value,
    pub sealed_private_key: Vec<u8>,
    pub kek_id: String,
    pub source: String,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    tenant_id: String,
    kid: String,
    alg: String,
    public_jwk: String,
    private_key: Vec<u8>,
    kek_id: String,
    source: String,
    created_at: i64,
    activates_at: i64,
    superseded_at: Option<i64>,
    retires_at: Option<i64>,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = Error;
    fn try_from(r: KeyRow) -> Result<Self> {
        let alg = r
            .alg
            .parse::<Algorithm>()
            .map_err(|()| Error::Corrupt(format!("key {} has unknown alg {:?}", r.kid, r.alg)))?;
        let public_jwk = serde_json::from_str(&r.public_jwk)
            .map_err(|e| Error::Corrupt(format!("key {} has an invalid public JWK: {e}", r.kid)))?;
        Ok(StoredKey {
            tenant_id: r.tenant_id,
            meta: KeyMeta {
                kid: r.kid,
                alg,
                created_at: r.created_at,
                activates_at: r.activates_at,
                superseded_at: r.superseded_at,
                retires_at: r.retires_at,
            },
            public_jwk,
            sealed_private_key: r.private_key,
            kek_id: r.kek_id,
            source: r.source,
        })
    }
}

const COLUMNS: &str = "tenant_id, kid, alg, public_jwk, private_key, kek_id, source, \
                       created_at, activates_at, superseded_at, retires_at";

impl Store {
    /// Every key of a tenant, oldest first (retired ones included).
    #[tracing::instrument(name = "db.list_keys", skip_all)]
    pub async fn list_keys(&self, tenant_id: &str) -> Result<Vec<StoredKey>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at, kid"
            )))
            .bind(tenant_id)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    /// Keys of a tenant still published at `now` (not retired).
    #[tracing::instrument(name = "db.list_published_keys", skip_all)]
    pub async fn list_published_keys(
        &self,
        tenant_id: &str,
        now: UnixTime,
    ) -> Result<Vec<StoredKey>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM signing_keys \
                 WHERE tenant_id = $1 AND (retires_at IS NULL OR retires_at > $2) \
                 ORDER BY created_at, kid"
            )))
            .bind(tenant_id)
            .bind(now)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    /// Rotates a tenant's keys atomically: inside one transaction that holds the
    /// tenant's key lock, reads the current keys, lets `plan` decide (and generate) what
    /// to add and supersede, and writes the result. Concurrent rotations of one tenant
    /// (two pods bootstrapping at once, the CLI and the operator) serialize, so they never
    /// create two keys for one algorithm.
    #[tracing::instrument(name = "db.rotate_keys", skip_all)]
    pub async fn rotate_keys<F, Fut, E>(
        &self,
        tenant_id: &str,
        plan: F,
    ) -> Result<Vec<NewStoredKey>, E>
    where
        F: FnOnce(Vec<KeyMeta>) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<NewStoredKey>, Vec<Supersede>), E>>,
        E: From<Error>,
    {
        let lock_sql = match self.backend() {
            // Transaction-scoped: released at commit or rollback, never leaked to the pool.
            super::Backend::Postgres => {
                "SELECT pg_advisory_xact_lock(hashtext('signing_keys/' || $1))"
            }
            // A write takes SQLite's database write lock up front.
            super::Backend::Sqlite => {
                "UPDATE change_counter SET generation = generation WHERE id = 1 AND $1 IS NOT NULL"
            }
        };
        let mut unit = self.begin().await?;
        let new = on_conn!(unit.conn(), tx => {
            sqlx::query(lock_sql).bind(tenant_id).execute(&mut *tx).await.map_err(Error::from)?;
            let rows = sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at, kid"
            )))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::from)?;
            let existing = rows
                .into_iter()
                .map(|r| StoredKey::try_from(r).map(|k| k.meta))
                .collect::<Result<Vec<_>>>()?;
            let (new, supersede) = plan(existing).await?;
            for s in &supersede {
                sqlx::query(
                    "UPDATE signing_keys SET superseded_at = $3, retires_at = $4 \
                     WHERE tenant_id = $1 AND kid = $2",
                )
                .bind(tenant_id)
                .bind(&s.kid)
                .bind(s.superseded_at)
                .bind(s.retires_at)
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
            }
            for k in &new {
                sqlx::query(
                    "INSERT INTO signing_keys (tenant_id, kid, alg, public_jwk, private_key, kek_id, \
                         source, created_at, activates_at, superseded_at, retires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(tenant_id)
                .bind(&k.meta.kid)
                .bind(k.meta.alg.as_str())
                .bind(k.public_jwk.to_string())
                .bind(&k.sealed_private_key)
                .bind(&k.kek_id)
                .bind(&k.source)
                .bind(k.meta.created_at)
                .bind(k.meta.activates_at)
                .bind(k.meta.superseded_at)
                .bind(k.meta.retires_at)
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
            }
            new
        });
        unit.commit().await?;
        Ok(new)
    }

    /// Every key of every tenant (for KEK re-encryption).
    #[tracing::instrument(name = "db.list_all_keys", skip_all)]
    pub async fn list_all_keys(&self) -> Result<Vec<StoredKey>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM signing_keys ORDER BY tenant_id, created_at, kid"
            )))
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    /// Replaces the sealed private keys given as (tenant, kid, sealed, kek id), all or
    /// nothing: a KEK rotation never leaves the table half re-encrypted.
    #[tracing::instrument(name = "db.reseal_keys", skip_all)]
    pub async fn reseal_keys(&self, updates: &[(String, String, Vec<u8>, String)]) -> Result<()> {
        in_transaction!(self, tx => {
            for (tenant_id, kid, sealed, kek_id) in updates {
                sqlx::query(
                    "UPDATE signing_keys SET private_key = $3, kek_id = $4 \
                     WHERE tenant_id = $1 AND kid = $2",
                )
                .bind(tenant_id)
                .bind(kid)
                .bind(sealed)
                .bind(kek_id)
                .execute(&mut *tx)
                .await?;
            }
            Ok::<(), Error>(())
        })
    }
}
