//! A real OpenLDAP server (Debian's `slapd`, with `ldap-utils`) for the LDAP sign-in
//! tests: one per test, on free loopback ports, in a scratch directory, killed on drop.
//!
//! - `slapd.conf` with the mdb backend and the core, cosine, inetorgperson and nis
//!   schemas of `/etc/ldap/schema`; seeded with `slapadd` before it starts (so every
//!   entry has its `entryUUID`, as on a real server).
//! - `ldap://` and `ldaps://` listeners; the TLS certificate (for `127.0.0.1` and
//!   `localhost`) is signed by a CA the harness makes with the `openssl` CLI, and a
//!   second, unrelated CA is there to be refused.
//! - Access rules like a production directory's: anonymous clients may only bind
//!   (search needs the service account), passwords are never readable.
//! - `-d stats` logs every operation to `slapd.log`: [`Slapd::binds`] counts the binds
//!   the server saw, so a test can show that a request made none.
//!
//! Entries: the service account `cn=gatehouse,dc=corp,dc=example` (password
//! [`SERVICE_PASSWORD`]); under `ou=people`: `ann` (groups `devs`, `ops`,
//! `departmentNumber` 42), `bob` (address `alice@corp.example`, group `devs`), and two
//! entries with the uid `twin` (one under `ou=contractors`), which no sign-in may pick
//! between; groups (`groupOfNames`) under `ou=groups`. Every person's password is
//! `<uid>-password`.
//!
//! Not modelled: Active Directory's specifics (`objectGUID`, `sAMAccountName`,
//! `memberOf`, its bind error sub-codes) — the unit tests cover their mapping.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{POLL, free_port};

pub const BASE: &str = "dc=corp,dc=example";
pub const SERVICE_DN: &str = "cn=gatehouse,dc=corp,dc=example";
pub const SERVICE_PASSWORD: &str = "service-secret";
const ROOT_DN: &str = "cn=admin,dc=corp,dc=example";
const ROOT_PASSWORD: &str = "admin-secret";

const SEED: &str = "\
dn: dc=corp,dc=example
objectClass: dcObject
objectClass: organization
dc: corp
o: Corp

dn: ou=people,dc=corp,dc=example
objectClass: organizationalUnit
ou: people

dn: ou=contractors,ou=people,dc=corp,dc=example
objectClass: organizationalUnit
ou: contractors

dn: ou=groups,dc=corp,dc=example
objectClass: organizationalUnit
ou: groups

dn: cn=gatehouse,dc=corp,dc=example
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: gatehouse
userPassword: service-secret

dn: uid=ann,ou=people,dc=corp,dc=example
objectClass: inetOrgPerson
uid: ann
cn: Ann Smith
sn: Smith
mail: ann@corp.example
departmentNumber: 42
userPassword: ann-password

dn: uid=bob,ou=people,dc=corp,dc=example
objectClass: inetOrgPerson
uid: bob
cn: Bob Jones
sn: Jones
mail: alice@corp.example
userPassword: bob-password

dn: uid=twin,ou=people,dc=corp,dc=example
objectClass: inetOrgPerson
uid: twin
cn: Twin One
sn: One
userPassword: twin-password

dn: uid=twin,ou=contractors,ou=people,dc=corp,dc=example
objectClass: inetOrgPerson
uid: twin
cn: Twin Two
sn: Two
userPassword: twin-password

dn: cn=devs,ou=groups,dc=corp,dc=example
objectClass: groupOfNames
cn: devs
member: uid=ann,ou=people,dc=corp,dc=example
member: uid=bob,ou=people,dc=corp,dc=example

dn: cn=ops,ou=groups,dc=corp,dc=example
objectClass: groupOfNames
cn: ops
member: uid=ann,ou=people,dc=corp,dc=example
";

/// A running slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub tls_port: u16,
}

impl Slapd {
    /// Makes the CA and certificate, writes the configuration, seeds, starts slapd
    /// and waits until both listeners accept connections.
    pub async fn start() -> Self {
        for tool in [
            "/usr/sbin/slapd",
            "/usr/sbin/slapadd",
            "/usr/bin/ldapmodify",
        ] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: apt-get install -y slapd ldap-utils (see .ci/run)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-slapd-")
            .tempdir()
            .expect("scratch dir");
        let d = dir.path();
        make_certificates(d);
        std::fs::create_dir(d.join("data")).expect("data dir");
        std::fs::write(d.join("slapd.conf"), config(d)).expect("slapd.conf");
        std::fs::write(d.join("seed.ldif"), SEED).expect("seed");
        std::fs::write(d.join("bind-password"), format!("{SERVICE_PASSWORD}\n"))
            .expect("bind password file");
        run(Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("seed.ldif")));
        let (port, tls_port) = (free_port(), free_port());
        let log = std::fs::File::create(d.join("slapd.log")).expect("log file");
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
            ))
            // Foreground, operations ("stats") to stderr.
            .args(["-d", "256"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        let slapd = Self {
            dir,
            child,
            port,
            tls_port,
        };
        slapd.wait_listening().await;
        slapd
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.port, self.tls_port] {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                assert!(
                    Instant::now() < deadline,
                    "slapd did not listen on {port}: {}",
                    self.log()
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing of this server's.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// A file holding the service account's password.
    pub fn bind_password_file(&self) -> PathBuf {
        self.dir.path().join("bind-password")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// How many binds the server has answered (service account and users).
    pub fn binds(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" BIND dn=") && l.contains("method="))
            .count()
    }

    /// Applies an LDIF change as the directory's administrator (`ldapmodify`).
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("/usr/bin/ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write LDIF");
        let out = child.wait_with_output().expect("ldapmodify ran");
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(d: &Path) -> String {
    let p = |name: &str| d.join(name).display().to_string();
    format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {pid}
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 10485760
suffix \"{BASE}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PASSWORD}
directory {data}
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
",
        pid = p("slapd.pid"),
        ca = p("ca.pem"),
        cert = p("server.pem"),
        key = p("server.key"),
        data = p("data"),
    )
}

/// A CA, a server certificate it signs (127.0.0.1, localhost), and an unrelated CA.
fn make_certificates(d: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (key, cert, cn) in [
        ("ca.key", "ca.pem", "gatehouse-test-ca"),
        ("other-ca.key", "other-ca.pem", "someone-else-ca"),
    ] {
        run(Command::new("openssl")
            .current_dir(d)
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", key, "-out", cert, "-days", "2", "-subj"])
            .arg(format!("/CN={cn}")));
    }
    run(Command::new("openssl")
        .current_dir(d)
        .arg("req")
        .args(ec)
        .args([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]));
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    run(Command::new("openssl").current_dir(d).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]));
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP listener that accepts connections and never answers (an LDAP server that
/// hangs), counting the connections it got.
pub struct Silent {
    pub port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Kept open, never read or written.
                held.push(socket);
            }
        });
        Self {
            port,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn the_harness_slapd_answers_like_openldap() {
    // The behaviour the sign-in code depends on, checked with OpenLDAP's own client.
    let slapd = Slapd::start().await;
    let search = |bind: &[&str], filter: &str| {
        let mut cmd = Command::new("/usr/bin/ldapsearch");
        cmd.args(["-x", "-LLL", "-H", &slapd.url()])
            .args(bind)
            .args(["-b", BASE, filter, "entryUUID", "mail"]);
        cmd.output().expect("ldapsearch")
    };
    // Anonymous: may bind, finds nothing.
    let anon = search(&[], "(uid=ann)");
    assert!(!String::from_utf8_lossy(&anon.stdout).contains("uid=ann"));
    // The service account finds ann, with an entryUUID from slapadd.
    let found = search(&["-D", SERVICE_DN, "-w", SERVICE_PASSWORD], "(uid=ann)");
    let text = String::from_utf8_lossy(&found.stdout).to_string();
    assert!(
        text.contains("dn: uid=ann,ou=people,dc=corp,dc=example"),
        "{text}"
    );
    assert!(text.contains("entryUUID: "), "{text}");
    // A DN without a password is an unauthenticated bind, which OpenLDAP refuses by
    // default (53) — other servers accept it, hence our own refusal.
    let unauth = Command::new("/usr/bin/ldapwhoami")
        .args([
            "-x",
            "-H",
            &slapd.url(),
            "-D",
            "uid=ann,ou=people,dc=corp,dc=example",
        ])
        .output()
        .expect("ldapwhoami");
    assert!(!unauth.status.success());
    assert!(slapd.binds() >= 2, "{}", slapd.log());
}
