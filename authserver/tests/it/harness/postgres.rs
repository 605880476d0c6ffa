//! PostgreSQL for tests: a fresh database per test.
//!
//! With `DATABASE_URL` set, it is the admin connection: each test runs
//! `CREATE DATABASE gh_<random>` there (the role needs CREATEDB) and drops it at the end.
//! Without it, the first test that needs PostgreSQL starts one ephemeral cluster for the
//! whole test process: `initdb` + `pg_ctl` from the PATH or `/usr/lib/postgresql/*/bin`,
//! in a temp dir, on a free loopback port, trust auth, durability off. `initdb` refuses to
//! run as root, so as root both run as the `postgres` system user (`runuser`). A watchdog
//! (`tail --pid` on this process, in its own process group so Ctrl-C does not reach it)
//! stops the cluster with `pg_ctl stop -m immediate` and deletes its directory once the
//! test process is gone, however it ended.

use sqlx::{Connection as _, Executor as _};

use super::random_hex;

#[path = "../../../../testing/ephemeral_postgres.rs"]
mod ephemeral;

/// A database created for one test; dropped (best effort) when this is dropped.
#[derive(Debug)]
pub struct Database {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl Database {
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = format!("gh_{}", random_hex(8));
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
        // thread with its own small runtime. Failures only leave a stray database.
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

/// The admin connection URL: `DATABASE_URL`, or the ephemeral cluster's.
pub fn admin_url() -> String {
    ephemeral::admin_url().unwrap_or_else(|e| panic!("{e}"))
}
