//! An ephemeral PostgreSQL cluster for tests, shared by the authserver integration
//! tests and the e2e scenario (each includes this file with `#[path]`; it is not a crate,
//! so neither links the other).
//!
//! [`admin_url`] is `DATABASE_URL` when set; otherwise the first call starts one cluster
//! for the whole test process: `initdb` + `pg_ctl` from the PATH or
//! `/usr/lib/postgresql/*/bin`, in a temp dir, on a free loopback port, trust auth,
//! durability off. `initdb` refuses to run as root, so as root both run as the
//! `postgres` system user (`runuser`). A watchdog (`tail --pid` on this process, in its
//! own process group so Ctrl-C does not reach it) stops the cluster with
//! `pg_ctl stop -m immediate` and deletes its directory once the test process is gone,
//! however it ended.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
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
    let port = free_port()?;
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
