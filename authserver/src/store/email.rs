//! E-mail rows: the outbox (`email_outbox`) and single-use links (`email_tokens`, kept
//! only as their hash). The devices users signed in from are `store::devices`.
//!
//! The outbox is claimed with a lease by a conditional `UPDATE … RETURNING` (one
//! statement, the same on both backends): whichever pod's update matches first owns the
//! row until `lease_until`; a pod that dies mid-send leaves a lease that simply runs out,
//! and the row is claimed again. Nothing is lost on a restart: a row leaves the queue
//! only when it is marked sent or given up.

use super::sessions::AccessEnded;
use super::{Conn, Result, Store, on_conn, with_pool};
use crate::clock::UnixTime;

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub recipient: String,
    /// The message sealed under the ENCRYPTION_KEY, and that key's id.
    pub sealed: Vec<u8>,
    pub kek_id: String,
    pub created_at: UnixTime,
}

/// A claimed message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub recipient: String,
    pub sealed: Vec<u8>,
    pub kek_id: String,
    pub attempts: i32,
}

/// One row as `authserver` reports it (no message content).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxStatus {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

/// What a used link was for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    pub user_id: String,
    pub email: String,
}

/// Queues a message (in the caller's unit of work, so it commits with what caused it).
pub async fn insert_mail(conn: Conn<'_>, m: &NewMail) -> Result<()> {
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO email_outbox (id, tenant_id, kind, recipient, recipient_key, sealed, \
             kek_id, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(&m.id)
        .bind(&m.tenant_id)
        .bind(&m.kind)
        .bind(&m.recipient)
        .bind(m.recipient.to_lowercase())
        .bind(&m.sealed)
        .bind(&m.kek_id)
        .bind(m.created_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Stores a single-use link (its hash), bound to the address it is sent to.
#[allow(clippy::too_many_arguments)] // one row's columns
pub async fn insert_token(
    conn: Conn<'_>,
    tenant_id: &str,
    token_hash: &str,
    purpose: &str,
    user_id: &str,
    email: &str,
    now: UnixTime,
    expires_at: UnixTime,
) -> Result<()> {
    on_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO email_tokens (tenant_id, token_hash, purpose, user_id, email, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant_id)
        .bind(token_hash)
        .bind(purpose)
        .bind(user_id)
        .bind(email)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Uses a link: `Some` once, while it is unexpired; `None` for an unknown, used or
/// expired one. One conditional statement, so two racing uses cannot both succeed.
pub async fn consume_token(
    conn: Conn<'_>,
    tenant_id: &str,
    token_hash: &str,
    purpose: &str,
    now: UnixTime,
) -> Result<Option<TokenRow>> {
    let row = on_conn!(conn, c => {
        sqlx::query_as::<_, TokenRow>(
            "UPDATE email_tokens SET used_at = $4 WHERE tenant_id = $1 AND token_hash = $2 \
             AND purpose = $3 AND used_at IS NULL AND expires_at > $4 RETURNING user_id, email",
        )
        .bind(tenant_id)
        .bind(token_hash)
        .bind(purpose)
        .bind(now)
        .fetch_optional(&mut *c)
        .await?
    });
    Ok(row)
}

/// Ends every unused link of `purpose` the user still has (a reset used one; a new
/// address makes the old verification links moot).
pub async fn spend_tokens(
    conn: Conn<'_>,
    tenant_id: &str,
    user_id: &str,
    purpose: &str,
    now: UnixTime,
) -> Result<u64> {
    let n = on_conn!(conn, c => {
        sqlx::query(
            "UPDATE email_tokens SET used_at = $4 WHERE tenant_id = $1 AND user_id = $2 \
             AND purpose = $3 AND used_at IS NULL",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(purpose)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n)
}

/// Marks the user's address verified, if it is still `email` (any case); whether it
/// was.
pub async fn set_email_verified(
    conn: Conn<'_>,
    tenant_id: &str,
    user_id: &str,
    email: &str,
    now: UnixTime,
) -> Result<bool> {
    let n = on_conn!(conn, c => {
        sqlx::query(
            "UPDATE users SET email_verified = $4, updated_at = $5 WHERE tenant_id = $1 \
             AND user_id = $2 AND lower(email) = lower($3)",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(email)
        .bind(true)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n > 0)
}

/// Sets the password hash and ends every session and live grant of the user, in the
/// caller's unit of work (a reset by e-mail link: whoever had the old password must
/// not keep a way in).
pub async fn reset_password(
    conn: Conn<'_>,
    tenant_id: &str,
    user_id: &str,
    password_hash: &str,
    now: UnixTime,
) -> Result<AccessEnded> {
    on_conn!(conn, tx => {
        let n = sqlx::query(
            "UPDATE users SET password_hash = $3, updated_at = $4 \
             WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(super::Error::NotFound);
        }
        Ok(super::sessions::end_user_access!(
            tx,
            tenant_id,
            user_id,
            now,
            super::sessions::EndAccess::All
        ))
    })
}

impl Store {
    /// Queues a message on its own (not part of a larger unit of work).
    #[tracing::instrument(name = "db.queue_mail", skip_all)]
    pub async fn queue_mail(&self, m: &NewMail) -> Result<()> {
        with_pool!(self, c => insert_mail(c.into(), m).await)
    }

    /// Messages of `kind` queued for `recipient` (any case) since `since`.
    #[tracing::instrument(name = "db.count_recent_mail", skip_all)]
    pub async fn count_recent_mail(
        &self,
        tenant_id: &str,
        recipient: &str,
        kind: &str,
        since: UnixTime,
    ) -> Result<i64> {
        Ok(with_pool!(self, c => {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM email_outbox WHERE tenant_id = $1 AND recipient_key = $2 \
                 AND kind = $3 AND created_at > $4",
            )
            .bind(tenant_id)
            .bind(recipient.to_lowercase())
            .bind(kind)
            .bind(since)
            .fetch_one(&mut *c)
            .await?
        }))
    }

    /// Claims one due message for `owner` until `lease_until`: unsent, not given up,
    /// due, and not leased by a live lease. `None` when nothing is due.
    #[tracing::instrument(name = "db.claim_mail", skip_all)]
    pub async fn claim_mail(
        &self,
        owner: &str,
        now: UnixTime,
        lease_until: UnixTime,
    ) -> Result<Option<OutboxRow>> {
        Ok(with_pool!(self, c => {
            sqlx::query_as::<_, OutboxRow>(
                "UPDATE email_outbox SET lease_owner = $1, lease_until = $3 WHERE id = (\
                 SELECT id FROM email_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
                 AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
                 ORDER BY next_attempt_at LIMIT 1) \
                 AND sent_at IS NULL AND failed_at IS NULL \
                 AND (lease_until IS NULL OR lease_until <= $2) \
                 RETURNING id, tenant_id, kind, recipient, sealed, kek_id, attempts",
            )
            .bind(owner)
            .bind(now)
            .bind(lease_until)
            .fetch_optional(&mut *c)
            .await?
        }))
    }

    /// A claimed message was delivered: its content is erased and the purge may delete
    /// it. Only the lease holder can mark it.
    #[tracing::instrument(name = "db.mark_mail_sent", skip_all)]
    pub async fn mark_mail_sent(&self, id: &str, owner: &str, now: UnixTime) -> Result<bool> {
        let n = with_pool!(self, c => {
            sqlx::query(
                "UPDATE email_outbox SET sent_at = $3, expires_at = $3, attempts = attempts + 1, \
                 sealed = $4, lease_owner = NULL, lease_until = NULL, last_error = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND sent_at IS NULL",
            )
            .bind(id)
            .bind(owner)
            .bind(now)
            .bind(Vec::<u8>::new())
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// A claimed message could not be delivered: retried at `retry_at`, or given up
    /// (content erased, purgeable) when `retry_at` is `None`.
    #[tracing::instrument(name = "db.mark_mail_failed", skip_all)]
    pub async fn mark_mail_failed(
        &self,
        id: &str,
        owner: &str,
        now: UnixTime,
        retry_at: Option<UnixTime>,
        error: &str,
    ) -> Result<bool> {
        let n = with_pool!(self, c => {
            match retry_at {
                Some(at) => sqlx::query(
                    "UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = $3, \
                     last_error = $4, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND lease_owner = $2 AND sent_at IS NULL",
                )
                .bind(id)
                .bind(owner)
                .bind(at)
                .bind(error)
                .execute(&mut *c)
                .await?
                .rows_affected(),
                None => sqlx::query(
                    "UPDATE email_outbox SET attempts = attempts + 1, failed_at = $3, \
                     expires_at = $3, last_error = $4, sealed = $5, lease_owner = NULL, \
                     lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND sent_at IS NULL",
                )
                .bind(id)
                .bind(owner)
                .bind(now)
                .bind(error)
                .bind(Vec::<u8>::new())
                .execute(&mut *c)
                .await?
                .rows_affected(),
            }
        });
        Ok(n > 0)
    }

    /// A tenant's outbox, newest first (operators: what is stuck, and why).
    #[tracing::instrument(name = "db.list_mail", skip_all)]
    pub async fn list_mail(&self, tenant_id: &str, limit: i64) -> Result<Vec<OutboxStatus>> {
        Ok(with_pool!(self, c => {
            sqlx::query_as::<_, OutboxStatus>(
                "SELECT id, kind, recipient, attempts, next_attempt_at, sent_at, failed_at, \
                 last_error FROM email_outbox WHERE tenant_id = $1 \
                 ORDER BY created_at DESC, id LIMIT $2",
            )
            .bind(tenant_id)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
        }))
    }

    /// The link, while it is usable (shown before its form is filled in; using it is
    /// [`consume_token`]).
    #[tracing::instrument(name = "db.email_token", skip_all)]
    pub async fn email_token(
        &self,
        tenant_id: &str,
        token_hash: &str,
        purpose: &str,
        now: UnixTime,
    ) -> Result<Option<TokenRow>> {
        Ok(with_pool!(self, c => {
            sqlx::query_as::<_, TokenRow>(
                "SELECT user_id, email FROM email_tokens WHERE tenant_id = $1 AND token_hash = $2 \
                 AND purpose = $3 AND used_at IS NULL AND expires_at > $4",
            )
            .bind(tenant_id)
            .bind(token_hash)
            .bind(purpose)
            .bind(now)
            .fetch_optional(&mut *c)
            .await?
        }))
    }
}

#[cfg(test)]
mod tests {
    //! The outbox's lease: two senders never hold one message, a lease that ran out is
    //! claimed again, and only the holder can settle a message.

    use super::*;
    use crate::store::testing;

    fn mail(id: &str, at: UnixTime) -> NewMail {
        NewMail {
            id: id.to_owned(),
            tenant_id: "t".to_owned(),
            kind: "password_reset".to_owned(),
            recipient: "Alice@Example.com".to_owned(),
            sealed: vec![1, 2, 3],
            kek_id: "k".to_owned(),
            created_at: at,
        }
    }

    async fn queue(store: &Store, m: &NewMail) -> Result<()> {
        with_pool!(store, c => insert_mail(c.into(), m).await)
    }

    #[tokio::test]
    async fn concurrent_senders_claim_each_message_once() {
        for db in testing::both().await {
            db.user("t", "alice").await;
            let store = &db.store;
            for i in 0..6 {
                queue(store, &mail(&format!("m{i}"), 2_000))
                    .await
                    .expect("queued");
            }
            let claim_all = |owner: &'static str| {
                let store = store.clone();
                async move {
                    let mut got = Vec::new();
                    while let Some(row) =
                        store.claim_mail(owner, 2_000, 2_100).await.expect("claim")
                    {
                        got.push(row.id);
                    }
                    got
                }
            };
            let (a, b) = tokio::join!(claim_all("a"), claim_all("b"));
            let mut all: Vec<_> = a.iter().chain(&b).cloned().collect();
            all.sort();
            assert_eq!(all, ["m0", "m1", "m2", "m3", "m4", "m5"], "{}", db.name());
            // Leased: nothing more to claim until the leases run out.
            assert!(
                store
                    .claim_mail("c", 2_050, 2_150)
                    .await
                    .expect("claim")
                    .is_none()
            );
            // Only the holder settles a message.
            let mine = &a.first().or(b.first()).expect("claimed").clone();
            let holder = if a.contains(mine) { "a" } else { "b" };
            assert!(!store.mark_mail_sent(mine, "c", 2_060).await.expect("mark"));
            assert!(
                store
                    .mark_mail_sent(mine, holder, 2_060)
                    .await
                    .expect("mark")
            );
            // A sender that died: its leases run out and the mail is claimed again.
            let again = store.claim_mail("c", 2_100, 2_200).await.expect("claim");
            assert!(again.is_some_and(|r| r.id != *mine), "{}", db.name());
            assert_eq!(
                store
                    .count_recent_mail("t", "alice@example.COM", "password_reset", 1_999)
                    .await
                    .expect("count"),
                6,
                "counted per address, in any case"
            );
        }
    }
}
