//! Redeeming what `codes` issued: authorization codes (single use), the grants they
//! start, the access tokens and refresh tokens issued under a grant, and revoking a
//! grant as a whole (code replay, refresh-token reuse, RFC 7009 revocation).

use super::users::StoredUser;
use super::{Pool, Result, Store, in_transaction, with_pool};
use crate::clock::UnixTime;

/// A stored authorization code (looked up by the hash of its value).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CodeRow {
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub dpop_jkt: Option<String>,
    pub expires_at: UnixTime,
    pub used_at: Option<UnixTime>,
}

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub sid: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: String,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

impl GrantRow {
    pub fn scopes(&self) -> Vec<String> {
        self.scope.split_whitespace().map(str::to_owned).collect()
    }

    /// Why nothing more may be issued under this grant at `now`: revoked, or past its
    /// absolute end.
    pub fn refusal(&self, now: UnixTime) -> Option<RefreshRefusal> {
        if self.revoked_at.is_some() {
            Some(RefreshRefusal::GrantRevoked)
        } else if self.expires_at <= now {
            Some(RefreshRefusal::GrantExpired)
        } else {
            None
        }
    }
}

#[derive(Clone, sqlx::FromRow)]
struct GrantDbRow {
    grant_id: String,
    client_id: String,
    user_id: String,
    sid: Option<String>,
    scope: String,
    auth_time: i64,
    amr: String,
    acr: Option<String>,
    expires_at: i64,
    revoked_at: Option<i64>,
}

impl From<GrantDbRow> for GrantRow {
    fn from(r: GrantDbRow) -> Self {
        GrantRow {
            amr: serde_json::from_str(&r.amr).unwrap_or_default(),
            grant_id: r.grant_id,
            client_id: r.client_id,
            user_id: r.user_id,
            sid: r.sid,
            scope: r.scope,
            auth_time: r.auth_time,
            acr: r.acr,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// [`Store::redeem_refresh_token`]'s row: the token's columns, its grant's and its
/// user's (`user_id` is the grant's and the user's: the join's column), and whether the
/// token was rotated (1) or not (0).
#[derive(sqlx::FromRow)]
struct RefreshGrantDbRow {
    dpop_jkt: Option<String>,
    token_expires_at: i64,
    rotated_at: Option<i64>,
    #[sqlx(flatten)]
    grant: GrantDbRow,
    #[sqlx(flatten)]
    user: super::users::UserRow,
    rotated: i64,
}

impl RefreshGrantDbRow {
    fn token_and_grant(&self) -> (RefreshRow, GrantRow) {
        let token = RefreshRow {
            grant_id: self.grant.grant_id.clone(),
            dpop_jkt: self.dpop_jkt.clone(),
            expires_at: self.token_expires_at,
            rotated_at: self.rotated_at,
        };
        (token, self.grant.clone().into())
    }
}

/// A request to redeem a refresh token: what it presents and what it would store.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRedemption<'a> {
    /// The hash of the presented token.
    pub token_hash: &'a str,
    /// The authenticated client.
    pub client_id: &'a str,
    pub now: UnixTime,
    /// The scopes asked for (RFC 6749 §6: a subset of the grant's); empty for all.
    pub scopes: &'a [String],
    /// The thumbprint of the request's DPoP proof key, if it sent one.
    pub proof_jkt: Option<&'a str>,
    /// The successor's hash and its sliding expiry (cut to the grant's end).
    pub successor_hash: &'a str,
    pub successor_expires_at: UnixTime,
    /// The access token issued with the successor: jti, expiry.
    pub access: (&'a str, UnixTime),
}

/// Why a refresh token may not be redeemed by a request, in the order they are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRefusal {
    /// Another client's token: as good as unknown to this one.
    OtherClient,
    /// Rotated before: presenting it again is reuse.
    Rotated,
    Expired,
    GrantRevoked,
    GrantExpired,
    /// A scope the grant does not hold was asked for.
    ScopeNotGranted(String),
    /// The token is bound to a DPoP key and the request sent no proof.
    ProofMissing,
    /// The token is bound to another DPoP key than the proof's.
    ProofMismatch,
}

impl RefreshRedemption<'_> {
    /// What stands against rotating `token` of `grant` for this request; `None` when
    /// nothing does. PostgreSQL evaluates the same conditions in the rotation's SQL
    /// (`Store::redeem_refresh_token`), so a token is rotated exactly when this is
    /// `None` for the rows the rotation saw.
    pub fn refusal(&self, token: &RefreshRow, grant: &GrantRow) -> Option<RefreshRefusal> {
        if grant.client_id != self.client_id {
            return Some(RefreshRefusal::OtherClient);
        }
        if token.rotated_at.is_some() {
            return Some(RefreshRefusal::Rotated);
        }
        if token.expires_at <= self.now {
            return Some(RefreshRefusal::Expired);
        }
        if let Some(dead) = grant.refusal(self.now) {
            return Some(dead);
        }
        let granted: Vec<&str> = grant.scope.split(' ').collect();
        if let Some(extra) = self.scopes.iter().find(|s| !granted.contains(&s.as_str())) {
            return Some(RefreshRefusal::ScopeNotGranted(extra.clone()));
        }
        match (&token.dpop_jkt, self.proof_jkt) {
            (Some(_), None) => Some(RefreshRefusal::ProofMissing),
            (Some(bound), Some(jkt)) if bound != jkt => Some(RefreshRefusal::ProofMismatch),
            _ => None,
        }
    }
}

/// A redeemed refresh token: its rows as they were before the rotation.
#[derive(Debug)]
pub struct Redeemed {
    pub token: RefreshRow,
    pub grant: GrantRow,
    pub user: StoredUser,
    /// Whether this request rotated it (and stored the successor and access record).
    pub rotated: bool,
}

/// Stores a refresh token: `tenant_id, token_hash, grant_id, dpop_jkt, created_at,
/// expires_at`.
const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (tenant_id, token_hash, grant_id, \
     dpop_jkt, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// Records an access token under its grant: `tenant_id, jti, grant_id, expires_at`.
const INSERT_ACCESS_RECORD: &str = "INSERT INTO grant_access_tokens (tenant_id, jti, grant_id, expires_at) VALUES ($1, $2, $3, $4)";

/// A refresh token with its grant and the grant's user, by tenant (`$1`) and token hash
/// (`$2`); a grant goes with its user (`ON DELETE CASCADE`).
macro_rules! select_refresh_grant {
    () => {
        "SELECT r.dpop_jkt, r.expires_at AS token_expires_at, r.rotated_at, g.grant_id, \
         g.client_id, g.user_id, g.sid, g.scope, g.auth_time, g.amr, g.acr, g.expires_at, \
         g.revoked_at, u.tenant_id, u.username, u.email, u.email_verified, u.profile, \
         u.password_hash, u.created_at, u.updated_at \
         FROM refresh_tokens r JOIN grants g \
         ON g.tenant_id = r.tenant_id AND g.grant_id = r.grant_id \
         JOIN users u ON u.tenant_id = g.tenant_id AND u.user_id = g.user_id \
         WHERE r.tenant_id = $1 AND r.token_hash = $2"
    };
}

/// [`Store::redeem_refresh_token`] on PostgreSQL. `cur` reads the rows as they were
/// before the statement; `rotated` marks the token rotated when nothing stands against
/// it — the conditions of [`RefreshRedemption::refusal`], in SQL — and the successor
/// and the access token's record follow from it. Parameters: tenant, token hash, now,
/// client, asked scopes (text[]), proof jkt, successor hash, successor's sliding
/// expiry, access jti, access expiry.
const REDEEM_REFRESH: &str = concat!(
    "WITH cur AS (",
    select_refresh_grant!(),
    "), rotated AS (UPDATE refresh_tokens r SET rotated_at = $3 \
     FROM grants g WHERE r.tenant_id = $1 AND r.token_hash = $2 \
     AND g.tenant_id = r.tenant_id AND g.grant_id = r.grant_id \
     AND g.client_id = $4 AND r.rotated_at IS NULL AND r.expires_at > $3 \
     AND g.revoked_at IS NULL AND g.expires_at > $3 \
     AND string_to_array(g.scope, ' ') @> $5::text[] \
     AND (r.dpop_jkt IS NULL OR r.dpop_jkt = $6) \
     RETURNING r.grant_id, r.dpop_jkt, g.expires_at AS grant_expires_at), \
     fresh AS (INSERT INTO refresh_tokens (tenant_id, token_hash, grant_id, dpop_jkt, \
     created_at, expires_at) \
     SELECT $1, $7, grant_id, dpop_jkt, $3, LEAST($8, grant_expires_at) FROM rotated), \
     issued AS (INSERT INTO grant_access_tokens (tenant_id, jti, grant_id, expires_at) \
     SELECT $1, $9, grant_id, $10 FROM rotated) \
     SELECT cur.*, (SELECT count(*) FROM rotated) AS rotated FROM cur"
);

/// [`Store::redeem_refresh_token`]'s read on SQLite (nothing rotated yet).
const READ_REFRESH: &str = concat!(
    "SELECT cur.*, 0 AS rotated FROM (",
    select_refresh_grant!(),
    ") cur"
);

/// A stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RefreshRow {
    pub grant_id: String,
    pub dpop_jkt: Option<String>,
    pub expires_at: UnixTime,
    pub rotated_at: Option<UnixTime>,
}

/// A refresh token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefresh<'a> {
    pub token_hash: &'a str,
    pub grant_id: &'a str,
    pub dpop_jkt: Option<&'a str>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// Revokes, inside the open transaction `$tx`, every live grant of `$tenant` whose
/// columns equal the values given (`"client_id" = id`, optionally a second pair): their
/// unexpired access tokens go on the denylist first (the UPDATE is what makes the grants
/// no longer live), then the grants are marked revoked, so their refresh tokens die
/// with them. Evaluates to the number of grants revoked. One statement pair for every
/// mass revocation (a client deleted, a consent withdrawn, a credential reset).
macro_rules! revoke_live_grants {
    ($tx:ident, $tenant:expr, $now:expr, $col:literal = $val:expr) => {
        $crate::store::grants::revoke_live_grants!(@run $tx, $tenant, $now,
            concat!(" AND g.", $col, " = $3"), concat!(" AND ", $col, " = $3"), $val, None::<&str>)
    };
    ($tx:ident, $tenant:expr, $now:expr, $col:literal = $val:expr, $col2:literal = $val2:expr) => {
        $crate::store::grants::revoke_live_grants!(@run $tx, $tenant, $now,
            concat!(" AND g.", $col, " = $3 AND g.", $col2, " = $4"),
            concat!(" AND ", $col, " = $3 AND ", $col2, " = $4"), $val, Some($val2))
    };
    (@run $tx:ident, $tenant:expr, $now:expr, $joined:expr, $plain:expr, $val:expr, $val2:expr) => {{
        let (tenant, now, val, val2): (&str, $crate::clock::UnixTime, &str, Option<&str>) =
            ($tenant, $now, $val, $val2);
        let mut deny = sqlx::query(concat!(
            "INSERT INTO revoked_tokens (tenant_id, jti, expires_at, revoked_at) \
             SELECT a.tenant_id, a.jti, a.expires_at, $2 FROM grant_access_tokens a \
             JOIN grants g ON g.tenant_id = a.tenant_id AND g.grant_id = a.grant_id \
             WHERE g.tenant_id = $1 AND g.revoked_at IS NULL AND a.expires_at > $2",
            $joined,
            " ON CONFLICT DO NOTHING"
        ))
        .bind(tenant)
        .bind(now)
        .bind(val);
        if let Some(v) = val2 {
            deny = deny.bind(v);
        }
        deny.execute(&mut *$tx).await?;
        let mut revoke = sqlx::query(concat!(
            "UPDATE grants SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL",
            $plain
        ))
        .bind(tenant)
        .bind(now)
        .bind(val);
        if let Some(v) = val2 {
            revoke = revoke.bind(v);
        }
        revoke.execute(&mut *$tx).await?.rows_affected()
    }};
}
pub(crate) use revoke_live_grants;

impl Store {
    #[tracing::instrument(name = "db.find_code", skip_all)]
    pub async fn find_code(&self, tenant_id: &str, code_hash: &str) -> Result<Option<CodeRow>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, CodeRow>(
                "SELECT grant_id, client_id, redirect_uri, nonce, code_challenge, \
                 code_challenge_method, dpop_jkt, expires_at, used_at \
                 FROM authorization_codes WHERE tenant_id = $1 AND code_hash = $2",
            )
            .bind(tenant_id)
            .bind(code_hash)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Marks a code used. `false` when it already was: of two concurrent redemptions
    /// exactly one wins (the row update is atomic on both backends).
    #[tracing::instrument(name = "db.use_code", skip_all)]
    pub async fn use_code(&self, tenant_id: &str, code_hash: &str, now: UnixTime) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE authorization_codes SET used_at = $3 \
                 WHERE tenant_id = $1 AND code_hash = $2 AND used_at IS NULL",
            )
            .bind(tenant_id)
            .bind(code_hash)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    #[tracing::instrument(name = "db.get_grant", skip_all)]
    pub async fn get_grant(&self, tenant_id: &str, grant_id: &str) -> Result<Option<GrantRow>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, GrantDbRow>(
                "SELECT grant_id, client_id, user_id, sid, scope, auth_time, amr, acr, \
                 expires_at, revoked_at FROM grants WHERE tenant_id = $1 AND grant_id = $2",
            )
            .bind(tenant_id)
            .bind(grant_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(GrantRow::from))
    }

    /// The grant an access token (`jti`) was issued under, if any.
    #[tracing::instrument(name = "db.grant_of_jti", skip_all)]
    pub async fn grant_of_jti(&self, tenant_id: &str, jti: &str) -> Result<Option<String>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT grant_id FROM grant_access_tokens WHERE tenant_id = $1 AND jti = $2",
            )
            .bind(tenant_id)
            .bind(jti)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The grant of an access token (`jti`) if it is recorded and not revoked: `None`
    /// for tokens of a revoked or deleted grant and for tokens of no grant. The join
    /// also covers a token recorded after its grant was revoked (a code replayed while
    /// the first redemption was still issuing), which the denylist alone would miss.
    #[tracing::instrument(name = "db.live_grant_of_jti", skip_all)]
    pub async fn live_grant_of_jti(&self, tenant_id: &str, jti: &str) -> Result<Option<String>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT g.grant_id FROM grant_access_tokens a JOIN grants g \
                 ON g.tenant_id = a.tenant_id AND g.grant_id = a.grant_id \
                 WHERE a.tenant_id = $1 AND a.jti = $2 AND g.revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(jti)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records an access token issued under a grant, so revoking the grant reaches it.
    #[tracing::instrument(name = "db.record_grant_access_token", skip_all)]
    pub async fn record_grant_access_token(
        &self,
        tenant_id: &str,
        jti: &str,
        grant_id: &str,
        expires_at: UnixTime,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                INSERT_ACCESS_RECORD,
            )
            .bind(tenant_id)
            .bind(jti)
            .bind(grant_id)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Revokes a grant and everything issued under it, in one transaction: the grant is
    /// marked revoked (its refresh tokens die with it) and every access token recorded
    /// for it goes on the denylist until it expires. Idempotent.
    #[tracing::instrument(name = "db.revoke_grant", skip_all)]
    pub async fn revoke_grant(&self, tenant_id: &str, grant_id: &str, now: UnixTime) -> Result<()> {
        let out = in_transaction!(self, tx => {
            sqlx::query(
                "UPDATE grants SET revoked_at = $3 \
                 WHERE tenant_id = $1 AND grant_id = $2 AND revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(grant_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO revoked_tokens (tenant_id, jti, expires_at, revoked_at) \
                 SELECT tenant_id, jti, expires_at, $3 FROM grant_access_tokens \
                 WHERE tenant_id = $1 AND grant_id = $2 ON CONFLICT DO NOTHING",
            )
            .bind(tenant_id)
            .bind(grant_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(())
        });
        // After the commit: see `Store::revoked`.
        self.revoked();
        out
    }

    #[tracing::instrument(name = "db.insert_refresh_token", skip_all)]
    pub async fn insert_refresh_token(&self, tenant_id: &str, new: &NewRefresh<'_>) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                INSERT_REFRESH,
            )
            .bind(tenant_id)
            .bind(new.token_hash)
            .bind(new.grant_id)
            .bind(new.dpop_jkt)
            .bind(new.created_at)
            .bind(new.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    #[tracing::instrument(name = "db.find_refresh_token", skip_all)]
    pub async fn find_refresh_token(
        &self,
        tenant_id: &str,
        token_hash: &str,
    ) -> Result<Option<RefreshRow>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, RefreshRow>(
                "SELECT grant_id, dpop_jkt, expires_at, rotated_at FROM refresh_tokens \
                 WHERE tenant_id = $1 AND token_hash = $2",
            )
            .bind(tenant_id)
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Redeems a refresh token (RFC 6749 §6): reads the token, its grant and the grant's
    /// user, and — when [`RefreshRedemption::refusal`] has nothing against them — marks
    /// the token rotated, stores its successor and records the access token issued with
    /// it. All in one statement on PostgreSQL (one round trip, its own transaction);
    /// one transaction on SQLite. `None` when the token is unknown (or its user gone:
    /// a grant goes with its user). The rows are returned as they were before the
    /// rotation, with `rotated` false when nothing was written: refused, or the token
    /// was rotated or its grant revoked by a concurrent request (which is reuse).
    #[tracing::instrument(name = "db.redeem_refresh_token", skip_all)]
    pub async fn redeem_refresh_token(
        &self,
        tenant_id: &str,
        r: &RefreshRedemption<'_>,
    ) -> Result<Option<Redeemed>> {
        let (jti, access_expires_at) = r.access;
        let row = match &self.pool {
            // The UPDATE's conditions are `RefreshRedemption::refusal`'s, in SQL; the
            // CTE `cur` reads the rows as they were before it.
            Pool::Postgres(pool) => {
                // `with_pool!` less its SQLite arm: SQLite cannot bind a text array.
                let (mut conn, turn) = self.pg_connection(pool).await?;
                let row = sqlx::query_as::<_, RefreshGrantDbRow>(REDEEM_REFRESH)
                    .bind(tenant_id)
                    .bind(r.token_hash)
                    .bind(r.now)
                    .bind(r.client_id)
                    .bind(r.scopes)
                    .bind(r.proof_jkt)
                    .bind(r.successor_hash)
                    .bind(r.successor_expires_at)
                    .bind(jti)
                    .bind(access_expires_at)
                    .fetch_optional(&mut *conn)
                    .await?;
                self.keep_warm(conn);
                drop(turn);
                row
            }
            // SQLite has no writing CTEs: the same read and writes in one transaction,
            // the conditions checked by `refusal` itself.
            Pool::Sqlite(_) => in_transaction!(self, tx => {
                let Some(mut row) = sqlx::query_as::<_, RefreshGrantDbRow>(READ_REFRESH)
                .bind(tenant_id)
                .bind(r.token_hash)
                .fetch_optional(&mut *tx)
                .await?
                else {
                    return Ok(None);
                };
                let (token, grant) = row.token_and_grant();
                if r.refusal(&token, &grant).is_none() {
                    sqlx::query(
                        "UPDATE refresh_tokens SET rotated_at = $3 \
                         WHERE tenant_id = $1 AND token_hash = $2",
                    )
                    .bind(tenant_id)
                    .bind(r.token_hash)
                    .bind(r.now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(INSERT_REFRESH)
                        .bind(tenant_id)
                        .bind(r.successor_hash)
                        .bind(&grant.grant_id)
                        .bind(token.dpop_jkt.as_deref())
                        .bind(r.now)
                        .bind(r.successor_expires_at.min(grant.expires_at))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(INSERT_ACCESS_RECORD)
                        .bind(tenant_id)
                        .bind(jti)
                        .bind(&grant.grant_id)
                        .bind(access_expires_at)
                        .execute(&mut *tx)
                        .await?;
                    row.rotated = 1;
                }
                Some(row)
            }),
        };
        row.map(|r| {
            let (token, grant) = r.token_and_grant();
            Ok(Redeemed {
                token,
                grant,
                user: super::users::decode(r.user)?,
                rotated: r.rotated == 1,
            })
        })
        .transpose()
    }

    /// Reads a per-tenant secret: `(sealed, kek_id)`.
    #[tracing::instrument(name = "db.get_tenant_secret", skip_all)]
    pub async fn get_tenant_secret(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> Result<Option<(String, String)>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, (String, String)>(
                "SELECT sealed, kek_id FROM tenant_secrets WHERE tenant_id = $1 AND name = $2",
            )
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Every per-tenant secret as `(tenant_id, name, sealed, kek_id)`.
    #[tracing::instrument(name = "db.list_tenant_secrets", skip_all)]
    pub async fn list_tenant_secrets(&self) -> Result<Vec<(String, String, String, String)>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, (String, String, String, String)>(
                "SELECT tenant_id, name, sealed, kek_id FROM tenant_secrets",
            )
            .fetch_all(pool)
            .await?
        }))
    }

    /// Replaces sealed tenant secrets `(tenant_id, name, sealed, kek_id)` in one
    /// transaction (re-encryption under a new `ENCRYPTION_KEY`).
    #[tracing::instrument(name = "db.reseal_tenant_secrets", skip_all)]
    pub async fn reseal_tenant_secrets(
        &self,
        updates: &[(String, String, String, String)],
    ) -> Result<()> {
        in_transaction!(self, tx => {
            for (tenant_id, name, sealed, kek_id) in updates {
                sqlx::query(
                    "UPDATE tenant_secrets SET sealed = $3, kek_id = $4 \
                     WHERE tenant_id = $1 AND name = $2",
                )
                .bind(tenant_id)
                .bind(name)
                .bind(sealed)
                .bind(kek_id)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
    }

    /// Stores a per-tenant secret unless one already exists (the first writer wins;
    /// read it back with [`Store::get_tenant_secret`]).
    #[tracing::instrument(name = "db.insert_tenant_secret", skip_all)]
    pub async fn insert_tenant_secret(
        &self,
        tenant_id: &str,
        name: &str,
        sealed: &str,
        kek_id: &str,
        now: UnixTime,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO tenant_secrets (tenant_id, name, sealed, kek_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(tenant_id)
            .bind(name)
            .bind(sealed)
            .bind(kek_id)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{NewRefresh, RefreshRedemption, RefreshRefusal};
    use crate::store::testing::{self, TestStore};

    /// A grant of `user_id` with its first refresh token `old` (1 000 to 4 600; the grant
    /// ends at 100 000).
    async fn grant_with_refresh(db: &TestStore, user_id: &str) {
        testing::plant_grant(&db.store, "t", user_id, 1_000, 100_000, "old").await;
    }

    /// A redemption of `hash` by the grant's client at `now`, asking for nothing more:
    /// successor `next`, access token `jti`.
    fn redeem<'a>(hash: &'a str, now: i64, next: &'a str, jti: &'a str) -> RefreshRedemption<'a> {
        RefreshRedemption {
            token_hash: hash,
            client_id: "web",
            now,
            scopes: &[],
            proof_jkt: None,
            successor_hash: next,
            successor_expires_at: now + 3_600,
            access: (jti, now + 600),
        }
    }

    #[tokio::test]
    async fn a_refresh_token_of_a_deleted_user_is_not_found() {
        for db in testing::both().await {
            let user = db.user("t", "alice").await;
            grant_with_refresh(&db, &user.user_id).await;
            let store = &db.store;
            assert!(store.delete_user("t", &user.user_id).await.expect("delete"));
            let found = store
                .redeem_refresh_token("t", &redeem("old", 1_100, "new", "jti-1"))
                .await
                .expect("read");
            assert!(found.is_none(), "{}", db.name());
            assert!(
                store
                    .find_refresh_token("t", "new")
                    .await
                    .expect("read")
                    .is_none()
            );
        }
    }

    #[tokio::test]
    async fn a_redemption_writes_all_three_rows_or_none() {
        for db in testing::both().await {
            let user = db.user("t", "alice").await;
            grant_with_refresh(&db, &user.user_id).await;
            let store = &db.store;
            let mut first = redeem("old", 1_100, "new", "jti-1");
            // Past the grant's end (100 000): the successor's expiry is cut to it.
            first.successor_expires_at = 250_000;
            let r = store
                .redeem_refresh_token("t", &first)
                .await
                .expect("redeem")
                .expect("found");
            assert!(r.rotated, "{}", db.name());
            // The rows as they were before the rotation.
            assert_eq!(
                (r.token.grant_id.as_str(), r.token.rotated_at),
                ("g1", None)
            );
            assert_eq!(r.grant.user_id, user.user_id, "{}", db.name());
            assert_eq!(
                (r.user.user_id.as_str(), r.user.username.as_str()),
                (user.user_id.as_str(), "alice"),
                "{}",
                db.name()
            );
            assert_eq!(
                store.live_grant_of_jti("t", "jti-1").await.expect("read"),
                Some("g1".to_owned()),
                "{}",
                db.name()
            );
            let old = store.find_refresh_token("t", "old").await.expect("read");
            assert_eq!(old.expect("kept").rotated_at, Some(1_100), "{}", db.name());
            let new = store.find_refresh_token("t", "new").await.expect("read");
            let new = new.expect("successor");
            assert_eq!((new.grant_id.as_str(), new.expires_at), ("g1", 100_000));
            // The same token again (reuse, or a concurrent use): found, nothing written.
            let again = store
                .redeem_refresh_token("t", &redeem("old", 1_200, "other", "jti-2"))
                .await
                .expect("redeem")
                .expect("found");
            assert!(!again.rotated, "{}", db.name());
            assert_eq!(again.token.rotated_at, Some(1_100), "{}", db.name());
            assert!(
                store
                    .find_refresh_token("t", "other")
                    .await
                    .expect("read")
                    .is_none()
            );
            assert!(
                store
                    .live_grant_of_jti("t", "jti-2")
                    .await
                    .expect("read")
                    .is_none()
            );
            // A write that fails halfway (the access token's jti is taken) leaves the
            // token unrotated and no successor behind.
            let err = store
                .redeem_refresh_token("t", &redeem("new", 1_300, "newer", "jti-1"))
                .await;
            assert!(err.is_err(), "{}", db.name());
            let new = store.find_refresh_token("t", "new").await.expect("read");
            assert_eq!(new.expect("kept").rotated_at, None, "{}", db.name());
            assert!(
                store
                    .find_refresh_token("t", "newer")
                    .await
                    .expect("read")
                    .is_none()
            );
            // A revoked grant's token no longer rotates.
            store.revoke_grant("t", "g1", 1_400).await.expect("revoke");
            let revoked = store
                .redeem_refresh_token("t", &redeem("new", 1_500, "newest", "jti-3"))
                .await
                .expect("redeem")
                .expect("found");
            assert!(!revoked.rotated, "{}", db.name());
            assert!(
                store
                    .find_refresh_token("t", "newest")
                    .await
                    .expect("read")
                    .is_none()
            );
        }
    }

    /// [`grant_with_refresh`] and a second token of the grant, "bound": bound to DPoP key
    /// `jkt-1` and living past the grant's end (100 000).
    async fn with_bound_token(db: &TestStore) {
        let user = db.user("t", "alice").await;
        grant_with_refresh(db, &user.user_id).await;
        let bound = NewRefresh {
            token_hash: "bound",
            grant_id: "g1",
            dpop_jkt: Some("jkt-1"),
            created_at: 1_000,
            expires_at: 200_000,
        };
        db.store
            .insert_refresh_token("t", &bound)
            .await
            .expect("bound");
    }

    /// PostgreSQL decides in SQL and SQLite by `RefreshRedemption::refusal`: for every
    /// refusal, both leave the token as it was and write nothing, and the refusal read
    /// back from the returned rows names the reason.
    #[tokio::test]
    async fn every_refusal_leaves_the_token_unrotated_and_the_sql_agrees_with_the_rust() {
        let mut checked = 0;
        for db in testing::both().await {
            with_bound_token(&db).await;
            let store = &db.store;
            let email = ["email".to_owned()];
            let cases: Vec<(&str, RefreshRedemption<'_>, RefreshRefusal)> = vec![
                (
                    "another client",
                    RefreshRedemption {
                        client_id: "other",
                        ..redeem("old", 1_100, "n1", "j1")
                    },
                    RefreshRefusal::OtherClient,
                ),
                (
                    "expired token",
                    redeem("old", 4_600, "n2", "j2"),
                    RefreshRefusal::Expired,
                ),
                (
                    "expired grant",
                    RefreshRedemption {
                        proof_jkt: Some("jkt-1"),
                        ..redeem("bound", 150_000, "n3", "j3")
                    },
                    RefreshRefusal::GrantExpired,
                ),
                (
                    "a scope never granted",
                    RefreshRedemption {
                        scopes: &email,
                        ..redeem("old", 1_100, "n4", "j4")
                    },
                    RefreshRefusal::ScopeNotGranted("email".into()),
                ),
                (
                    "no proof for a bound token",
                    redeem("bound", 1_100, "n5", "j5"),
                    RefreshRefusal::ProofMissing,
                ),
                (
                    "another key's proof",
                    RefreshRedemption {
                        proof_jkt: Some("jkt-2"),
                        ..redeem("bound", 1_100, "n6", "j6")
                    },
                    RefreshRefusal::ProofMismatch,
                ),
            ];
            for (what, r, expected) in &cases {
                let got = store
                    .redeem_refresh_token("t", r)
                    .await
                    .expect("redeem")
                    .expect("found");
                assert!(!got.rotated, "{what} on {}", db.name());
                assert_eq!(
                    r.refusal(&got.token, &got.grant).as_ref(),
                    Some(expected),
                    "{what}"
                );
                assert_eq!(got.token.rotated_at, None, "{what} on {}", db.name());
                assert!(
                    store
                        .find_refresh_token("t", r.successor_hash)
                        .await
                        .expect("read")
                        .is_none(),
                    "{what} on {}",
                    db.name()
                );
                assert!(
                    store
                        .live_grant_of_jti("t", r.access.0)
                        .await
                        .expect("read")
                        .is_none()
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 12, "six refusals on each backend");
    }

    /// The near misses of the refusals above rotate: a scope the grant holds, the proof
    /// of the key the token is bound to.
    #[tokio::test]
    async fn a_granted_scope_and_the_bound_keys_proof_rotate() {
        for db in testing::both().await {
            with_bound_token(&db).await;
            let store = &db.store;
            let openid = ["openid".to_owned()];
            let narrowed = RefreshRedemption {
                scopes: &openid,
                ..redeem("old", 1_100, "n7", "j7")
            };
            let proven = RefreshRedemption {
                proof_jkt: Some("jkt-1"),
                ..redeem("bound", 1_100, "n8", "j8")
            };
            for r in [narrowed, proven] {
                let got = store
                    .redeem_refresh_token("t", &r)
                    .await
                    .expect("redeem")
                    .expect("found");
                assert_eq!(r.refusal(&got.token, &got.grant), None, "{}", db.name());
                assert!(got.rotated, "{}", db.name());
                assert!(
                    store
                        .find_refresh_token("t", r.successor_hash)
                        .await
                        .expect("read")
                        .is_some()
                );
            }
        }
    }
}
