//! PostgreSQL for tests: the admin connection and one database per test.
//!
//! [`admin_url`] is `DATABASE_URL` when set; otherwise the first call starts one cluster
//! for the whole test process: `initdb` + `pg_ctl` from the PATH or
//! `/usr/lib/postgresql/*/bin`, in a temp dir, on a free loopback port, trust auth,
//! durability off. `initdb` refuses to run as root, so as root both run as the
//! `postgres` system user (`runuser`). A watchdog (`tail --pid` on this process, in its
//! own process group so Ctrl-C does not reach it) stops the cluster with
//! `pg_ctl stop -m immediate` and deletes its directory once the test process is gone,
//! however it ended.
//!
//! [`Database::create`] runs `CREATE DATABASE <prefix>_<random>` on the admin server (the
//! role needs CREATEDB); the database is dropped (best effort) with the value.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sqlx::{Connection as _, Executor as _};

/// The admin connection URL: `DATABASE_URL`, or the ephemeral cluster's.
pub fn admin_url() -> Result<String, String> {
    static CLUSTER: OnceLock<Result<String, String>> = OnceLock::new();
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        return Ok(url);
    }
    CLUSTER
        .get_or_init(start_ephemeral_cluster)
        .clone()
        .map_err(|e| format!("DATABASE_URL is unset and no ephemeral PostgreSQL: {e}"))
}

/// A database created for one test.
#[derive(Debug)]
pub struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    /// `CREATE DATABASE {prefix}_{random}` on [`admin_url`]; panics with the reason when
    /// there is no server or the role may not create databases.
    pub async fn create(prefix: &str) -> Self {
        let admin_url = admin_url().unwrap_or_else(|e| panic!("{e}"));
        let name = format!("{prefix}_{}", crate::random_hex(8));
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the admin database {admin_url}: {e}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed (needs CREATEDB): {e}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("the admin URL parses");
        url.set_path(&format!("/{name}"));
        Self {
            admin_url,
            name,
            url: url.to_string(),
        }
    }

    /// The new database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
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

/// `psql -Atq -c sql` on `url` (the client from the PATH, else from the PostgreSQL bin
/// directory): stdout trimmed, or psql's error. For checks that want psql's text form of
/// any row (columns joined with `|`, rows with newlines).
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("psql").is_file()));
    let program = if on_path {
        PathBuf::from("psql")
    } else {
        pg_bin_dir().map_or_else(|_| PathBuf::from("psql"), |d| d.join("psql"))
    };
    let out = Command::new(program)
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql (install the PostgreSQL client): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
/// Directory holding `initdb` and `pg_ctl`: the PATH first, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn pg_bin_dir() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("initdb is not on PATH and /usr/lib/postgresql is unreadable: {e}"))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no initdb on PATH or under /usr/lib/postgresql/*/bin".to_owned())
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program args…`, run as the `postgres` user when we are root.
fn as_cluster_owner(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn id_of(flag: &str, user: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .map_err(|e| format!("id {flag} {user}: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("no system user {user:?} to run initdb as (initdb refuses root)"))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_ephemeral_cluster() -> Result<String, String> {
    let bin = pg_bin_dir()?;
    let root = running_as_root();
    let dir = tempfile::Builder::new()
        .prefix("gatehouse-test-pg-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?
        // Kept on purpose: the watchdog below deletes it after the cluster stopped.
        .keep();
    if root {
        let (uid, gid) = (id_of("-u", "postgres")?, id_of("-g", "postgres")?);
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    run(
        as_cluster_owner(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]),
        "initdb",
    )?;
    let port = crate::free_port();
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    let started = run(
        as_cluster_owner(&bin.join("pg_ctl"), root)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]),
        "pg_ctl start",
    );
    spawn_watchdog(&bin, &dir, &data, root);
    started.map_err(|e| {
        let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
        format!("{e}\n{log}")
    })?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// Stops the cluster and removes its directory once this test process has exited.
fn spawn_watchdog(bin: &Path, dir: &Path, data: &Path, root: bool) {
    let run_as = if root { "runuser -u postgres -- " } else { "" };
    let script = format!(
        "tail --pid={pid} -f /dev/null; {run_as}'{pg_ctl}' -D '{data}' stop -m immediate; rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}
