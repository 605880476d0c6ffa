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
