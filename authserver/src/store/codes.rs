//! Issuing authorization codes: a code always starts a new grant (the record that ties
//! the code, its access tokens and its refresh-token family together, so they can be
//! revoked as one). Redeeming codes lives with the token endpoint (`store::grants`).

use super::{Conn, Result, Store, on_conn};
use crate::clock::UnixTime;

/// The authorization a user gave a client, as recorded when the code is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    pub tenant_id: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    /// The browser session (`sid`) the user authenticated in.
    pub sid: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: String,
    pub auth_time: UnixTime,
    /// RFC 8176 method references, e.g. `["pwd","otp","mfa"]`.
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub created_at: UnixTime,
    /// Absolute end of everything issued under the grant (refresh-token family).
    pub expires_at: UnixTime,
}

/// A code, stored by the hash of its value (`crypto::handle_hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCode {
    pub code_hash: String,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub dpop_jkt: Option<String>,
    pub expires_at: UnixTime,
}

impl Store {
    /// Records a grant and its code in one transaction.
    #[tracing::instrument(name = "db.insert_code", skip_all)]
    pub async fn insert_code(&self, grant: &NewGrant, code: &NewCode) -> Result<()> {
        let mut unit = self.begin().await?;
        insert(unit.conn(), grant, code).await?;
        unit.commit().await
    }
}

/// Records a grant and its code on `conn` (a unit of work's: both or neither).
pub async fn insert(conn: Conn<'_>, grant: &NewGrant, code: &NewCode) -> Result<()> {
    let amr = serde_json::to_string(&grant.amr).unwrap_or_else(|_| "[]".to_owned());
    on_conn!(conn, tx => {
        sqlx::query(
            "INSERT INTO grants (tenant_id, grant_id, client_id, user_id, sid, scope, \
             auth_time, amr, acr, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&grant.tenant_id)
        .bind(&grant.grant_id)
        .bind(&grant.client_id)
        .bind(&grant.user_id)
        .bind(&grant.sid)
        .bind(&grant.scope)
        .bind(grant.auth_time)
        .bind(&amr)
        .bind(&grant.acr)
        .bind(grant.created_at)
        .bind(grant.expires_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO authorization_codes (tenant_id, code_hash, grant_id, client_id, \
             redirect_uri, nonce, code_challenge, code_challenge_method, dpop_jkt, \
             created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&grant.tenant_id)
        .bind(&code.code_hash)
        .bind(&grant.grant_id)
        .bind(&grant.client_id)
        .bind(&code.redirect_uri)
        .bind(&code.nonce)
        .bind(&code.code_challenge)
        .bind(&code.code_challenge_method)
        .bind(&code.dpop_jkt)
        .bind(grant.created_at)
        .bind(code.expires_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    })
}
