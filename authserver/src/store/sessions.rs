//! Browser sessions (`browser_sessions`, one per cookie) and the accounts signed in to
//! them (`sessions`, one OpenID Connect `sid` each). Cookie values are kept only as
//! `crypto::handle_hash`.

use super::{Conn, Result, Store, in_transaction, on_conn, with_pool};
use crate::clock::UnixTime;

/// A browser session row. `data` is the stored text (JSON or an encrypted envelope).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BrowserRow {
    pub tenant_id: String,
    pub id_hash: String,
    pub data: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
    pub expires_at: UnixTime,
}

/// One signed-in account in a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSession {
    pub tenant_id: String,
    pub sid: String,
    pub browser_id_hash: String,
    pub user_id: String,
    pub auth_time: UnixTime,
    /// RFC 8176 method references.
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
    pub idle_expires_at: UnixTime,
    pub expires_at: UnixTime,
}

impl AccountSession {
    /// Neither the idle nor the absolute timeout has passed.
    pub fn is_valid(&self, now: UnixTime) -> bool {
        now < self.idle_expires_at && now < self.expires_at
    }
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    tenant_id: String,
    sid: String,
    browser_id_hash: String,
    user_id: String,
    auth_time: i64,
    amr: String,
    acr: Option<String>,
    created_at: i64,
    last_seen_at: i64,
    idle_expires_at: i64,
    expires_at: i64,
}

impl From<AccountRow> for AccountSession {
    fn from(r: AccountRow) -> Self {
        Self {
            tenant_id: r.tenant_id,
            sid: r.sid,
            browser_id_hash: r.browser_id_hash,
            user_id: r.user_id,
            auth_time: r.auth_time,
            amr: serde_json::from_str(&r.amr).unwrap_or_default(),
            acr: r.acr,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            idle_expires_at: r.idle_expires_at,
            expires_at: r.expires_at,
        }
    }
}

/// Where a session's browser signed in from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    #[sqlx(flatten)]
    session: AccountRow,
    ip: Option<String>,
    user_agent: Option<String>,
}

const ACCOUNT_COLUMNS: &str = "tenant_id, sid, browser_id_hash, user_id, auth_time, amr, acr, \
                               created_at, last_seen_at, idle_expires_at, expires_at";

/// What signing in changed besides the new row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignInOutcome {
    /// Sessions ended to stay within the per-user or per-browser limit, as
    /// `(sid, user_id)`.
    pub evicted: Vec<(String, String)>,
}

/// What a credential change (password set, second factor removed) ends besides itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAccess<'a> {
    /// Nothing (`sessions.revoke_on_credential_reset: false`).
    Nothing,
    /// Every session of the user and every live grant (refresh and access tokens).
    All,
    /// The same, but this session stays (a user changing their own credentials).
    AllBut(&'a str),
}

/// What ending a user's access removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessEnded {
    pub sessions: u64,
    pub grants: u64,
}

/// Ends the user's sessions and revokes their live grants inside the open transaction
/// `$tx` (so it commits with the credential change that calls for it). A macro, like
/// `in_transaction!`, so one set of statements serves both drivers.
macro_rules! end_user_access {
    ($tx:ident, $tenant:expr, $user:expr, $now:expr, $end:expr) => {{
        let (tenant, user, now): (&str, &str, $crate::clock::UnixTime) = ($tenant, $user, $now);
        let keep = match $end {
            $crate::store::sessions::EndAccess::Nothing => None,
            $crate::store::sessions::EndAccess::All => Some(""),
            $crate::store::sessions::EndAccess::AllBut(sid) => Some(sid),
        };
        match keep {
            None => $crate::store::sessions::AccessEnded::default(),
            Some(keep) => {
                let grants =
                    $crate::store::grants::revoke_live_grants!($tx, tenant, now, "user_id" = user);
                // Session ids are never empty: `All` keeps none.
                let sessions = sqlx::query(
                    "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND sid <> $3",
                )
                .bind(tenant)
                .bind(user)
                .bind(keep)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                $crate::store::sessions::AccessEnded { sessions, grants }
            }
        }
    }};
}
pub(crate) use end_user_access;

impl Store {
    #[tracing::instrument(name = "db.insert_browser_session", skip_all)]
    pub async fn insert_browser_session(&self, row: &BrowserRow) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO browser_sessions (tenant_id, id_hash, data, ip, user_agent, \
                 created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&row.tenant_id)
            .bind(&row.id_hash)
            .bind(&row.data)
            .bind(&row.ip)
            .bind(&row.user_agent)
            .bind(row.created_at)
            .bind(row.last_seen_at)
            .bind(row.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    #[tracing::instrument(name = "db.get_browser_session", skip_all)]
    pub async fn get_browser_session(
        &self,
        tenant_id: &str,
        id_hash: &str,
    ) -> Result<Option<BrowserRow>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, BrowserRow>(
                "SELECT tenant_id, id_hash, data, ip, user_agent, created_at, last_seen_at, \
                 expires_at FROM browser_sessions WHERE tenant_id = $1 AND id_hash = $2",
            )
            .bind(tenant_id)
            .bind(id_hash)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Replaces a browser session's data; `false` when the row is gone.
    #[tracing::instrument(name = "db.set_browser_session_data", skip_all)]
    pub async fn set_browser_session_data(
        &self,
        tenant_id: &str,
        id_hash: &str,
        data: &str,
    ) -> Result<bool> {
        with_pool!(self, c => set_data(c.into(), tenant_id, id_hash, data).await)
    }

    /// Moves the idle expiry of a browser session and its accounts forward (never past
    /// each one's absolute end).
    #[tracing::instrument(name = "db.touch_browser_session", skip_all)]
    pub async fn touch_browser_session(
        &self,
        tenant_id: &str,
        id_hash: &str,
        now: UnixTime,
        browser_expires_at: UnixTime,
        account_idle_expires_at: UnixTime,
    ) -> Result<()> {
        in_transaction!(self, tx => {
            sqlx::query(
                "UPDATE browser_sessions SET last_seen_at = $3, expires_at = $4 \
                 WHERE tenant_id = $1 AND id_hash = $2",
            )
            .bind(tenant_id)
            .bind(id_hash)
            .bind(now)
            .bind(browser_expires_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE sessions SET last_seen_at = $3, idle_expires_at = $4 \
                 WHERE tenant_id = $1 AND browser_id_hash = $2 AND idle_expires_at > $3",
            )
            .bind(tenant_id)
            .bind(id_hash)
            .bind(now)
            .bind(account_idle_expires_at)
            .execute(&mut *tx)
            .await?;
            Ok::<(), super::Error>(())
        })?;
        Ok(())
    }

    /// Deletes a browser session and (cascade) its accounts; returns their sids.
    #[tracing::instrument(name = "db.delete_browser_session", skip_all)]
    pub async fn delete_browser_session(
        &self,
        tenant_id: &str,
        id_hash: &str,
    ) -> Result<Vec<AccountSession>> {
        in_transaction!(self, tx => {
            let rows = sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM sessions WHERE tenant_id = $1 AND browser_id_hash = $2"
            )))
            .bind(tenant_id)
            .bind(id_hash)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND browser_id_hash = $2")
                .bind(tenant_id)
                .bind(id_hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM browser_sessions WHERE tenant_id = $1 AND id_hash = $2")
                .bind(tenant_id)
                .bind(id_hash)
                .execute(&mut *tx)
                .await?;
            Ok(rows.into_iter().map(AccountSession::from).collect())
        })
    }

    /// Gives a browser session a new id (after sign-in, against session fixation): the
    /// row, its accounts and the authorization requests bound to it move to `new_hash`,
    /// with `data` (re-encrypted for the new id by the caller).
    #[tracing::instrument(name = "db.rotate_browser_session", skip_all)]
    pub async fn rotate_browser_session(
        &self,
        old: &BrowserRow,
        new_hash: &str,
        data: &str,
    ) -> Result<()> {
        let mut unit = self.begin().await?;
        rotate(unit.conn(), old, new_hash, data).await?;
        unit.commit().await
    }

    /// Signs an account in: inserts `s`, then ends the user's oldest sessions beyond
    /// `max_per_user` and this browser's oldest accounts beyond `max_per_browser`, all
    /// in one transaction. A browser already holding the same user replaces that row.
    #[tracing::instrument(name = "db.insert_session", skip_all)]
    pub async fn insert_session(
        &self,
        s: &AccountSession,
        max_per_user: Option<u32>,
        max_per_browser: usize,
    ) -> Result<SignInOutcome> {
        let mut unit = self.begin().await?;
        let out = insert(unit.conn(), s, max_per_user, max_per_browser).await?;
        unit.commit().await?;
        Ok(out)
    }

    /// A browser's accounts, newest first (expired ones included: the caller decides).
    #[tracing::instrument(name = "db.list_browser_accounts", skip_all)]
    pub async fn list_browser_accounts(
        &self,
        tenant_id: &str,
        browser_id_hash: &str,
    ) -> Result<Vec<AccountSession>> {
        with_pool!(self, c => browser_accounts(c.into(), tenant_id, browser_id_hash).await)
    }

    #[tracing::instrument(name = "db.get_session", skip_all)]
    pub async fn get_session(&self, tenant_id: &str, sid: &str) -> Result<Option<AccountSession>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM sessions WHERE tenant_id = $1 AND sid = $2"
            )))
            .bind(tenant_id)
            .bind(sid)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(AccountSession::from))
    }

    /// A user's account sessions (every browser), newest first.
    #[tracing::instrument(name = "db.list_user_sessions", skip_all)]
    pub async fn list_user_sessions(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<AccountSession>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM sessions WHERE tenant_id = $1 AND user_id = $2 \
                 ORDER BY created_at DESC, sid"
            )))
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(AccountSession::from).collect())
    }

    /// A user's account sessions (every browser), newest first, each with the address
    /// and `User-Agent` its browser session was created from (the account pages' device
    /// list). A browser row that is gone leaves both empty.
    #[tracing::instrument(name = "db.list_user_devices", skip_all)]
    pub async fn list_user_devices(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<(AccountSession, Device)>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, DeviceRow>(
                "SELECT s.tenant_id, s.sid, s.browser_id_hash, s.user_id, s.auth_time, s.amr, \
                 s.acr, s.created_at, s.last_seen_at, s.idle_expires_at, s.expires_at, \
                 b.ip, b.user_agent FROM sessions s LEFT JOIN browser_sessions b \
                 ON b.tenant_id = s.tenant_id AND b.id_hash = s.browser_id_hash \
                 WHERE s.tenant_id = $1 AND s.user_id = $2 ORDER BY s.created_at DESC, s.sid",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| {
                let device = Device {
                    ip: r.ip,
                    user_agent: r.user_agent,
                };
                (AccountSession::from(r.session), device)
            })
            .collect())
    }

    /// Ends the user's sessions other than `keep` (a user signing out their other
    /// devices); the ended ones' ids. Only the user's own: the `user_id` condition is
    /// what keeps one user from ending another's session.
    #[tracing::instrument(name = "db.delete_other_user_sessions", skip_all)]
    pub async fn delete_other_user_sessions(
        &self,
        tenant_id: &str,
        user_id: &str,
        keep: &str,
    ) -> Result<Vec<String>> {
        in_transaction!(self, tx => {
            let sids: Vec<String> = sqlx::query_scalar(
                "SELECT sid FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND sid <> $3",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(keep)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND sid <> $3")
                .bind(tenant_id)
                .bind(user_id)
                .bind(keep)
                .execute(&mut *tx)
                .await?;
            Ok(sids)
        })
    }

    /// Ends the session `sid` if it is `user_id`'s; `false` (nothing changed) otherwise.
    #[tracing::instrument(name = "db.delete_user_session", skip_all)]
    pub async fn delete_user_session(
        &self,
        tenant_id: &str,
        user_id: &str,
        sid: &str,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND sid = $3")
                .bind(tenant_id)
                .bind(user_id)
                .bind(sid)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Ends every account session of a user (signed out in every browser); how many.
    #[tracing::instrument(name = "db.delete_user_sessions", skip_all)]
    pub async fn delete_user_sessions(&self, tenant_id: &str, user_id: &str) -> Result<u64> {
        with_pool!(self, pool => {
            Ok(sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// Ends one account session; `false` when it did not exist.
    #[tracing::instrument(name = "db.delete_session", skip_all)]
    pub async fn delete_session(&self, tenant_id: &str, sid: &str) -> Result<bool> {
        with_pool!(self, c => delete(c.into(), tenant_id, sid).await)
    }
}

/// [`Store::set_browser_session_data`] on `conn`.
pub async fn set_data(conn: Conn<'_>, tenant_id: &str, id_hash: &str, data: &str) -> Result<bool> {
    let n = on_conn!(conn, c => {
        sqlx::query("UPDATE browser_sessions SET data = $3 WHERE tenant_id = $1 AND id_hash = $2")
            .bind(tenant_id)
            .bind(id_hash)
            .bind(data)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(n > 0)
}

/// [`Store::rotate_browser_session`] on `conn`: in a unit of work, the browser keeps its
/// old id unless the unit commits. [`Error::NotFound`](super::Error::NotFound) when the
/// old row is gone (ended meanwhile: it is not resurrected).
pub async fn rotate(conn: Conn<'_>, old: &BrowserRow, new_hash: &str, data: &str) -> Result<()> {
    on_conn!(conn, tx => {
        sqlx::query(
            "INSERT INTO browser_sessions (tenant_id, id_hash, data, ip, user_agent, \
             created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&old.tenant_id)
        .bind(new_hash)
        .bind(data)
        .bind(&old.ip)
        .bind(&old.user_agent)
        .bind(old.created_at)
        .bind(old.last_seen_at)
        .bind(old.expires_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sessions SET browser_id_hash = $3 WHERE tenant_id = $1 AND browser_id_hash = $2",
        )
        .bind(&old.tenant_id)
        .bind(&old.id_hash)
        .bind(new_hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE authorization_requests SET browser_id_hash = $3 \
             WHERE tenant_id = $1 AND browser_id_hash = $2",
        )
        .bind(&old.tenant_id)
        .bind(&old.id_hash)
        .bind(new_hash)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query("DELETE FROM browser_sessions WHERE tenant_id = $1 AND id_hash = $2")
            .bind(&old.tenant_id)
            .bind(&old.id_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            // Ended concurrently (logout in another tab): do not resurrect it.
            return Err(super::Error::NotFound);
        }
    });
    Ok(())
}

/// [`Store::insert_session`] on `conn` (a unit of work's, so the evictions and the new
/// row commit together, with whatever else the unit writes).
pub async fn insert(
    mut conn: Conn<'_>,
    s: &AccountSession,
    max_per_user: Option<u32>,
    max_per_browser: usize,
) -> Result<SignInOutcome> {
    let amr = serde_json::to_string(&s.amr).unwrap_or_else(|_| "[]".to_owned());
    on_conn!(conn.reborrow(), c => {
        sqlx::query(
            "DELETE FROM sessions WHERE tenant_id = $1 AND browser_id_hash = $2 AND user_id = $3",
        )
        .bind(&s.tenant_id)
        .bind(&s.browser_id_hash)
        .bind(&s.user_id)
        .execute(&mut *c)
        .await?;
        sqlx::query(
            "INSERT INTO sessions (tenant_id, sid, browser_id_hash, user_id, auth_time, amr, \
             acr, created_at, last_seen_at, idle_expires_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&s.tenant_id)
        .bind(&s.sid)
        .bind(&s.browser_id_hash)
        .bind(&s.user_id)
        .bind(s.auth_time)
        .bind(&amr)
        .bind(&s.acr)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.idle_expires_at)
        .bind(s.expires_at)
        .execute(c)
        .await?;
    });
    let mut out = SignInOutcome::default();
    if let Some(max) = max_per_user {
        let keep = usize::try_from(max).unwrap_or(usize::MAX);
        out.evicted = beyond_limit(conn.reborrow(), s, Limit::PerUser, keep).await?;
    }
    for victim in beyond_limit(conn.reborrow(), s, Limit::PerBrowser, max_per_browser).await? {
        if !out.evicted.contains(&victim) {
            out.evicted.push(victim);
        }
    }
    for (sid, _) in &out.evicted {
        delete(conn.reborrow(), &s.tenant_id, sid).await?;
    }
    Ok(out)
}

/// Which sessions a limit counts.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// The user's, in every browser.
    PerUser,
    /// The browser's, whoever they are.
    PerBrowser,
}

/// The sessions beyond `keep` that `limit` counts for `s` (newest first, `s` kept), as
/// `(sid, user_id)`: those to end.
async fn beyond_limit(
    conn: Conn<'_>,
    s: &AccountSession,
    limit: Limit,
    keep: usize,
) -> Result<Vec<(String, String)>> {
    let (sql, key) = match limit {
        Limit::PerUser => (
            "SELECT sid, user_id FROM sessions WHERE tenant_id = $1 AND user_id = $2 \
             ORDER BY created_at DESC, sid",
            &s.user_id,
        ),
        Limit::PerBrowser => (
            "SELECT sid, user_id FROM sessions WHERE tenant_id = $1 AND browser_id_hash = $2 \
             ORDER BY created_at DESC, sid",
            &s.browser_id_hash,
        ),
    };
    let rows: Vec<(String, String)> = on_conn!(conn, c => {
        sqlx::query_as(sql)
            .bind(&s.tenant_id)
            .bind(key)
            .fetch_all(c)
            .await?
    });
    Ok(rows
        .into_iter()
        .filter(|(sid, _)| *sid != s.sid)
        .skip(keep.saturating_sub(1))
        .collect())
}

/// [`Store::list_browser_accounts`] on `conn`.
pub async fn browser_accounts(
    conn: Conn<'_>,
    tenant_id: &str,
    browser_id_hash: &str,
) -> Result<Vec<AccountSession>> {
    let rows = on_conn!(conn, c => {
        sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM sessions WHERE tenant_id = $1 AND browser_id_hash = $2 \
             ORDER BY created_at DESC, sid"
        )))
        .bind(tenant_id)
        .bind(browser_id_hash)
        .fetch_all(c)
        .await?
    });
    Ok(rows.into_iter().map(AccountSession::from).collect())
}

/// Deletes a browser session on `conn`; its accounts go first (whatever the foreign keys
/// of the backend do).
pub async fn delete_browser(conn: Conn<'_>, tenant_id: &str, id_hash: &str) -> Result<()> {
    on_conn!(conn, c => {
        sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND browser_id_hash = $2")
            .bind(tenant_id)
            .bind(id_hash)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM browser_sessions WHERE tenant_id = $1 AND id_hash = $2")
            .bind(tenant_id)
            .bind(id_hash)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// [`Store::delete_session`] on `conn`.
pub async fn delete(conn: Conn<'_>, tenant_id: &str, sid: &str) -> Result<bool> {
    let n = on_conn!(conn, c => {
        sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND sid = $2")
            .bind(tenant_id)
            .bind(sid)
            .execute(c)
            .await?
            .rows_affected()
    });
    Ok(n > 0)
}
