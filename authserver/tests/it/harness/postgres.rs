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

use super::random_hex;

#[path = "../../../../testing/ephemeral_postgres.rs"]
mod ephemeral;

#[path = "../../../../testing/database.rs"]
mod database;

pub use database::Database;

impl Database {
    /// A fresh database for one test on the admin server.
    pub async fn for_test() -> Self {
        Self::create(admin_url(), format!("gh_{}", random_hex(8))).await
    }
}

/// The admin connection URL: `DATABASE_URL`, or the ephemeral cluster's.
pub fn admin_url() -> String {
    ephemeral::admin_url().unwrap_or_else(|e| panic!("{e}"))
}
