//! Signing in against an LDAP directory (`kind: ldap`): the protocol half. The engine's
//! password step calls [`Directories::authenticate`] with what the sign-in form sent
//! when no local password decides it.
//!
//! 1. The service account (`bindDn`, `bindPassword`) searches `userBaseDn` with
//!    `userFilter`, the username escaped as RFC 4515 says (no LDAP injection). Exactly
//!    one entry, or the answer is "no such user" — several matches are never guessed
//!    between.
//! 2. The password is checked by a simple bind as that entry's DN on a connection of
//!    its own (a bind changes a connection's identity; pooled connections stay the
//!    service account's). An empty password is refused before any bind: RFC 4513 §5.1.2
//!    makes a simple bind with a DN and no password an *unauthenticated* bind, which
//!    many servers answer with success.
//! 3. The service account reads the groups (`memberOf`-style attribute, or a group
//!    search), and the attributes map to an [`UpstreamIdentity`] like an upstream's
//!    claims do.
//!
//! The password is never stored or logged; it lives in the bind request only.
//!
//! Connections of the service account are pooled (`poolSize`, per directory
//! configuration); every connect and every operation is bounded by `timeoutSeconds`, so
//! a server that accepts TCP and never answers fails the sign-in within that time
//! instead of holding it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::{FederationError, Result, UpstreamIdentity, claims, read_secret};
use crate::domain::federation::UpstreamProvider;
use crate::domain::ldap::{
    LdapDirectory, MAX_GROUPS, MAX_LDAP_USERNAME, binary_subject, first_rdn_value,
};

/// LDAP result codes (RFC 4511 Appendix A) we act on.
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
const RC_NO_SUCH_OBJECT: u32 = 32;
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_INSUFFICIENT_ACCESS: u32 = 50;
const RC_UNWILLING_TO_PERFORM: u32 = 53;

/// What the directory said about a username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryAnswer {
    /// The password is right: the account as the directory describes it.
    Accepted(Box<UpstreamIdentity>),
    /// No entry, or several, matched the username (or it cannot be a username).
    NoSuchUser,
    /// The entry exists, the password is not its (or empty, or the account is
    /// locked or disabled in the directory).
    WrongPassword,
}

/// Pools of service-account connections, one per directory configuration.
#[derive(Debug, Default)]
pub struct Directories {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

/// A directory's idle service-account connections, and permits bounding how many are
/// open at once.
#[derive(Debug)]
struct Pool {
    idle: Mutex<Vec<Ldap>>,
    slots: Arc<Semaphore>,
}

/// A service-account connection checked out of its pool; [`Lease::done`] gives it back.
struct Lease {
    ldap: Ldap,
    pool: Arc<Pool>,
    _slot: OwnedSemaphorePermit,
}

impl Lease {
    /// Back to the pool (a connection that failed is dropped instead: never call this
    /// after an error).
    fn done(self) {
        if let Ok(mut idle) = self.pool.idle.lock() {
            idle.push(self.ldap);
        }
    }
}

impl Directories {
    /// Checks `username` and `password` against the directory of `p`.
    pub async fn authenticate(
        &self,
        p: &UpstreamProvider,
        d: &LdapDirectory,
        username: &str,
        password: &SecretString,
    ) -> Result<DirectoryAnswer> {
        if username.is_empty()
            || username.len() > MAX_LDAP_USERNAME
            || username.chars().any(char::is_control)
        {
            // Nothing a directory could hold: refused before any LDAP operation.
            return Ok(DirectoryAnswer::NoSuchUser);
        }
        if password.expose_secret().is_empty() {
            // Before any bind, the service account's included: nothing to check.
            return Ok(DirectoryAnswer::WrongPassword);
        }
        let timeout = Duration::from_secs(d.timeout_seconds);
        let mut lease = self.checkout(d, timeout).await?;
        let Some(entry) = find_user(&mut lease.ldap, d, username, timeout).await? else {
            lease.done();
            return Ok(DirectoryAnswer::NoSuchUser);
        };
        if !user_bind(d, &entry.dn, password, timeout).await? {
            lease.done();
            return Ok(DirectoryAnswer::WrongPassword);
        }
        let groups = read_groups(&mut lease.ldap, d, &entry, timeout).await?;
        lease.done();
        let identity = identity(p, d, &entry, groups)?;
        Ok(DirectoryAnswer::Accepted(Box::new(identity)))
    }

    /// A service-account connection of the directory: an idle one that is still open,
    /// or a new one (connected and bound). Waits at most `timeout` for a free slot.
    async fn checkout(&self, d: &LdapDirectory, timeout: Duration) -> Result<Lease> {
        let pool = self.pool(d)?;
        let slot = tokio::time::timeout(timeout, Arc::clone(&pool.slots).acquire_owned())
            .await
            .map_err(|_| FederationError::Upstream("directory: every connection is busy".into()))?
            .map_err(|_| FederationError::Upstream("directory: pool closed".into()))?;
        loop {
            let idle = pool.idle.lock().ok().and_then(|mut i| i.pop());
            let Some(mut ldap) = idle else { break };
            // A connection the server closed (idle timeout, restart) is dropped.
            if !ldap.is_closed() {
                return Ok(Lease {
                    ldap,
                    pool,
                    _slot: slot,
                });
            }
        }
        let mut ldap = connect(d, timeout).await?;
        match service_bind(&mut ldap, d, timeout).await? {
            0 => Ok(Lease {
                ldap,
                pool,
                _slot: slot,
            }),
            RC_INVALID_CREDENTIALS => Err(FederationError::Config(
                "ldap.bindDn/bindPassword: the directory refused the service account".into(),
            )),
            rc => Err(FederationError::Upstream(format!(
                "directory: service bind answered result code {rc}"
            ))),
        }
    }

    fn pool(&self, d: &LdapDirectory) -> Result<Arc<Pool>> {
        // Keyed by the whole configuration: a changed directory gets fresh connections.
        let key = serde_json::to_string(d)
            .map_err(|_| FederationError::Config("ldap: unserialisable".into()))?;
        let mut pools = self
            .pools
            .lock()
            .map_err(|_| FederationError::Config("ldap: pool lock poisoned".into()))?;
        Ok(Arc::clone(pools.entry(key).or_insert_with(|| {
            Arc::new(Pool {
                idle: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(d.pool_size)),
            })
        })))
    }
}

/// Connects (TLS as configured) and binds as the service account on a connection of
/// its own, then unbinds: what every directory sign-in needs first. A pooled
/// connection would prove only that the directory was there when it was opened. What
/// was checked, or why it failed; never the password.
pub async fn check(d: &LdapDirectory) -> std::result::Result<String, String> {
    let url = &d.url;
    let failed = |e: FederationError| {
        let why = e.detail().trim_start_matches("directory: ").to_owned();
        format!("LDAP {url}: {why}")
    };
    let timeout = Duration::from_secs(d.timeout_seconds);
    let mut ldap = connect(d, timeout).await.map_err(failed)?;
    let rc = service_bind(&mut ldap, d, timeout).await.map_err(failed);
    // Best effort: the connection is dropped anyway, and a hung server must not hold
    // the check past its timeout.
    let _ = tokio::time::timeout(timeout, ldap.unbind()).await;
    match rc? {
        0 => {
            let how = if d.start_tls {
                " with StartTLS"
            } else if url.starts_with("ldaps:") {
                " over TLS"
            } else {
                ""
            };
            Ok(format!(
                "LDAP {url}: connected{how} and bound as the service account"
            ))
        }
        rc => Err(format!(
            "LDAP {url}: service-account bind failed: {} (ldap.bindDn, ldap.bindPassword)",
            result_name(rc)
        )),
    }
}

/// Binds `ldap` as the service account: the result code the directory answered.
async fn service_bind(ldap: &mut Ldap, d: &LdapDirectory, timeout: Duration) -> Result<u32> {
    let password = read_secret(&d.bind_password)
        .map_err(|e| FederationError::Config(format!("ldap.bindPassword: {}", e.detail())))?;
    let bound = ldap
        .with_timeout(timeout)
        .simple_bind(&d.bind_dn, password.expose_secret())
        .await
        .map_err(|e| unreachable("service bind", &e))?;
    Ok(bound.rc)
}

/// An LDAP result code's name (RFC 4511 Appendix A) for the codes a bind answers.
fn result_name(rc: u32) -> String {
    match rc {
        RC_NO_SUCH_OBJECT => "noSuchObject".to_owned(),
        34 => "invalidDNSyntax".to_owned(),
        48 => "inappropriateAuthentication".to_owned(),
        RC_INVALID_CREDENTIALS => "invalidCredentials".to_owned(),
        RC_INSUFFICIENT_ACCESS => "insufficientAccessRights".to_owned(),
        51 => "busy".to_owned(),
        52 => "unavailable".to_owned(),
        RC_UNWILLING_TO_PERFORM => "unwillingToPerform".to_owned(),
        rc => format!("result code {rc}"),
    }
}

/// A new connection (TLS as configured), its I/O driven by a task of its own.
async fn connect(d: &LdapDirectory, timeout: Duration) -> Result<Ldap> {
    let tls = d.start_tls || d.url.starts_with("ldaps:");
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(d.start_tls);
    if tls {
        settings = settings.set_config(tls_config(d)?);
    }
    // The connect timeout covers TCP, TLS and StartTLS; this one is a backstop.
    let (conn, ldap) = tokio::time::timeout(
        timeout + Duration::from_secs(1),
        LdapConnAsync::with_settings(settings, &d.url),
    )
    .await
    .map_err(|_| FederationError::Upstream("directory: connect timed out".into()))?
    .map_err(|e| unreachable("connect", &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "directory connection ended");
        }
    });
    Ok(ldap)
}

/// rustls on ring (the provider the rest of the server uses), trusting `caFile` or,
/// without it, the system's roots.
fn tls_config(d: &LdapDirectory) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = &d.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            FederationError::Config(format!("ldap.caFile: cannot read {path}: {}", e.kind()))
        })?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                FederationError::Config(format!("ldap.caFile: not a PEM certificate: {e}"))
            })?;
            roots.add(cert).map_err(|e| {
                FederationError::Config(format!("ldap.caFile: unusable certificate: {e}"))
            })?;
        }
        if roots.is_empty() {
            return Err(FederationError::Config(
                "ldap.caFile: no PEM certificate in the file".into(),
            ));
        }
    } else {
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system root rustls cannot use is one fewer root, not a failure.
            let _ = roots.add(cert);
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| FederationError::Config(format!("ldap TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The one entry the user filter finds for `username`; `None` for none or several.
async fn find_user(
    ldap: &mut Ldap,
    d: &LdapDirectory,
    username: &str,
    timeout: Duration,
) -> Result<Option<SearchEntry>> {
    let mut attrs = vec![
        d.subject_attribute.as_str(),
        d.username_attribute.as_str(),
        d.email_attribute.as_str(),
        d.name_attribute.as_str(),
    ];
    if let Some(a) = &d.groups_attribute {
        attrs.push(a);
    }
    let result = ldap
        .with_search_options(SearchOptions::new().sizelimit(2))
        .with_timeout(timeout)
        .search(
            &d.user_base_dn,
            Scope::Subtree,
            &d.user_filter_for(username),
            attrs.iter().chain(FORWARD_ALL.iter()).collect::<Vec<_>>(),
        )
        .await
        .map_err(|e| unreachable("user search", &e))?;
    match result.1.rc {
        0 => {}
        // More than one entry: ambiguous, so nobody.
        RC_SIZE_LIMIT_EXCEEDED => return Ok(None),
        RC_NO_SUCH_OBJECT => {
            return Err(FederationError::Config(
                "ldap.userBaseDn: the directory has no such entry".into(),
            ));
        }
        rc => {
            return Err(FederationError::Upstream(format!(
                "directory: user search answered result code {rc}"
            )));
        }
    }
    let mut entries = result.0.into_iter();
    match (entries.next(), entries.next()) {
        (Some(one), None) => parse_entry(one).map(Some),
        _ => Ok(None),
    }
}

/// `SearchEntry::construct` panics on an entry it cannot parse: a broken or hostile
/// directory must fail the sign-in, not the request's task.
fn parse_entry(entry: ldap3::ResultEntry) -> Result<SearchEntry> {
    std::panic::catch_unwind(move || SearchEntry::construct(entry))
        .map_err(|_| FederationError::Upstream("directory: an entry that does not parse".into()))
}

/// Every user attribute (`*`) as well: forwarded attributes are named by the claim
/// mapping, and `entryUUID` (operational) is asked for by name above.
const FORWARD_ALL: [&str; 1] = ["*"];

/// Binds as `dn` with the password on a connection of its own: `true` when the
/// directory accepts it.
async fn user_bind(
    d: &LdapDirectory,
    dn: &str,
    password: &SecretString,
    timeout: Duration,
) -> Result<bool> {
    if password.expose_secret().is_empty() || dn.is_empty() {
        // An unauthenticated bind (RFC 4513 §5.1.2) would "succeed": never send it.
        return Ok(false);
    }
    let mut ldap = connect(d, timeout).await?;
    let bound = ldap
        .with_timeout(timeout)
        .simple_bind(dn, password.expose_secret())
        .await
        .map_err(|e| unreachable("user bind", &e))?;
    let _ = ldap.unbind().await;
    match bound.rc {
        0 => Ok(true),
        // Wrong password, or an account the directory will not let in (AD: disabled,
        // expired, locked out): the same "wrong username or password" to the user.
        RC_INVALID_CREDENTIALS | RC_INSUFFICIENT_ACCESS | RC_UNWILLING_TO_PERFORM => Ok(false),
        rc => Err(FederationError::Upstream(format!(
            "directory: user bind answered result code {rc}"
        ))),
    }
}

/// The names of the user's groups, sorted, at most [`MAX_GROUPS`].
async fn read_groups(
    ldap: &mut Ldap,
    d: &LdapDirectory,
    entry: &SearchEntry,
    timeout: Duration,
) -> Result<Vec<String>> {
    let mut groups: Vec<String> = if let Some(attr) = &d.groups_attribute {
        values(entry, attr)
            .iter()
            .filter_map(|dn| first_rdn_value(dn))
            .collect()
    } else if let (Some(base), Some(filter)) = (&d.group_base_dn, d.group_filter_for(&entry.dn)) {
        let result = ldap
            .with_search_options(
                SearchOptions::new().sizelimit(i32::try_from(MAX_GROUPS).unwrap_or(i32::MAX)),
            )
            .with_timeout(timeout)
            .search(
                base,
                Scope::Subtree,
                &filter,
                vec![d.group_name_attribute.as_str()],
            )
            .await
            .map_err(|e| unreachable("group search", &e))?;
        if !matches!(result.1.rc, 0 | RC_SIZE_LIMIT_EXCEEDED) {
            return Err(FederationError::Upstream(format!(
                "directory: group search answered result code {}",
                result.1.rc
            )));
        }
        let mut names = Vec::new();
        for group in result.0 {
            let g = parse_entry(group)?;
            if let Some(name) = values(&g, &d.group_name_attribute)
                .into_iter()
                .next()
                .or_else(|| first_rdn_value(&g.dn))
            {
                names.push(name);
            }
        }
        names
    } else {
        Vec::new()
    };
    groups.sort();
    groups.dedup();
    groups.truncate(MAX_GROUPS);
    Ok(groups)
}

/// An attribute's values (attribute names are case-insensitive in LDAP).
fn values(entry: &SearchEntry, name: &str) -> Vec<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The entry's subject: text as it is (`entryUUID`), binary (`objectGUID`) in its
/// textual form.
fn subject(d: &LdapDirectory, entry: &SearchEntry) -> Option<String> {
    let name = d.subject_attribute.as_str();
    let binary = entry
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned());
    let text = values(entry, name).into_iter().next();
    if name.eq_ignore_ascii_case("objectGUID") {
        // A GUID whose bytes happen to be valid UTF-8 arrives as text: same bytes.
        return binary
            .or_else(|| text.map(String::into_bytes))
            .map(|b| binary_subject(name, &b));
    }
    text.or_else(|| binary.map(|b| binary_subject(name, &b)))
        .filter(|s| !s.is_empty() && s.len() <= 255)
}

/// Maps the entry (and its groups) as an upstream's claims are mapped.
fn identity(
    p: &UpstreamProvider,
    d: &LdapDirectory,
    entry: &SearchEntry,
    groups: Vec<String>,
) -> Result<UpstreamIdentity> {
    let Some(sub) = subject(d, entry) else {
        return Err(FederationError::Config(format!(
            "ldap.subjectAttribute: the user's entry has no usable {}",
            d.subject_attribute
        )));
    };
    let first = |attr: &str| values(entry, attr).into_iter().next().map(Value::String);
    let mut claims = Map::new();
    for (claim, attr) in [
        (&p.claims.username, &d.username_attribute),
        (&p.claims.email, &d.email_attribute),
        (&p.claims.name, &d.name_attribute),
    ] {
        if let Some(v) = first(attr) {
            claims.insert(claim.clone(), v);
        }
    }
    claims.insert("email_verified".into(), Value::Bool(d.email_verified));
    // `claims.forward` names directory attributes: one value as a string, several as
    // a list.
    for attr in &p.claims.forward {
        let mut vals = values(entry, attr);
        match vals.len() {
            0 => {}
            1 => {
                claims.insert(attr.clone(), Value::String(vals.remove(0)));
            }
            _ => {
                claims.insert(attr.clone(), vals.into_iter().map(Value::String).collect());
            }
        }
    }
    let mut mapping = p.clone();
    if d.reads_groups() {
        claims.insert(
            d.groups_claim.clone(),
            groups.into_iter().map(Value::String).collect(),
        );
        if !mapping.claims.forward.contains(&d.groups_claim) {
            mapping.claims.forward.push(d.groups_claim.clone());
        }
    }
    let mut identity = claims::identity(&mapping, &sub, &claims);
    identity.directory = true;
    Ok(identity)
}

/// A failed exchange with the directory, for the log: what failed, never a password.
fn unreachable(what: &str, e: &LdapError) -> FederationError {
    let why = match e {
        LdapError::Timeout { .. } => "timed out".to_owned(),
        LdapError::Io { source } => format!("I/O error ({})", source.kind()),
        other => other.to_string(),
    };
    FederationError::Upstream(format!("directory: {what}: {why}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn provider() -> UpstreamProvider {
        serde_json::from_value(json!({
            "id": "dir", "displayName": "Directory", "kind": "ldap",
            "ldap": {"url": "ldap://127.0.0.1:1", "bindDn": "cn=svc", "bindPassword": {"env": "X"},
                     "userBaseDn": "dc=x", "groupsAttribute": "memberOf", "emailVerified": true},
            "claims": {"forward": ["departmentNumber"]}
        }))
        .unwrap()
    }

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "uid=ann,ou=people,dc=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn attributes_map_to_the_identity_with_groups_forwarded() {
        let p = provider();
        let d = p.ldap.clone().unwrap();
        let e = entry(&[
            ("entryUUID", &["0b6e-uuid"]),
            ("uid", &["ann"]),
            ("MAIL", &["ann@corp.example"]),
            ("cn", &["Ann Smith"]),
            ("departmentNumber", &["42", "43"]),
        ]);
        let id = identity(&p, &d, &e, vec!["devs".into(), "ops".into()]).unwrap();
        assert_eq!(id.subject, "0b6e-uuid");
        assert_eq!(id.username.as_deref(), Some("ann"));
        assert_eq!(id.email.as_deref(), Some("ann@corp.example"));
        assert!(id.email_verified, "the directory is trusted for addresses");
        assert_eq!(id.name.as_deref(), Some("Ann Smith"));
        assert_eq!(id.forwarded["groups"], json!(["devs", "ops"]));
        assert_eq!(id.forwarded["departmentNumber"], json!(["42", "43"]));
        assert_eq!(claims::amr(&id), ["pwd"]);
    }

    #[test]
    fn an_entry_without_its_subject_is_a_configuration_error() {
        let p = provider();
        let d = p.ldap.clone().unwrap();
        let e = entry(&[("uid", &["ann"])]);
        let err = identity(&p, &d, &e, Vec::new()).unwrap_err();
        assert!(
            matches!(err, FederationError::Config(ref m) if m.contains("entryUUID")),
            "{err}"
        );
    }

    #[test]
    fn an_entry_that_does_not_parse_fails_the_sign_in_not_the_task() {
        use ldap3::asn1::{PL, StructureTag, TagClass};
        let broken = ldap3::ResultEntry::new(StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(b"not an entry".to_vec()),
        });
        assert!(matches!(
            parse_entry(broken),
            Err(FederationError::Upstream(_))
        ));
    }

    #[tokio::test]
    async fn impossible_usernames_are_refused_before_any_connection() {
        // Port 1 on loopback: any connection attempt would fail as an upstream error.
        let p = provider();
        let d = p.ldap.clone().unwrap();
        let dirs = Directories::default();
        let pw = SecretString::from("pw".to_owned());
        for name in ["", &"a".repeat(MAX_LDAP_USERNAME + 1), "ann\0", "ann\n"] {
            assert_eq!(
                dirs.authenticate(&p, &d, name, &pw).await.unwrap(),
                DirectoryAnswer::NoSuchUser
            );
        }
        assert!(matches!(
            dirs.authenticate(&p, &d, "ann", &pw).await,
            Err(FederationError::Upstream(_))
        ));
    }
}
