//! One PostgreSQL database per test, on an admin server the caller names (see
//! `ephemeral_postgres.rs`): created on demand, dropped (best effort) with the value.
//! Shared by the authserver integration harness and the library's storage unit tests
//! (each includes this file with `#[path]`).

use sqlx::{Connection as _, Executor as _};

/// A database created for one test.
#[derive(Debug)]
pub struct Database {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl Database {
    /// `CREATE DATABASE {name}` on `admin_url` (the role needs CREATEDB).
    pub async fn create(admin_url: String, name: String) -> Self {
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the admin database {admin_url}: {e}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed (needs CREATEDB): {e}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("admin URL parses");
        url.set_path(&format!("/{name}"));
        Self {
            admin_url,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future: use a
        // thread with its own small runtime. `WITH (FORCE)` ends open connections; a
        // failure only leaves a stray database behind.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
    }
}
