//! Test support for storage-backed unit tests: a freshly migrated [`Store`] on SQLite (a
//! temp file) and on PostgreSQL (a new database on `DATABASE_URL`'s server, or on the
//! ephemeral cluster the test kit starts: `testkit::postgres`), each dropped with its
//! guard.
//! Tests loop over [`both`] so every case runs on both backends.

use secrecy::SecretString;

use super::Store;
use crate::config::DatabaseSettings;
use crate::domain::tenant::TenantSpec;
use crate::store::users::StoredUser;

use testkit::postgres::Database;

/// A migrated store and what must live as long as it.
pub struct TestStore {
    pub store: Store,
    // Held for its Drop: the temp dir or database goes when the store does.
    _guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] Database),
}

fn settings(url: String) -> DatabaseSettings {
    DatabaseSettings {
        url: SecretString::from(url),
        max_connections: 4,
        connect_timeout_seconds: 5,
        startup_timeout_seconds: 10,
        acquire_timeout_ms: crate::config::DEFAULT_ACQUIRE_TIMEOUT_MS,
    }
}

/// A migrated SQLite store in a temp directory.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&settings(url))
        .await
        .expect("sqlite connects");
    store.migrate().await.expect("sqlite migrates");
    TestStore {
        store,
        _guard: Guard::Sqlite(dir),
    }
}

/// A migrated PostgreSQL store in a database of its own.
pub async fn postgres() -> TestStore {
    let db = Database::create("gh_unit").await;
    let store = Store::connect(&settings(db.url().to_owned()))
        .await
        .expect("postgres connects");
    store.migrate().await.expect("postgres migrates");
    TestStore {
        store,
        _guard: Guard::Postgres(db),
    }
}

/// One store per backend: SQLite first, then PostgreSQL.
pub async fn both() -> Vec<TestStore> {
    vec![sqlite().await, postgres().await]
}

impl TestStore {
    /// Creates tenant `tenant_id` (if needed) and a user in it.
    pub async fn user(&self, tenant_id: &str, username: &str) -> StoredUser {
        self.store
            .upsert_tenant(
                &TenantSpec {
                    id: tenant_id.to_owned(),
                    issuer: format!("https://id.example.com/{tenant_id}"),
                    display_name: format!("Tenant {tenant_id}"),
                },
                1_000,
            )
            .await
            .expect("tenant");
        let user = StoredUser {
            tenant_id: tenant_id.to_owned(),
            user_id: format!("id-{username}"),
            username: username.to_owned(),
            email: None,
            email_verified: false,
            profile: serde_json::Map::new(),
            password_hash: None,
            created_at: 1_000,
            updated_at: 1_000,
        };
        self.store.insert_user(&user).await.expect("user");
        user
    }

    /// Which backend, for assertion messages.
    pub fn name(&self) -> &'static str {
        self.store.backend().as_str()
    }
}

/// Plants grant `g1` of `user_id` in `tenant_id` for client `web` ("openid
/// offline_access", authenticated at `at`, ending at `grant_end`) with its code `c1`, and
/// its first refresh token, hashed `refresh_hash`, living an hour from `at`.
pub async fn plant_grant(
    store: &Store,
    tenant_id: &str,
    user_id: &str,
    at: i64,
    grant_end: i64,
    refresh_hash: &str,
) {
    use super::codes::{NewCode, NewGrant};
    use super::grants::NewRefresh;
    let grant = NewGrant {
        tenant_id: tenant_id.into(),
        grant_id: "g1".into(),
        client_id: "web".into(),
        user_id: user_id.into(),
        sid: None,
        scope: "openid offline_access".into(),
        auth_time: at,
        amr: vec!["pwd".into()],
        acr: None,
        created_at: at,
        expires_at: grant_end,
    };
    let code = NewCode {
        code_hash: "c1".into(),
        redirect_uri: "https://app.example/cb".into(),
        nonce: None,
        code_challenge: None,
        code_challenge_method: None,
        dpop_jkt: None,
        expires_at: at + 60,
    };
    store.insert_code(&grant, &code).await.expect("grant");
    let refresh = NewRefresh {
        token_hash: refresh_hash,
        grant_id: "g1",
        dpop_jkt: None,
        created_at: at,
        expires_at: at + 3_600,
    };
    store
        .insert_refresh_token(tenant_id, &refresh)
        .await
        .expect("first refresh token");
}
