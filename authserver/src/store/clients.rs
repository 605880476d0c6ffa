//! Client rows and their secret digests.

use super::{Error, Result, Store, with_pool};
use crate::clock::UnixTime;
use crate::domain::client::ClientSpec;

/// One stored secret digest.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretDigest {
    pub digest: Vec<u8>,
    pub created_at: i64,
    /// `None` for the current secret; set on the previous one during a rotation overlap.
    pub expires_at: Option<i64>,
}

impl SecretDigest {
    pub fn valid_at(&self, now: UnixTime) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// A stored client with its secret digests.
#[derive(Debug, Clone)]
pub struct StoredClient {
    pub tenant_id: String,
    pub spec: ClientSpec,
    pub secrets: Vec<SecretDigest>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What to do with a client's secrets on upsert.
#[derive(Debug, Clone)]
pub enum SecretChange {
    /// Leave them as they are.
    Keep,
    /// Make this digest the only secret (unless it already is).
    Set(Vec<u8>),
    /// Remove every secret (the client no longer authenticates with one).
    Clear,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    Created,
    Updated,
    Unchanged,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    tenant_id: String,
    spec: String,
    created_at: i64,
    updated_at: i64,
}

fn decode(row: ClientRow, secrets: Vec<SecretDigest>) -> Result<StoredClient> {
    let spec: ClientSpec = serde_json::from_str(&row.spec)
        .map_err(|e| Error::Corrupt(format!("client registration is not valid JSON: {e}")))?;
    Ok(StoredClient {
        tenant_id: row.tenant_id,
        spec,
        secrets,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

impl Store {
    #[tracing::instrument(name = "db.get_client", skip_all)]
    pub async fn get_client(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<StoredClient>> {
        let found = with_pool!(self, pool => {
            let row = sqlx::query_as::<_, ClientRow>(
                "SELECT tenant_id, spec, created_at, updated_at FROM clients \
                 WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(pool)
            .await?;
            match row {
                None => None,
                Some(row) => {
                    let secrets = sqlx::query_as::<_, SecretDigest>(
                        "SELECT digest, created_at, expires_at FROM client_secrets \
                         WHERE tenant_id = $1 AND client_id = $2 ORDER BY created_at",
                    )
                    .bind(tenant_id)
                    .bind(client_id)
                    .fetch_all(pool)
                    .await?;
                    Some((row, secrets))
                }
            }
        });
        found.map(|(row, secrets)| decode(row, secrets)).transpose()
    }

    /// A tenant's clients (without secret digests), ordered by id.
    #[tracing::instrument(name = "db.list_clients", skip_all)]
    pub async fn list_clients(&self, tenant_id: &str) -> Result<Vec<StoredClient>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, ClientRow>(
                "SELECT tenant_id, spec, created_at, updated_at FROM clients \
                 WHERE tenant_id = $1 ORDER BY client_id",
            )
            .bind(tenant_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(|r| decode(r, Vec::new())).collect()
    }

    /// Creates or updates a client; writes nothing when the registration and secret are
    /// already as requested, so periodic reconciliation stays silent and cheap.
    #[tracing::instrument(name = "db.upsert_client", skip_all)]
    pub async fn upsert_client(
        &self,
        tenant_id: &str,
        spec: &ClientSpec,
        secret: &SecretChange,
        now: UnixTime,
    ) -> Result<UpsertOutcome> {
        let spec_json = serde_json::to_string(spec)
            .map_err(|e| Error::Corrupt(format!("cannot encode client registration: {e}")))?;
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT spec FROM clients WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(&spec.client_id)
            .fetch_optional(&mut *tx)
            .await?;
            let spec_changed = existing.as_deref() != Some(spec_json.as_str());
            let outcome = match existing {
                None => UpsertOutcome::Created,
                Some(_) if spec_changed => UpsertOutcome::Updated,
                Some(_) => UpsertOutcome::Unchanged,
            };
            if outcome == UpsertOutcome::Created {
                sqlx::query(
                    "INSERT INTO clients (tenant_id, client_id, spec, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(tenant_id)
                .bind(&spec.client_id)
                .bind(&spec_json)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            } else if spec_changed {
                sqlx::query(
                    "UPDATE clients SET spec = $3, updated_at = $4 \
                     WHERE tenant_id = $1 AND client_id = $2",
                )
                .bind(tenant_id)
                .bind(&spec.client_id)
                .bind(&spec_json)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let mut secret_changed = false;
            if let SecretChange::Set(digest) = secret {
                let current: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT digest FROM client_secrets \
                     WHERE tenant_id = $1 AND client_id = $2 AND expires_at IS NULL",
                )
                .bind(tenant_id)
                .bind(&spec.client_id)
                .fetch_all(&mut *tx)
                .await?;
                if current.len() != 1 || current[0] != *digest {
                    sqlx::query("DELETE FROM client_secrets WHERE tenant_id = $1 AND client_id = $2")
                        .bind(tenant_id)
                        .bind(&spec.client_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO client_secrets (tenant_id, client_id, digest, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, NULL)",
                    )
                    .bind(tenant_id)
                    .bind(&spec.client_id)
                    .bind(digest)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    secret_changed = true;
                }
            }
            if matches!(secret, SecretChange::Clear) {
                let n = sqlx::query("DELETE FROM client_secrets WHERE tenant_id = $1 AND client_id = $2")
                    .bind(tenant_id)
                    .bind(&spec.client_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                secret_changed = n > 0;
            }
            tx.commit().await?;
            Ok(if outcome == UpsertOutcome::Unchanged && secret_changed {
                UpsertOutcome::Updated
            } else {
                outcome
            })
        })
    }

    /// Deletes a client (its secrets cascade). Returns whether it existed.
    #[tracing::instrument(name = "db.delete_client", skip_all)]
    pub async fn delete_client(&self, tenant_id: &str, client_id: &str) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM clients WHERE tenant_id = $1 AND client_id = $2")
                .bind(tenant_id)
                .bind(client_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Makes `new_digest` the current secret; the current one stays valid until
    /// `previous_expires_at` and any older one is dropped (at most two secrets).
    #[tracing::instrument(name = "db.rotate_client_secret", skip_all)]
    pub async fn rotate_client_secret(
        &self,
        tenant_id: &str,
        client_id: &str,
        new_digest: &[u8],
        previous_expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT created_at FROM clients WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(Error::NotFound);
            }
            sqlx::query(
                "DELETE FROM client_secrets \
                 WHERE tenant_id = $1 AND client_id = $2 AND expires_at IS NOT NULL",
            )
            .bind(tenant_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE client_secrets SET expires_at = $3 \
                 WHERE tenant_id = $1 AND client_id = $2 AND expires_at IS NULL",
            )
            .bind(tenant_id)
            .bind(client_id)
            .bind(previous_expires_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO client_secrets (tenant_id, client_id, digest, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, NULL)",
            )
            .bind(tenant_id)
            .bind(client_id)
            .bind(new_digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
