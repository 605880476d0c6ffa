//! Authorization requests between `/authorize` (or `/par`) and the code. Stored by the
//! hash of their handle; a pushed request's handle is the tail of its `request_uri`.

use super::{Conn, Result, Store, on_conn, with_pool};
use crate::clock::UnixTime;

/// A request to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuthRequest {
    pub handle_hash: String,
    pub client_id: String,
    /// The validated request (`authorize::AuthRequest`) as JSON.
    pub params: String,
    pub pushed: bool,
    pub browser_id_hash: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredAuthRequest {
    pub handle_hash: String,
    pub client_id: String,
    pub params: String,
    pub pushed: bool,
    pub browser_id_hash: Option<String>,
    pub login_sid: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub consumed_at: Option<UnixTime>,
}

impl StoredAuthRequest {
    /// Still usable at `now`: not consumed and not expired.
    pub fn is_open(&self, now: UnixTime) -> bool {
        self.consumed_at.is_none() && self.expires_at > now
    }
}

impl Store {
    #[tracing::instrument(name = "db.insert_auth_request", skip_all)]
    pub async fn insert_auth_request(&self, tenant_id: &str, r: &NewAuthRequest) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO authorization_requests (tenant_id, id_hash, client_id, params, \
                 pushed, browser_id_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(tenant_id)
            .bind(&r.handle_hash)
            .bind(&r.client_id)
            .bind(&r.params)
            .bind(r.pushed)
            .bind(&r.browser_id_hash)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Uses up a pushed request (RFC 9126 §4: single use) and returns its parameters.
    /// `None` when it is unknown, expired, already used or pushed by another client —
    /// one atomic statement, so two pods cannot both use it.
    #[tracing::instrument(name = "db.take_pushed_request", skip_all)]
    pub async fn take_pushed_request(
        &self,
        tenant_id: &str,
        handle_hash: &str,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<String>> {
        let row: Option<(String,)> = with_pool!(self, pool => {
            sqlx::query_as(
                "UPDATE authorization_requests SET consumed_at = $4 \
                 WHERE tenant_id = $1 AND id_hash = $2 AND client_id = $3 AND pushed \
                 AND consumed_at IS NULL AND expires_at > $4 RETURNING params",
            )
            .bind(tenant_id)
            .bind(handle_hash)
            .bind(client_id)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|r| r.0))
    }

    #[tracing::instrument(name = "db.get_auth_request", skip_all)]
    pub async fn get_auth_request(
        &self,
        tenant_id: &str,
        handle_hash: &str,
    ) -> Result<Option<StoredAuthRequest>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id_hash AS handle_hash, client_id, params, pushed, browser_id_hash, \
                 login_sid, created_at, expires_at, consumed_at \
                 FROM authorization_requests WHERE tenant_id = $1 AND id_hash = $2",
            )
            .bind(tenant_id)
            .bind(handle_hash)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records the account that signed in (or was chosen) for an open request.
    #[tracing::instrument(name = "db.set_auth_request_login", skip_all)]
    pub async fn set_auth_request_login(
        &self,
        tenant_id: &str,
        handle_hash: &str,
        sid: &str,
        now: UnixTime,
    ) -> Result<bool> {
        with_pool!(self, c => set_login(c.into(), tenant_id, handle_hash, sid, now).await)
    }

    /// Marks a request used. `false` when it was already used or has expired: the
    /// caller must not issue a code then.
    #[tracing::instrument(name = "db.consume_auth_request", skip_all)]
    pub async fn consume_auth_request(
        &self,
        tenant_id: &str,
        handle_hash: &str,
        now: UnixTime,
    ) -> Result<bool> {
        with_pool!(self, c => consume(c.into(), tenant_id, handle_hash, now).await)
    }
}

/// [`Store::set_auth_request_login`] on `conn`.
pub async fn set_login(
    conn: Conn<'_>,
    tenant_id: &str,
    handle_hash: &str,
    sid: &str,
    now: UnixTime,
) -> Result<bool> {
    let n = on_conn!(conn, c => {
        sqlx::query(
            "UPDATE authorization_requests SET login_sid = $3 \
             WHERE tenant_id = $1 AND id_hash = $2 AND consumed_at IS NULL AND expires_at > $4",
        )
        .bind(tenant_id)
        .bind(handle_hash)
        .bind(sid)
        .bind(now)
        .execute(c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// [`Store::consume_auth_request`] on `conn` (in a unit of work: used up only if the
/// unit commits).
pub async fn consume(
    conn: Conn<'_>,
    tenant_id: &str,
    handle_hash: &str,
    now: UnixTime,
) -> Result<bool> {
    let n = on_conn!(conn, c => {
        sqlx::query(
            "UPDATE authorization_requests SET consumed_at = $3 \
             WHERE tenant_id = $1 AND id_hash = $2 AND consumed_at IS NULL AND expires_at > $3",
        )
        .bind(tenant_id)
        .bind(handle_hash)
        .bind(now)
        .execute(c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}
