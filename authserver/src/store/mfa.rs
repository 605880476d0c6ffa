//! MFA rows: a user's TOTP secret (`user_totp`, sealed by the caller), one-time recovery
//! code digests (`recovery_codes`) and the per-user "MFA required" flag
//! (`users.mfa_required`). Every statement that consumes a factor is a single
//! conditional write, so two pods racing on the same code cannot both accept it.

use base64::Engine as _;

use super::{Error, Result, Store, in_transaction, with_pool};
use crate::clock::UnixTime;

/// A stored TOTP enrolment. The secret stays sealed here.
/// A user's second factors, as a sign-in needs them ([`Store::mfa_factors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaFactors {
    /// The user's own "MFA required" flag.
    pub required: bool,
    /// The TOTP authenticator: `Some(true)` confirmed, `Some(false)` enrolment started,
    /// `None` none.
    pub totp_confirmed: Option<bool>,
    /// Unused recovery codes.
    pub recovery_codes: usize,
    /// Registered passkeys.
    pub passkeys: usize,
}

#[derive(Clone, PartialEq, Eq)]
pub struct StoredTotp {
    pub tenant_id: String,
    pub user_id: String,
    /// `Kek::seal` output (nonce ‖ ciphertext ‖ tag).
    pub secret_sealed: Vec<u8>,
    pub kek_id: String,
    /// When the user proved possession with a first code; `None` while enrolling.
    pub confirmed_at: Option<UnixTime>,
    /// The last time step accepted; codes of this step or earlier are refused.
    pub last_step: Option<i64>,
    pub created_at: UnixTime,
}

impl std::fmt::Debug for StoredTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTotp")
            .field("tenant_id", &self.tenant_id)
            .field("user_id", &self.user_id)
            .field("kek_id", &self.kek_id)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct TotpRow {
    tenant_id: String,
    user_id: String,
    secret_sealed: String,
    kek_id: String,
    confirmed_at: Option<i64>,
    last_step: Option<i64>,
    created_at: i64,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl TryFrom<TotpRow> for StoredTotp {
    type Error = Error;
    fn try_from(r: TotpRow) -> Result<Self> {
        let secret_sealed = base64::engine::general_purpose::STANDARD
            .decode(&r.secret_sealed)
            .map_err(|_| {
                Error::Corrupt(format!("TOTP secret of user {:?} is not base64", r.user_id))
            })?;
        Ok(Self {
            tenant_id: r.tenant_id,
            user_id: r.user_id,
            secret_sealed,
            kek_id: r.kek_id,
            confirmed_at: r.confirmed_at,
            last_step: r.last_step,
            created_at: r.created_at,
        })
    }
}

impl Store {
    /// Starts (or restarts) a TOTP enrolment with a new sealed secret. An unconfirmed
    /// secret is replaced; a confirmed one is left alone (it stays until removed) and
    /// `false` is returned.
    #[tracing::instrument(name = "db.begin_totp", skip_all)]
    pub async fn begin_totp(
        &self,
        tenant_id: &str,
        user_id: &str,
        secret_sealed: &[u8],
        kek_id: &str,
        now: UnixTime,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO user_totp (tenant_id, user_id, secret_sealed, kek_id, confirmed_at, \
                     last_step, created_at) \
                 VALUES ($1, $2, $3, $4, NULL, NULL, $5) \
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
                     secret_sealed = excluded.secret_sealed, kek_id = excluded.kek_id, \
                     last_step = NULL, created_at = excluded.created_at \
                 WHERE user_totp.confirmed_at IS NULL",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(b64(secret_sealed))
            .bind(kek_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// A user's TOTP enrolment, confirmed or not.
    #[tracing::instrument(name = "db.get_totp", skip_all)]
    pub async fn get_totp(&self, tenant_id: &str, user_id: &str) -> Result<Option<StoredTotp>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, TotpRow>(
                "SELECT tenant_id, user_id, secret_sealed, kek_id, confirmed_at, last_step, \
                     created_at \
                 FROM user_totp WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(StoredTotp::try_from).transpose()
    }

    /// Every TOTP enrolment of every tenant (for re-encryption under a new KEK only).
    #[tracing::instrument(name = "db.list_all_totp", skip_all)]
    pub async fn list_all_totp(&self) -> Result<Vec<StoredTotp>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, TotpRow>(
                "SELECT tenant_id, user_id, secret_sealed, kek_id, confirmed_at, last_step, \
                     created_at \
                 FROM user_totp ORDER BY tenant_id, user_id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(StoredTotp::try_from).collect()
    }

    /// Replaces sealed TOTP secrets in one transaction: `(tenant, user, old kek id, new
    /// sealed secret, new kek id)`. A row whose KEK id is no longer the old one (it was
    /// re-enrolled meanwhile) is left alone. Returns how many rows changed.
    #[tracing::instrument(name = "db.reseal_totp", skip_all)]
    pub async fn reseal_totp(
        &self,
        updates: &[(String, String, String, Vec<u8>, String)],
    ) -> Result<u64> {
        let n = in_transaction!(self, tx => {
            let mut n = 0;
            for (tenant_id, user_id, old_kek_id, sealed, kek_id) in updates {
                n += sqlx::query(
                    "UPDATE user_totp SET secret_sealed = $4, kek_id = $5 \
                     WHERE tenant_id = $1 AND user_id = $2 AND kek_id = $3",
                )
                .bind(tenant_id)
                .bind(user_id)
                .bind(old_kek_id)
                .bind(b64(sealed))
                .bind(kek_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            n
        });
        Ok(n)
    }

    /// Confirms a pending enrolment with the step of the first valid code and, in the
    /// same transaction, replaces the user's recovery codes with `recovery_digests`.
    /// `false` (and nothing written) when there is no pending enrolment any more, or the
    /// step is not newer than one already used.
    #[tracing::instrument(name = "db.confirm_totp", skip_all)]
    pub async fn confirm_totp(
        &self,
        tenant_id: &str,
        user_id: &str,
        step: i64,
        recovery_digests: &[String],
        now: UnixTime,
    ) -> Result<bool> {
        let confirmed = in_transaction!(self, tx => {
            let n = sqlx::query(
                "UPDATE user_totp SET confirmed_at = $3, last_step = $4 \
                 WHERE tenant_id = $1 AND user_id = $2 AND confirmed_at IS NULL \
                   AND (last_step IS NULL OR last_step < $4)",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(now)
            .bind(step)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                // Dropping the transaction rolls it back; nothing was written anyway.
                return Ok(false);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for d in recovery_digests {
                sqlx::query(
                    "INSERT INTO recovery_codes (tenant_id, user_id, code_hash, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant_id)
                .bind(user_id)
                .bind(d)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            true
        });
        Ok(confirmed)
    }

    /// Records `step` as used on a confirmed enrolment, only if it is newer than the last
    /// one. One conditional UPDATE: of two pods accepting the same code at once, exactly
    /// one gets `true`.
    #[tracing::instrument(name = "db.advance_totp_step", skip_all)]
    pub async fn advance_totp_step(
        &self,
        tenant_id: &str,
        user_id: &str,
        step: i64,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE user_totp SET last_step = $3 \
                 WHERE tenant_id = $1 AND user_id = $2 AND confirmed_at IS NOT NULL \
                   AND (last_step IS NULL OR last_step < $3)",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(step)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Removes a user's TOTP enrolment and recovery codes in one transaction. Returns
    /// whether there was anything to remove.
    #[tracing::instrument(name = "db.delete_mfa", skip_all)]
    /// Removes the user's second factor and, when there was one, ends what `end` says
    /// in the same transaction.
    pub async fn delete_mfa(
        &self,
        tenant_id: &str,
        user_id: &str,
        now: UnixTime,
        end: super::sessions::EndAccess<'_>,
    ) -> Result<Option<super::sessions::AccessEnded>> {
        let out = in_transaction!(self, tx => {
            let totp = sqlx::query("DELETE FROM user_totp WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let codes =
                sqlx::query("DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if totp + codes == 0 {
                return Ok(None);
            }
            Ok(Some(super::sessions::end_user_access!(tx, tenant_id, user_id, now, end)))
        });
        // After the commit: see `Store::revoked`.
        self.revoked();
        out
    }

    /// Replaces a user's recovery codes (digests) in one transaction: the old set stops
    /// working exactly when the new one starts.
    #[tracing::instrument(name = "db.replace_recovery_codes", skip_all)]
    pub async fn replace_recovery_codes(
        &self,
        tenant_id: &str,
        user_id: &str,
        digests: &[String],
        now: UnixTime,
    ) -> Result<()> {
        in_transaction!(self, tx => {
            sqlx::query("DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for d in digests {
                sqlx::query(
                    "INSERT INTO recovery_codes (tenant_id, user_id, code_hash, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant_id)
                .bind(user_id)
                .bind(d)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        });
        Ok(())
    }

    /// Digests of a user's unused recovery codes.
    #[tracing::instrument(name = "db.unused_recovery_codes", skip_all)]
    pub async fn unused_recovery_codes(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<String>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT code_hash FROM recovery_codes \
                 WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL ORDER BY code_hash",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Marks one recovery code used, only if it still is unused: of two concurrent
    /// attempts with the same code exactly one gets `true`.
    #[tracing::instrument(name = "db.use_recovery_code", skip_all)]
    pub async fn use_recovery_code(
        &self,
        tenant_id: &str,
        user_id: &str,
        digest: &str,
        now: UnixTime,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE recovery_codes SET used_at = $4 \
                 WHERE tenant_id = $1 AND user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(digest)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// How many unused recovery codes a user has left.
    #[tracing::instrument(name = "db.count_recovery_codes", skip_all)]
    pub async fn count_recovery_codes(&self, tenant_id: &str, user_id: &str) -> Result<usize> {
        let n = with_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM recovery_codes \
                 WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_one(pool)
            .await?
        });
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The user's second factors in one statement (a sign-in reads them every time):
    /// the user's own "MFA required" flag, the TOTP authenticator's state, unused
    /// recovery codes and passkeys. `None` when the user does not exist.
    #[tracing::instrument(name = "db.mfa_factors", skip_all)]
    pub async fn mfa_factors(&self, tenant_id: &str, user_id: &str) -> Result<Option<MfaFactors>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, (bool, Option<bool>, i64, i64)>(
                "SELECT u.mfa_required, \
                 (SELECT t.confirmed_at IS NOT NULL FROM user_totp t \
                  WHERE t.tenant_id = u.tenant_id AND t.user_id = u.user_id), \
                 (SELECT COUNT(*) FROM recovery_codes r WHERE r.tenant_id = u.tenant_id \
                  AND r.user_id = u.user_id AND r.used_at IS NULL), \
                 (SELECT COUNT(*) FROM passkeys p \
                  WHERE p.tenant_id = u.tenant_id AND p.user_id = u.user_id) \
                 FROM users u WHERE u.tenant_id = $1 AND u.user_id = $2",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(required, totp_confirmed, recovery_codes, passkeys)| MfaFactors {
                required,
                totp_confirmed,
                recovery_codes: usize::try_from(recovery_codes).unwrap_or(0),
                passkeys: usize::try_from(passkeys).unwrap_or(0),
            },
        ))
    }

    /// Sets the user's "MFA required" flag; `NotFound` when the user does not exist.
    #[tracing::instrument(name = "db.set_user_mfa_required", skip_all)]
    pub async fn set_user_mfa_required(
        &self,
        tenant_id: &str,
        user_id: &str,
        required: bool,
        now: UnixTime,
    ) -> Result<()> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE users SET mfa_required = $3, updated_at = $4 \
                 WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(required)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MfaFactors;
    use crate::store::sessions::EndAccess;
    use crate::store::testing;

    #[tokio::test]
    async fn enrolment_replaces_pending_secrets_but_keeps_a_confirmed_one() {
        for db in testing::both().await {
            let (s, be) = (&db.store, db.name());
            let u = db.user("t", "alice").await;
            assert!(
                s.begin_totp("t", &u.user_id, b"one", "kek-1", 10)
                    .await
                    .unwrap()
            );
            assert!(
                s.begin_totp("t", &u.user_id, b"two", "kek-1", 11)
                    .await
                    .unwrap()
            );
            let t = s.get_totp("t", &u.user_id).await.unwrap().unwrap();
            assert_eq!(t.secret_sealed, b"two", "{be}");
            assert_eq!(
                (t.confirmed_at, t.last_step, t.created_at),
                (None, None, 11)
            );
            let pending = s.mfa_factors("t", &u.user_id).await.unwrap().unwrap();
            assert_eq!(
                (pending.totp_confirmed, pending.recovery_codes),
                (Some(false), 0),
                "{be}"
            );
            let digests = vec!["d1".to_owned(), "d2".to_owned()];
            assert!(
                s.confirm_totp("t", &u.user_id, 100, &digests, 12)
                    .await
                    .unwrap()
            );
            // Confirmed: a new enrolment does not replace it, a second confirm does nothing.
            assert!(
                !s.begin_totp("t", &u.user_id, b"three", "kek-1", 13)
                    .await
                    .unwrap()
            );
            assert!(!s.confirm_totp("t", &u.user_id, 101, &[], 13).await.unwrap());
            let t = s.get_totp("t", &u.user_id).await.unwrap().unwrap();
            assert_eq!(t.secret_sealed, b"two", "{be}");
            assert_eq!((t.confirmed_at, t.last_step), (Some(12), Some(100)), "{be}");
            let confirmed = s.mfa_factors("t", &u.user_id).await.unwrap().unwrap();
            assert_eq!(
                (
                    confirmed.totp_confirmed,
                    confirmed.recovery_codes,
                    confirmed.passkeys
                ),
                (Some(true), 2, 0),
                "{be}"
            );
            assert_eq!(s.count_recovery_codes("t", &u.user_id).await.unwrap(), 2);
            assert!(s.get_totp("t", "nobody").await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn a_step_is_accepted_once_and_never_an_older_one() {
        for db in testing::both().await {
            let (s, be) = (&db.store, db.name());
            let u = db.user("t", "bob").await;
            s.begin_totp("t", &u.user_id, b"x", "k", 1).await.unwrap();
            // Not confirmed yet: steps cannot be consumed outside confirmation.
            assert!(
                !s.advance_totp_step("t", &u.user_id, 50).await.unwrap(),
                "{be}"
            );
            assert!(s.confirm_totp("t", &u.user_id, 50, &[], 2).await.unwrap());
            assert!(
                !s.advance_totp_step("t", &u.user_id, 50).await.unwrap(),
                "{be}"
            );
            assert!(
                !s.advance_totp_step("t", &u.user_id, 49).await.unwrap(),
                "{be}"
            );
            assert!(
                s.advance_totp_step("t", &u.user_id, 51).await.unwrap(),
                "{be}"
            );
            assert!(
                !s.advance_totp_step("t", &u.user_id, 51).await.unwrap(),
                "{be}"
            );
            let t = s.get_totp("t", &u.user_id).await.unwrap().unwrap();
            assert_eq!(t.last_step, Some(51));
        }
    }

    #[tokio::test]
    async fn recovery_codes_are_single_use_and_replaced_atomically() {
        for db in testing::both().await {
            let (s, be) = (&db.store, db.name());
            let u = db.user("t", "carol").await;
            let set = |p: &str| (0..3).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
            s.replace_recovery_codes("t", &u.user_id, &set("a"), 5)
                .await
                .unwrap();
            assert!(
                s.use_recovery_code("t", &u.user_id, "a1", 6).await.unwrap(),
                "{be}"
            );
            assert!(
                !s.use_recovery_code("t", &u.user_id, "a1", 7).await.unwrap(),
                "{be}"
            );
            assert!(
                !s.use_recovery_code("t", &u.user_id, "zz", 7).await.unwrap(),
                "{be}"
            );
            assert_eq!(s.count_recovery_codes("t", &u.user_id).await.unwrap(), 2);
            assert_eq!(
                s.unused_recovery_codes("t", &u.user_id).await.unwrap(),
                vec!["a0".to_owned(), "a2".to_owned()]
            );
            s.replace_recovery_codes("t", &u.user_id, &set("b"), 8)
                .await
                .unwrap();
            assert!(
                !s.use_recovery_code("t", &u.user_id, "a0", 9).await.unwrap(),
                "{be}"
            );
            assert_eq!(s.count_recovery_codes("t", &u.user_id).await.unwrap(), 3);
            // Another user's codes are untouched by this user's replacement.
            let v = db.user("t", "dave").await;
            s.replace_recovery_codes("t", &v.user_id, &set("a"), 5)
                .await
                .unwrap();
            assert!(!s.use_recovery_code("t", &u.user_id, "a2", 9).await.unwrap());
            assert!(s.use_recovery_code("t", &v.user_id, "a2", 9).await.unwrap());
        }
    }

    #[tokio::test]
    async fn delete_removes_totp_and_codes_and_the_flag_round_trips() {
        for db in testing::both().await {
            let (s, be) = (&db.store, db.name());
            let u = db.user("t", "erin").await;
            assert!(
                s.delete_mfa("t", &u.user_id, 1, EndAccess::All)
                    .await
                    .unwrap()
                    .is_none(),
                "{be}"
            );
            s.begin_totp("t", &u.user_id, b"x", "k", 1).await.unwrap();
            s.confirm_totp("t", &u.user_id, 3, &["d".to_owned()], 2)
                .await
                .unwrap();
            assert!(
                s.delete_mfa("t", &u.user_id, 1, EndAccess::All)
                    .await
                    .unwrap()
                    .is_some(),
                "{be}"
            );
            assert!(s.get_totp("t", &u.user_id).await.unwrap().is_none());
            assert_eq!(s.count_recovery_codes("t", &u.user_id).await.unwrap(), 0);

            let none = MfaFactors {
                required: false,
                totp_confirmed: None,
                recovery_codes: 0,
                passkeys: 0,
            };
            assert_eq!(s.mfa_factors("t", &u.user_id).await.unwrap(), Some(none));
            s.set_user_mfa_required("t", &u.user_id, true, 5)
                .await
                .unwrap();
            assert_eq!(
                s.mfa_factors("t", &u.user_id).await.unwrap(),
                Some(MfaFactors {
                    required: true,
                    ..none
                }),
                "{be}"
            );
            assert_eq!(s.mfa_factors("t", "nobody").await.unwrap(), None);
            assert!(matches!(
                s.set_user_mfa_required("t", "nobody", true, 5).await,
                Err(crate::store::Error::NotFound)
            ));
        }
    }
}
