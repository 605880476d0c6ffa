//! Passkey rows (`passkeys`): a user's WebAuthn credentials, per tenant. A sign-in
//! records the authenticator's new signature counter with a conditional write on the
//! counter it was checked against, so one assertion accepted by two pods at once cannot
//! both count.

use super::{Result, Store, with_pool};
use crate::clock::UnixTime;

/// A stored passkey. `credential` is the verified credential as the WebAuthn library
/// serialises it (public key, algorithm, flags): public data.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredPasskey {
    pub tenant_id: String,
    /// base64url (unpadded) of the credential id.
    pub credential_id: String,
    pub user_id: String,
    pub name: String,
    pub credential: String,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub aaguid: Option<String>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
}

const COLUMNS: &str = "tenant_id, credential_id, user_id, name, credential, sign_count, \
                       backup_eligible, backup_state, aaguid, created_at, last_used_at";

/// What a successful assertion changes on its passkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasskeyUse {
    /// The counter the assertion was checked against (the row must still hold it).
    pub previous_count: i64,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub at: UnixTime,
}

impl Store {
    /// Stores a new passkey; `false` when its credential id is already registered in the
    /// tenant (to this user or another: the registration is refused, WebAuthn §7.1
    /// step 26).
    #[tracing::instrument(name = "db.insert_passkey", skip_all)]
    pub async fn insert_passkey(&self, p: &StoredPasskey) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO passkeys (tenant_id, credential_id, user_id, name, credential, \
                     sign_count, backup_eligible, backup_state, aaguid, created_at, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (tenant_id, credential_id) DO NOTHING",
            )
            .bind(&p.tenant_id)
            .bind(&p.credential_id)
            .bind(&p.user_id)
            .bind(&p.name)
            .bind(&p.credential)
            .bind(p.sign_count)
            .bind(p.backup_eligible)
            .bind(p.backup_state)
            .bind(&p.aaguid)
            .bind(p.created_at)
            .bind(p.last_used_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// The passkey with this credential id in the tenant.
    #[tracing::instrument(name = "db.get_passkey", skip_all)]
    pub async fn get_passkey(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<Option<StoredPasskey>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, StoredPasskey>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM passkeys WHERE tenant_id = $1 AND credential_id = $2"
            )))
            .bind(tenant_id)
            .bind(credential_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// A user's passkeys, oldest first.
    #[tracing::instrument(name = "db.list_passkeys", skip_all)]
    pub async fn list_passkeys(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<StoredPasskey>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, StoredPasskey>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM passkeys WHERE tenant_id = $1 AND user_id = $2 \
                 ORDER BY created_at, credential_id"
            )))
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// How many passkeys the user has.
    #[tracing::instrument(name = "db.count_passkeys", skip_all)]
    pub async fn count_passkeys(&self, tenant_id: &str, user_id: &str) -> Result<usize> {
        let n: i64 = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .fetch_one(pool)
                .await?
        });
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Records a sign-in with the passkey: its counter, backup state and last use, and
    /// the re-serialised credential when the library updated it (`None`: unchanged). `false` when the row no
    /// longer holds `previous_count` (another sign-in with the same or a cloned
    /// authenticator got there first) or the passkey was removed.
    #[tracing::instrument(name = "db.use_passkey", skip_all)]
    pub async fn use_passkey(
        &self,
        tenant_id: &str,
        credential_id: &str,
        credential: Option<&str>,
        u: PasskeyUse,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE passkeys SET sign_count = $4, backup_state = $5, last_used_at = $6, \
                     credential = COALESCE($7, credential), backup_eligible = $8 \
                 WHERE tenant_id = $1 AND credential_id = $2 AND sign_count = $3",
            )
            .bind(tenant_id)
            .bind(credential_id)
            .bind(u.previous_count)
            .bind(u.sign_count)
            .bind(u.backup_state)
            .bind(u.at)
            .bind(credential)
            .bind(u.backup_eligible)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Removes one of the user's passkeys; `false` when the user has none with that id
    /// (someone else's credential id removes nothing).
    #[tracing::instrument(name = "db.delete_passkey", skip_all)]
    pub async fn delete_passkey(
        &self,
        tenant_id: &str,
        user_id: &str,
        credential_id: &str,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM passkeys WHERE tenant_id = $1 AND user_id = $2 AND credential_id = $3",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(credential_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Removes every passkey of the user (an operator's reset); how many.
    #[tracing::instrument(name = "db.delete_passkeys_of", skip_all)]
    pub async fn delete_passkeys_of(&self, tenant_id: &str, user_id: &str) -> Result<u64> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM passkeys WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
