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
}

#[derive(sqlx::FromRow)]
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

/// [`Store::find_refresh_grant`]'s row: the token's columns, its grant's and its user's
/// (`user_id` is the grant's and the user's: the join's column).
#[derive(sqlx::FromRow)]
struct RefreshGrantDbRow {
    dpop_jkt: Option<String>,
    token_expires_at: i64,
    rotated_at: Option<i64>,
    #[sqlx(flatten)]
    grant: GrantDbRow,
    #[sqlx(flatten)]
    user: super::users::UserRow,
}

/// Stores a refresh token: `tenant_id, token_hash, grant_id, dpop_jkt, created_at,
/// expires_at`.
const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (tenant_id, token_hash, grant_id, \
     dpop_jkt, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// Records an access token under its grant: `tenant_id, jti, grant_id, expires_at`.
const INSERT_ACCESS_RECORD: &str = "INSERT INTO grant_access_tokens (tenant_id, jti, grant_id, expires_at) VALUES ($1, $2, $3, $4)";

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

    /// A refresh token with its grant and the grant's user, in one statement (the
    /// refresh grant's read). A grant goes with its user (`ON DELETE CASCADE`), so a
    /// token whose user is gone is not found.
    #[tracing::instrument(name = "db.find_refresh_grant", skip_all)]
    pub async fn find_refresh_grant(
        &self,
        tenant_id: &str,
        token_hash: &str,
    ) -> Result<Option<(RefreshRow, GrantRow, StoredUser)>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, RefreshGrantDbRow>(
                "SELECT r.dpop_jkt, r.expires_at AS token_expires_at, r.rotated_at, \
                 g.grant_id, g.client_id, g.user_id, g.sid, g.scope, g.auth_time, g.amr, g.acr, \
                 g.expires_at, g.revoked_at, u.tenant_id, u.username, u.email, \
                 u.email_verified, u.profile, u.password_hash, u.created_at, u.updated_at \
                 FROM refresh_tokens r JOIN grants g \
                 ON g.tenant_id = r.tenant_id AND g.grant_id = r.grant_id \
                 JOIN users u ON u.tenant_id = g.tenant_id AND u.user_id = g.user_id \
                 WHERE r.tenant_id = $1 AND r.token_hash = $2",
            )
            .bind(tenant_id)
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        });
        row.map(|r| {
            let token = RefreshRow {
                grant_id: r.grant.grant_id.clone(),
                dpop_jkt: r.dpop_jkt,
                expires_at: r.token_expires_at,
                rotated_at: r.rotated_at,
            };
            Ok((token, r.grant.into(), super::users::decode(r.user)?))
        })
        .transpose()
    }

    /// Rotates a refresh token: marks `old_hash` rotated, stores its successor and
    /// records the access token issued with it (`access`: jti, expiry) — all or nothing.
    /// `false` (and nothing written) when `old_hash` was already rotated (a concurrent
    /// use of the same token, which is reuse) or its grant was revoked meanwhile.
    /// On PostgreSQL one statement (its own transaction, one round trip).
    #[tracing::instrument(name = "db.rotate_refresh_token", skip_all)]
    pub async fn rotate_refresh_token(
        &self,
        tenant_id: &str,
        old_hash: &str,
        new: &NewRefresh<'_>,
        access: (&str, UnixTime),
    ) -> Result<bool> {
        let (jti, access_expires_at) = access;
        match &self.pool {
            Pool::Postgres(_) => {
                let rotated: i64 = with_pool!(self, pool => {
                    sqlx::query_scalar(
                        "WITH rotated AS (UPDATE refresh_tokens r SET rotated_at = $3 \
                         FROM grants g WHERE r.tenant_id = $1 AND r.token_hash = $2 \
                         AND r.rotated_at IS NULL AND g.tenant_id = r.tenant_id \
                         AND g.grant_id = r.grant_id AND g.revoked_at IS NULL \
                         RETURNING r.grant_id), \
                         fresh AS (INSERT INTO refresh_tokens (tenant_id, token_hash, grant_id, \
                         dpop_jkt, created_at, expires_at) \
                         SELECT $1, $4, grant_id, $5, $3, $6 FROM rotated), \
                         issued AS (INSERT INTO grant_access_tokens (tenant_id, jti, grant_id, \
                         expires_at) SELECT $1, $7, grant_id, $8 FROM rotated) \
                         SELECT count(*) FROM rotated",
                    )
                    .bind(tenant_id)
                    .bind(old_hash)
                    .bind(new.created_at)
                    .bind(new.token_hash)
                    .bind(new.dpop_jkt)
                    .bind(new.expires_at)
                    .bind(jti)
                    .bind(access_expires_at)
                    .fetch_one(pool)
                    .await?
                });
                Ok(rotated == 1)
            }
            // SQLite has no writing CTEs: the same three writes in one transaction.
            Pool::Sqlite(_) => in_transaction!(self, tx => {
                let n = sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = $3 \
                     WHERE tenant_id = $1 AND token_hash = $2 AND rotated_at IS NULL \
                     AND EXISTS (SELECT 1 FROM grants g WHERE g.tenant_id = refresh_tokens.tenant_id \
                     AND g.grant_id = refresh_tokens.grant_id AND g.revoked_at IS NULL)",
                )
                .bind(tenant_id)
                .bind(old_hash)
                .bind(new.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    // Dropping the transaction rolls it back.
                    return Ok(false);
                }
                sqlx::query(
                    INSERT_REFRESH,
                )
                .bind(tenant_id)
                .bind(new.token_hash)
                .bind(new.grant_id)
                .bind(new.dpop_jkt)
                .bind(new.created_at)
                .bind(new.expires_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    INSERT_ACCESS_RECORD,
                )
                .bind(tenant_id)
                .bind(jti)
                .bind(new.grant_id)
                .bind(access_expires_at)
                .execute(&mut *tx)
                .await?;
                Ok(true)
            }),
        }
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
    use super::NewRefresh;
    use crate::store::codes::{NewCode, NewGrant};
    use crate::store::testing::{self, TestStore};

    /// A grant of `user_id` with its first refresh token `old`.
    async fn grant_with_refresh(db: &TestStore, user_id: &str) {
        let grant = NewGrant {
            tenant_id: "t".into(),
            grant_id: "g1".into(),
            client_id: "web".into(),
            user_id: user_id.into(),
            sid: None,
            scope: "openid offline_access".into(),
            auth_time: 1_000,
            amr: vec!["pwd".into()],
            acr: None,
            created_at: 1_000,
            expires_at: 100_000,
        };
        let code = NewCode {
            code_hash: "c1".into(),
            redirect_uri: "https://app.example/cb".into(),
            nonce: None,
            code_challenge: None,
            code_challenge_method: None,
            dpop_jkt: None,
            expires_at: 2_000,
        };
        db.store.insert_code(&grant, &code).await.expect("grant");
        db.store
            .insert_refresh_token("t", &refresh("old", 1_000))
            .await
            .expect("first refresh token");
    }

    fn refresh(hash: &str, at: i64) -> NewRefresh<'_> {
        NewRefresh {
            token_hash: hash,
            grant_id: "g1",
            dpop_jkt: None,
            created_at: at,
            expires_at: at + 3_600,
        }
    }

    #[tokio::test]
    async fn a_refresh_token_of_a_deleted_user_is_not_found() {
        for db in testing::both().await {
            let user = db.user("t", "alice").await;
            grant_with_refresh(&db, &user.user_id).await;
            let store = &db.store;
            assert!(store.delete_user("t", &user.user_id).await.expect("delete"));
            let found = store.find_refresh_grant("t", "old").await.expect("read");
            assert!(found.is_none(), "{}", db.name());
        }
    }

    #[tokio::test]
    async fn a_rotation_writes_all_three_rows_or_none() {
        for db in testing::both().await {
            let user = db.user("t", "alice").await;
            grant_with_refresh(&db, &user.user_id).await;
            let store = &db.store;
            let (row, grant, owner) = store
                .find_refresh_grant("t", "old")
                .await
                .expect("read")
                .expect("found");
            assert_eq!((row.grant_id.as_str(), row.rotated_at), ("g1", None));
            assert_eq!(grant.user_id, user.user_id, "{}", db.name());
            assert_eq!(
                (owner.user_id.as_str(), owner.username.as_str()),
                (user.user_id.as_str(), "alice"),
                "{}",
                db.name()
            );
            assert!(
                store
                    .rotate_refresh_token("t", "old", &refresh("new", 1_100), ("jti-1", 1_700))
                    .await
                    .expect("rotation")
            );
            assert_eq!(
                store.live_grant_of_jti("t", "jti-1").await.expect("read"),
                Some("g1".to_owned()),
                "{}",
                db.name()
            );
            let (old, _, _) = store
                .find_refresh_grant("t", "old")
                .await
                .expect("read")
                .expect("kept");
            assert_eq!(old.rotated_at, Some(1_100), "{}", db.name());
            // The same token again (a concurrent use): nothing is written.
            assert!(
                !store
                    .rotate_refresh_token("t", "old", &refresh("other", 1_200), ("jti-2", 1_800))
                    .await
                    .expect("no rotation")
            );
            assert!(
                store
                    .find_refresh_grant("t", "other")
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
                .rotate_refresh_token("t", "new", &refresh("newer", 1_300), ("jti-1", 1_900))
                .await;
            assert!(err.is_err(), "{}", db.name());
            let (new, _, _) = store
                .find_refresh_grant("t", "new")
                .await
                .expect("read")
                .expect("kept");
            assert_eq!(new.rotated_at, None, "{}", db.name());
            assert!(
                store
                    .find_refresh_grant("t", "newer")
                    .await
                    .expect("read")
                    .is_none()
            );
            // A revoked grant's token no longer rotates.
            store.revoke_grant("t", "g1", 1_400).await.expect("revoke");
            assert!(
                !store
                    .rotate_refresh_token("t", "new", &refresh("newest", 1_500), ("jti-3", 2_000))
                    .await
                    .expect("no rotation")
            );
            assert!(
                store
                    .find_refresh_grant("t", "newest")
                    .await
                    .expect("read")
                    .is_none()
            );
        }
    }
}
