//! Client rows and their secret digests.

use super::audit::{self, AuditEvent};
use super::{Error, Result, Store, in_transaction, with_pool};
use crate::clock::UnixTime;
use crate::domain::client::ClientSpec;

/// What retiring a client removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retirement {
    pub grants_revoked: u64,
    pub codes_deleted: u64,
    pub consents_deleted: u64,
    pub requests_deleted: u64,
    /// From when `purge_retired_client` may free the id.
    pub reusable_at: UnixTime,
}

/// A retired client id (tombstone).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RetiredClient {
    pub client_id: String,
    pub retired_at: i64,
    pub reusable_at: i64,
}

/// What `purge_retired_client` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeRetired {
    Purged,
    /// The id is not retired (never was, or already purged).
    NotRetired,
    /// Tokens issued before the deletion may still be alive until then.
    TooEarly {
        reusable_at: UnixTime,
    },
}

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

impl StoredClient {
    /// The current secret (the one without an end): `None` when there is none or, which
    /// a registration never leaves, more than one.
    pub fn current_secret(&self) -> Option<&SecretDigest> {
        let mut current = self.secrets.iter().filter(|s| s.expires_at.is_none());
        match (current.next(), current.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
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
    /// Who manages the registration (`OidcClient <ns>/<name>` for the operator's);
    /// `None` for clients made with the CLI or the Management API.
    pub managed_by: Option<String>,
    /// The version of the registration ([`etag`] of the stored text): the Management
    /// API's `ETag`, compared by [`Guard::if_match`].
    pub etag: String,
}

/// The entity tag of a stored registration: a digest of its stored text, so any change
/// of the registration changes it, whoever made it.
pub fn etag(stored_spec: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, stored_spec.as_bytes());
    format!("\"{}\"", hex::encode(&digest.as_ref()[..16]))
}

/// Conditions on a client write, checked in its transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Guard<'a> {
    /// Record this owner (the admin API's writes: the operator's object).
    pub managed_by: Option<&'a str>,
    /// Refuse ([`Error::Managed`]) a client that someone manages (the Management API's
    /// writes: the operator would undo them).
    pub unmanaged_only: bool,
    /// Refuse ([`Error::Stale`]) unless the stored registration still has this ETag.
    pub if_match: Option<&'a str>,
}

impl Guard<'_> {
    /// The refusal, if `managed_by` and `stored_spec` (of the existing row) fail it.
    fn check(&self, existing: Option<(&str, Option<&str>)>) -> Result<()> {
        if let Some(expected) = self.if_match {
            match existing {
                Some((spec, _)) if etag(spec) == expected || expected == "*" => {}
                _ => return Err(Error::Stale),
            }
        }
        if self.unmanaged_only
            && let Some((_, Some(owner))) = existing
        {
            return Err(Error::Managed(owner.to_owned()));
        }
        Ok(())
    }
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
    managed_by: Option<String>,
}

fn decode(row: ClientRow, secrets: Vec<SecretDigest>) -> Result<StoredClient> {
    let spec: ClientSpec = serde_json::from_str(&row.spec)
        .map_err(|e| Error::Corrupt(format!("client registration is not valid JSON: {e}")))?;
    Ok(StoredClient {
        tenant_id: row.tenant_id,
        etag: etag(&row.spec),
        spec,
        secrets,
        created_at: row.created_at,
        updated_at: row.updated_at,
        managed_by: row.managed_by,
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
                "SELECT tenant_id, spec, created_at, updated_at, managed_by FROM clients \
                 WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(&mut *pool)
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
                "SELECT tenant_id, spec, created_at, updated_at, managed_by FROM clients \
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
    pub async fn upsert_client(
        &self,
        tenant_id: &str,
        spec: &ClientSpec,
        secret: &SecretChange,
        now: UnixTime,
    ) -> Result<UpsertOutcome> {
        self.upsert_client_guarded(tenant_id, spec, secret, now, &Guard::default())
            .await
    }

    /// [`Store::upsert_client`] under `guard`'s conditions, and recording its owner.
    #[tracing::instrument(name = "db.upsert_client", skip_all)]
    // One transaction, in order: tombstone and guard checks, the row, its owner, the
    // secret; split, the steps would need a connection type per backend.
    #[allow(clippy::too_many_lines)]
    pub async fn upsert_client_guarded(
        &self,
        tenant_id: &str,
        spec: &ClientSpec,
        secret: &SecretChange,
        now: UnixTime,
        guard: &Guard<'_>,
    ) -> Result<UpsertOutcome> {
        let spec_json = serde_json::to_string(spec)
            .map_err(|e| Error::Corrupt(format!("cannot encode client registration: {e}")))?;
        in_transaction!(self, tx => {
            // Checked in the same transaction as the insert, so a concurrent delete cannot
            // slip a re-registration between the check and the write.
            let retired: Option<i64> = sqlx::query_scalar(
                "SELECT reusable_at FROM retired_clients WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(&spec.client_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(reusable_at) = retired {
                return Err(Error::Retired { reusable_at });
            }
            let existing: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT spec, managed_by FROM clients WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(&spec.client_id)
            .fetch_optional(&mut *tx)
            .await?;
            guard.check(existing.as_ref().map(|(s, m)| (s.as_str(), m.as_deref())))?;
            let existing = existing.map(|(spec, _)| spec);
            let spec_changed = existing.as_deref() != Some(spec_json.as_str());
            let outcome = match existing {
                None => UpsertOutcome::Created,
                Some(_) if spec_changed => UpsertOutcome::Updated,
                Some(_) => UpsertOutcome::Unchanged,
            };
            if outcome == UpsertOutcome::Created {
                sqlx::query(
                    "INSERT INTO clients (tenant_id, client_id, spec, created_at, updated_at, managed_by) \
                     VALUES ($1, $2, $3, $4, $4, $5)",
                )
                .bind(tenant_id)
                .bind(&spec.client_id)
                .bind(&spec_json)
                .bind(now)
                .bind(guard.managed_by)
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
            if let (Some(owner), UpsertOutcome::Updated | UpsertOutcome::Unchanged) =
                (guard.managed_by, outcome)
            {
                // Clients registered before owners were recorded learn theirs at the
                // operator's next reconcile; not a change of the registration.
                sqlx::query(
                    "UPDATE clients SET managed_by = $3 WHERE tenant_id = $1 AND client_id = $2 \
                     AND (managed_by IS NULL OR managed_by <> $3)",
                )
                .bind(tenant_id)
                .bind(&spec.client_id)
                .bind(owner)
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
            Ok(if outcome == UpsertOutcome::Unchanged && secret_changed {
                UpsertOutcome::Updated
            } else {
                outcome
            })
        })
    }

    /// Deletes a client and everything issued to it, and retires its id, in one
    /// transaction: its grants are revoked (their refresh tokens die with them) and their
    /// unexpired access tokens deny-listed, its codes, consents and pending (pushed or
    /// interactive) authorization requests are deleted, a tombstone keeps the id from
    /// being registered again until `reusable_at`, and `audit` is recorded. `None` when
    /// the client did not exist (nothing is written).
    pub async fn retire_client(
        &self,
        tenant_id: &str,
        client_id: &str,
        now: UnixTime,
        reusable_at: UnixTime,
        audit: &AuditEvent,
    ) -> Result<Option<Retirement>> {
        self.retire_client_guarded(
            tenant_id,
            client_id,
            now,
            reusable_at,
            audit,
            &Guard::default(),
        )
        .await
    }

    /// [`Store::retire_client`] under `guard`'s conditions.
    #[tracing::instrument(name = "db.retire_client", skip_all)]
    pub async fn retire_client_guarded(
        &self,
        tenant_id: &str,
        client_id: &str,
        now: UnixTime,
        reusable_at: UnixTime,
        audit: &AuditEvent,
        guard: &Guard<'_>,
    ) -> Result<Option<Retirement>> {
        let out = in_transaction!(self, tx => {
            let existing: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT spec, managed_by FROM clients WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
            guard.check(existing.as_ref().map(|(s, m)| (s.as_str(), m.as_deref())))?;
            let n = sqlx::query("DELETE FROM clients WHERE tenant_id = $1 AND client_id = $2")
                .bind(tenant_id)
                .bind(client_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Ok(None);
            }
            let grants_revoked = super::grants::revoke_live_grants!(
                tx, tenant_id, now, "client_id" = client_id
            );
            let mut deleted = [0u64; 3];
            for (i, sql) in [
                "DELETE FROM authorization_codes WHERE tenant_id = $1 AND client_id = $2",
                "DELETE FROM consents WHERE tenant_id = $1 AND client_id = $2",
                "DELETE FROM authorization_requests WHERE tenant_id = $1 AND client_id = $2",
            ]
            .into_iter()
            .enumerate()
            {
                deleted[i] = sqlx::query(sql)
                    .bind(tenant_id)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            sqlx::query(
                "INSERT INTO retired_clients (tenant_id, client_id, retired_at, reusable_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, client_id) \
                 DO UPDATE SET retired_at = excluded.retired_at, reusable_at = excluded.reusable_at",
            )
            .bind(tenant_id)
            .bind(client_id)
            .bind(now)
            .bind(reusable_at)
            .execute(&mut *tx)
            .await?;
            let retirement = Retirement {
                grants_revoked,
                codes_deleted: deleted[0],
                consents_deleted: deleted[1],
                requests_deleted: deleted[2],
                reusable_at,
            };
            let mut event = audit.clone();
            if let serde_json::Value::Object(details) = &mut event.details {
                details.insert("grants_revoked".into(), grants_revoked.into());
                details.insert("consents_deleted".into(), deleted[1].into());
                details.insert("requests_deleted".into(), deleted[2].into());
                details.insert("reusable_at".into(), reusable_at.into());
            }
            audit::insert((&mut *tx).into(), &event).await?;
            Ok(Some(retirement))
        });
        // After the commit: see `Store::revoked`.
        self.revoked();
        out
    }

    /// The tombstone of a retired client id, if there is one.
    #[tracing::instrument(name = "db.retired_client", skip_all)]
    pub async fn retired_client(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<RetiredClient>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, RetiredClient>(
                "SELECT client_id, retired_at, reusable_at FROM retired_clients \
                 WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// A tenant's retired client ids, ordered by id.
    #[tracing::instrument(name = "db.list_retired_clients", skip_all)]
    pub async fn list_retired_clients(&self, tenant_id: &str) -> Result<Vec<RetiredClient>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, RetiredClient>(
                "SELECT client_id, retired_at, reusable_at FROM retired_clients \
                 WHERE tenant_id = $1 ORDER BY client_id",
            )
            .bind(tenant_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Removes a tombstone, making the id registrable again; refused before its
    /// `reusable_at`. The audit event is written in the same transaction.
    #[tracing::instrument(name = "db.purge_retired_client", skip_all)]
    pub async fn purge_retired_client(
        &self,
        tenant_id: &str,
        client_id: &str,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<PurgeRetired> {
        in_transaction!(self, tx => {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT reusable_at FROM retired_clients WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
            match found {
                None => Ok(PurgeRetired::NotRetired),
                Some(reusable_at) if now < reusable_at => Ok(PurgeRetired::TooEarly { reusable_at }),
                Some(_) => {
                    sqlx::query("DELETE FROM retired_clients WHERE tenant_id = $1 AND client_id = $2")
                        .bind(tenant_id)
                        .bind(client_id)
                        .execute(&mut *tx)
                        .await?;
                    audit::insert((&mut *tx).into(), audit).await?;
                    Ok(PurgeRetired::Purged)
                }
            }
        })
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
        in_transaction!(self, tx => {
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
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    fn spec(id: &str) -> ClientSpec {
        ClientSpec {
            client_id: id.to_owned(),
            ..ClientSpec::default()
        }
    }

    #[tokio::test]
    async fn a_retired_id_cannot_be_registered_until_its_tombstone_is_purged() {
        for t in testing::both().await {
            let db = &t.store;
            t.user("t", "alice").await;
            let created = db
                .upsert_client("t", &spec("web"), &SecretChange::Set(vec![1; 32]), 1_000)
                .await
                .unwrap();
            assert_eq!(created, UpsertOutcome::Created, "{}", t.name());
            let deleted = AuditEvent::new("t", 2_000, "client.deleted").subject(Some("web"));
            let retired = db
                .retire_client("t", "web", 2_000, 5_000, &deleted)
                .await
                .unwrap()
                .expect("the client existed");
            assert_eq!(retired.reusable_at, 5_000);
            assert!(db.get_client("t", "web").await.unwrap().is_none());
            assert_eq!(
                db.retire_client("t", "web", 2_001, 6_000, &deleted)
                    .await
                    .unwrap(),
                None,
                "deleting twice writes nothing ({})",
                t.name()
            );

            // Registering the id again is refused, and writes nothing.
            let again = db
                .upsert_client("t", &spec("web"), &SecretChange::Set(vec![2; 32]), 3_000)
                .await;
            assert!(
                matches!(again, Err(Error::Retired { reusable_at: 5_000 })),
                "{again:?} ({})",
                t.name()
            );
            assert!(db.get_client("t", "web").await.unwrap().is_none());
            // Another tenant's `web` is another client.
            t.user("u", "bob").await;
            db.upsert_client("u", &spec("web"), &SecretChange::Keep, 3_000)
                .await
                .unwrap();

            let purged = AuditEvent::new("t", 4_999, "client.retired_id_purged");
            assert_eq!(
                db.purge_retired_client("t", "web", 4_999, &purged)
                    .await
                    .unwrap(),
                PurgeRetired::TooEarly { reusable_at: 5_000 }
            );
            assert_eq!(
                db.list_retired_clients("t").await.unwrap(),
                [RetiredClient {
                    client_id: "web".into(),
                    retired_at: 2_000,
                    reusable_at: 5_000
                }]
            );
            assert_eq!(
                db.purge_retired_client("t", "web", 5_000, &purged)
                    .await
                    .unwrap(),
                PurgeRetired::Purged
            );
            assert_eq!(
                db.purge_retired_client("t", "web", 5_000, &purged)
                    .await
                    .unwrap(),
                PurgeRetired::NotRetired
            );
            assert_eq!(
                db.upsert_client("t", &spec("web"), &SecretChange::Keep, 5_001)
                    .await
                    .unwrap(),
                UpsertOutcome::Created
            );
            let events: Vec<String> = db
                .list_audit("t", 10)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.event)
                .collect();
            assert_eq!(
                events,
                ["client.retired_id_purged", "client.deleted"],
                "one event per change, none for refusals ({})",
                t.name()
            );
        }
    }
}
