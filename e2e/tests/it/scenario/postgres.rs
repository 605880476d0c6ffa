//! PostgreSQL for the local scenario: a fresh database per run, through `psql` (the e2e
//! crate links no database driver).
//!
//! With `DATABASE_URL` set (as `.ci/run` exports it), it is the admin connection: each
//! run executes `CREATE DATABASE gh_e2e_<random>` there (the role needs CREATEDB) and drops
//! it at the end. Without it, one ephemeral cluster is started for the test process, as
//! the authserver integration harness (`authserver/tests/it/harness/postgres.rs`) does:
//! `initdb` + `pg_ctl` from the PATH or `/usr/lib/postgresql/*/bin`, in a temp dir, on a
//! free loopback port, trust auth, durability off; as root both run as the `postgres`
//! system user (`initdb` refuses root). A watchdog (`tail --pid` on this process, in its
//! own process group) stops the cluster and deletes its directory once the test process
//! is gone, however it ended.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use super::local::random_hex;

#[path = "../../../../testing/ephemeral_postgres.rs"]
mod ephemeral;

/// A database created for one run; dropped (best effort) with this value.
pub struct Database {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl Database {
    pub fn create() -> anyhow::Result<Self> {
        let admin_url = admin_url()?;
        let name = format!("gh_e2e_{}", random_hex(6));
        psql(&admin_url, &format!("CREATE DATABASE {name}"))
            .with_context(|| format!("CREATE DATABASE on {admin_url} failed (needs CREATEDB)"))?;
        let mut url = url::Url::parse(&admin_url).context("DATABASE_URL is not a URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    /// Runs `sql` in this database and returns psql's unaligned, tuples-only output.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        psql(&self.url, sql)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// `psql -Atq -c sql` on `url`, returning stdout trimmed.
fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new(psql_program())
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql (install the PostgreSQL client)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `psql` from the PATH, else from the PostgreSQL bin directory.
fn psql_program() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("psql").is_file()));
    if on_path {
        return PathBuf::from("psql");
    }
    pg_bin_dir().map_or_else(|_| PathBuf::from("psql"), |d| d.join("psql"))
}

/// The admin connection URL: `DATABASE_URL`, or the ephemeral cluster's.
fn admin_url() -> anyhow::Result<String> {
    ephemeral::admin_url().map_err(|e| anyhow::anyhow!(e))
}

fn pg_bin_dir() -> Result<PathBuf, String> {
    ephemeral::pg_bin_dir()
}
