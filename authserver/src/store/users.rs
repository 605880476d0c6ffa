//! User rows. Every query is scoped by tenant; usernames are looked up by their
//! case-folded form.

use serde_json::{Map, Value};

use super::{Error, Result, Store, in_transaction, with_pool};
use crate::clock::UnixTime;
use crate::domain::user::normalize_username;

/// A stored user. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq)]
pub struct StoredUser {
    pub tenant_id: String,
    pub user_id: String,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub profile: Map<String, Value>,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("tenant_id", &self.tenant_id)
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("email_verified", &self.email_verified)
            .field("profile", &self.profile)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[REDACTED]"),
            )
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    tenant_id: String,
    user_id: String,
    username: String,
    email: Option<String>,
    email_verified: bool,
    profile: String,
    password_hash: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// `SELECT <every column> FROM users <rest>`, as a literal (sqlx only runs static SQL).
macro_rules! select_users {
    ($rest:literal) => {
        concat!(
            "SELECT tenant_id, user_id, username, email, email_verified, profile, \
             password_hash, created_at, updated_at FROM users ",
            $rest
        )
    };
}

pub(super) fn decode(row: UserRow) -> Result<StoredUser> {
    let Ok(Value::Object(profile)) = serde_json::from_str::<Value>(&row.profile) else {
        return Err(Error::Corrupt(format!(
            "profile of user {:?} is not a JSON object",
            row.user_id
        )));
    };
    Ok(StoredUser {
        tenant_id: row.tenant_id,
        user_id: row.user_id,
        username: row.username,
        email: row.email,
        email_verified: row.email_verified,
        profile,
        password_hash: row.password_hash,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The entity tag of a user's editable facts (username, e-mail, its verification,
/// profile): what `If-Match` compares. The password hash is not part of it.
pub fn user_etag(user: &StoredUser) -> String {
    let text = serde_json::json!([user.username, user.email, user.email_verified, user.profile])
        .to_string();
    super::clients::etag(&text)
}

impl Store {
    /// Inserts a user; a taken username is `Conflict { constraint: "users_username_key" }`.
    #[tracing::instrument(name = "db.insert_user", skip_all)]
    pub async fn insert_user(&self, user: &StoredUser) -> Result<()> {
        let profile = Value::Object(user.profile.clone()).to_string();
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO users (tenant_id, user_id, username, username_normalized, email, \
                 email_verified, profile, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&user.tenant_id)
            .bind(&user.user_id)
            .bind(&user.username)
            .bind(normalize_username(&user.username))
            .bind(&user.email)
            .bind(user.email_verified)
            .bind(&profile)
            .bind(&user.password_hash)
            .bind(user.created_at)
            .bind(user.updated_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The user with this username (any case) in the tenant.
    #[tracing::instrument(name = "db.get_user_by_username", skip_all)]
    pub async fn get_user_by_username(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<Option<StoredUser>> {
        let sql = select_users!("WHERE tenant_id = $1 AND username_normalized = $2");
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, UserRow>(sql)
                .bind(tenant_id)
                .bind(normalize_username(username))
                .fetch_optional(pool)
                .await?
        });
        row.map(decode).transpose()
    }

    /// The user with this id in the tenant.
    #[tracing::instrument(name = "db.get_user", skip_all)]
    pub async fn get_user(&self, tenant_id: &str, user_id: &str) -> Result<Option<StoredUser>> {
        let sql = select_users!("WHERE tenant_id = $1 AND user_id = $2");
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, UserRow>(sql)
                .bind(tenant_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(decode).transpose()
    }

    /// The users whose e-mail address is `email` (any case), oldest first, at most
    /// `limit` (an address is not unique: an administrator may give two accounts one).
    #[tracing::instrument(name = "db.get_users_by_email", skip_all)]
    pub async fn get_users_by_email(
        &self,
        tenant_id: &str,
        email: &str,
        limit: i64,
    ) -> Result<Vec<StoredUser>> {
        let sql = select_users!(
            "WHERE tenant_id = $1 AND lower(email) = lower($2) ORDER BY created_at, user_id LIMIT $3"
        );
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, UserRow>(sql)
                .bind(tenant_id)
                .bind(email)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(decode).collect()
    }

    /// A tenant's users, ordered by case-folded username.
    #[tracing::instrument(name = "db.list_users", skip_all)]
    pub async fn list_users(&self, tenant_id: &str) -> Result<Vec<StoredUser>> {
        let sql = select_users!("WHERE tenant_id = $1 ORDER BY username_normalized");
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, UserRow>(sql)
                .bind(tenant_id)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(decode).collect()
    }

    /// Deletes a user. Returns whether it existed.
    #[tracing::instrument(name = "db.delete_user", skip_all)]
    pub async fn delete_user(&self, tenant_id: &str, user_id: &str) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        // The user's grants went with it (ON DELETE CASCADE), and their tokens with them.
        self.revoked();
        Ok(n > 0)
    }

    /// Replaces a user's password hash; `NotFound` if the user is gone.
    /// Sets a user's e-mail, its verification and profile, if the stored user still has
    /// the entity tag `if_match` ([`user_etag`]); [`Error::Stale`] otherwise,
    /// [`Error::NotFound`] when there is no such user. Checked in the write's transaction.
    #[tracing::instrument(name = "db.update_user_profile", skip_all)]
    pub async fn update_user_profile(
        &self,
        updated: &StoredUser,
        now: UnixTime,
        if_match: &str,
    ) -> Result<()> {
        let profile = Value::Object(updated.profile.clone()).to_string();
        in_transaction!(self, tx => {
            let row = sqlx::query_as::<_, UserRow>(select_users!(
                "WHERE tenant_id = $1 AND user_id = $2"
            ))
            .bind(&updated.tenant_id)
            .bind(&updated.user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let current = row.map(decode).transpose()?.ok_or(Error::NotFound)?;
            if user_etag(&current) != if_match && if_match != "*" {
                return Err(Error::Stale);
            }
            sqlx::query(
                "UPDATE users SET email = $3, email_verified = $4, profile = $5, updated_at = $6 \
                 WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(&updated.tenant_id)
            .bind(&updated.user_id)
            .bind(&updated.email)
            .bind(updated.email_verified)
            .bind(&profile)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    #[tracing::instrument(name = "db.set_user_password_hash", skip_all)]
    /// Sets the password hash and, in the same transaction, ends what `end` says (a
    /// reset must not leave an attacker's session or refresh token alive).
    pub async fn set_user_password_hash(
        &self,
        tenant_id: &str,
        user_id: &str,
        password_hash: &str,
        now: UnixTime,
        end: super::sessions::EndAccess<'_>,
    ) -> Result<super::sessions::AccessEnded> {
        let out = in_transaction!(self, tx => {
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
                return Err(Error::NotFound);
            }
            Ok(super::sessions::end_user_access!(tx, tenant_id, user_id, now, end))
        });
        // After the commit: see `Store::revoked`.
        self.revoked();
        out
    }

    /// Replaces the hash only if it is still `expected` (a transparent rehash must not
    /// overwrite a password that was changed meanwhile). Returns whether it replaced it.
    #[tracing::instrument(name = "db.replace_user_password_hash", skip_all)]
    pub async fn replace_user_password_hash(
        &self,
        tenant_id: &str,
        user_id: &str,
        expected: &str,
        password_hash: &str,
    ) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE users SET password_hash = $4 \
                 WHERE tenant_id = $1 AND user_id = $2 AND password_hash = $3",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(expected)
            .bind(password_hash)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }
}
