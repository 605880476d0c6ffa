//! An LDAP / Active Directory upstream (`kind: ldap`, its `ldap:` block): where the
//! directory is, how we bind to it, how a user is found, which attributes fill the
//! profile and which groups go into a claim. Pure: validation and the two textual
//! rules the client needs (RFC 4515 filter escaping, a group DN's name).
//!
//! The bind password is never part of the policy: `bindPassword` names where to read
//! it, like an OpenID provider's `clientSecret`.

use serde::{Deserialize, Serialize};

use super::federation::SecretSource;

/// Longest username the sign-in form sends to a directory (bytes). Longer input is
/// refused before any LDAP operation.
pub const MAX_LDAP_USERNAME: usize = 256;
/// Most groups read for one user (the rest are ignored).
pub const MAX_GROUPS: usize = 256;
/// Longest `timeoutSeconds`.
const MAX_TIMEOUT_SECONDS: u64 = 60;
/// Largest `poolSize`.
const MAX_POOL_SIZE: usize = 64;

/// An LDAP directory users sign in against with the ordinary password form.
// Independent switches, each documented in the CRD.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapDirectory {
    /// `ldap://host[:389]` or `ldaps://host[:636]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    #[serde(default)]
    pub start_tls: bool,
    /// PEM file with the CA certificate(s) the directory's certificate must chain to
    /// (LDAPS and StartTLS). Without it: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The service account that searches for users.
    pub bind_dn: String,
    /// Where the service account's password is read (`{file}` or `{env}`).
    pub bind_password: SecretSource,
    /// Where users are searched (subtree).
    pub user_base_dn: String,
    /// The search filter; `{username}` is replaced by the typed username, escaped as
    /// RFC 4515 requires. Exactly one entry must match.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// The attribute that identifies an account for good (the key of its link): must
    /// not change when the user is renamed. OpenLDAP `entryUUID`, AD `objectGUID`.
    #[serde(default = "default_subject")]
    pub subject_attribute: String,
    /// The attribute a provisioned user's username comes from (AD `sAMAccountName`).
    #[serde(default = "default_username")]
    pub username_attribute: String,
    #[serde(default = "default_email")]
    pub email_attribute: String,
    #[serde(default = "default_name")]
    pub name_attribute: String,
    /// Group membership from an attribute of the user's entry that lists group DNs
    /// (`memberOf`); each group's name is the value of its DN's first RDN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_attribute: Option<String>,
    /// Group membership from a search under this DN with `groupFilter` (needs both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_base_dn: Option<String>,
    /// `{dn}` is replaced by the user's DN (escaped), e.g. `(member={dn})`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_filter: Option<String>,
    /// The attribute of a found group entry that names it.
    #[serde(default = "default_group_name")]
    pub group_name_attribute: String,
    /// The claim the group names go into (forwarded into ID tokens and userinfo).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Whether the directory's e-mail addresses count as verified (for linking to a
    /// local account by address, and the user's `email_verified`).
    #[serde(default)]
    pub email_verified: bool,
    /// Limit for connecting and for each operation.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Most service-account connections kept open (and used at once).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_user_filter() -> String {
    "(uid={username})".into()
}
fn default_subject() -> String {
    "entryUUID".into()
}
fn default_username() -> String {
    "uid".into()
}
fn default_email() -> String {
    "mail".into()
}
fn default_name() -> String {
    "cn".into()
}
fn default_group_name() -> String {
    "cn".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_timeout() -> u64 {
    5
}
fn default_pool_size() -> usize {
    4
}

impl LdapDirectory {
    /// Checks the block; the error names the field under `ldap.`.
    pub fn check(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("ldap.url: {e}"))?;
        match url.scheme() {
            "ldap" | "ldaps" => {}
            _ => return Err("ldap.url: must be an ldap:// or ldaps:// URL".into()),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("ldap.url: names no host".into());
        }
        if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
            return Err("ldap.url: only scheme, host and port (no DN or query)".into());
        }
        if self.start_tls && url.scheme() == "ldaps" {
            return Err("ldap.startTls: ldaps:// is TLS already".into());
        }
        if self.ca_file.as_deref().is_some_and(str::is_empty) {
            return Err("ldap.caFile: empty".into());
        }
        for (field, v) in [
            ("bindDn", &self.bind_dn),
            ("userBaseDn", &self.user_base_dn),
        ] {
            if v.trim().is_empty() || v.len() > 1024 {
                return Err(format!("ldap.{field}: must be a DN (1 to 1024 characters)"));
            }
        }
        match (&self.bind_password.env, &self.bind_password.file) {
            (Some(v), None) | (None, Some(v)) if !v.is_empty() => {}
            _ => {
                return Err(
                    "ldap.bindPassword: name exactly one of env (a variable) or file (a path)"
                        .into(),
                );
            }
        }
        check_filter("userFilter", &self.user_filter, "{username}")?;
        for (field, v) in [
            ("subjectAttribute", &self.subject_attribute),
            ("usernameAttribute", &self.username_attribute),
            ("emailAttribute", &self.email_attribute),
            ("nameAttribute", &self.name_attribute),
            ("groupNameAttribute", &self.group_name_attribute),
        ] {
            check_attribute(field, v)?;
        }
        if let Some(a) = &self.groups_attribute {
            check_attribute("groupsAttribute", a)?;
        }
        match (&self.group_base_dn, &self.group_filter) {
            (None, None) => {}
            (Some(base), Some(filter)) => {
                if base.trim().is_empty() || base.len() > 1024 {
                    return Err("ldap.groupBaseDn: must be a DN (1 to 1024 characters)".into());
                }
                check_filter("groupFilter", filter, "{dn}")?;
            }
            _ => return Err("ldap.groupBaseDn: needs ldap.groupFilter (and the other way)".into()),
        }
        if self.groups_attribute.is_some() && self.group_base_dn.is_some() {
            return Err(
                "ldap.groupsAttribute: either an attribute or a group search, not both".into(),
            );
        }
        if !(1..=MAX_TIMEOUT_SECONDS).contains(&self.timeout_seconds) {
            return Err(format!(
                "ldap.timeoutSeconds: must be 1 to {MAX_TIMEOUT_SECONDS}"
            ));
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(format!("ldap.poolSize: must be 1 to {MAX_POOL_SIZE}"));
        }
        Ok(())
    }

    /// Whether group membership is read at all.
    pub fn reads_groups(&self) -> bool {
        self.groups_attribute.is_some() || self.group_base_dn.is_some()
    }

    /// The user search filter for `username` (escaped).
    pub fn user_filter_for(&self, username: &str) -> String {
        self.user_filter
            .replace("{username}", &escape_filter_value(username))
    }

    /// The group search filter for the user's DN (escaped), if groups are searched.
    pub fn group_filter_for(&self, dn: &str) -> Option<String> {
        self.group_filter
            .as_ref()
            .map(|f| f.replace("{dn}", &escape_filter_value(dn)))
    }
}

/// A filter in parentheses with the placeholder, balanced parentheses, at most 1 KiB.
fn check_filter(field: &str, filter: &str, placeholder: &str) -> Result<(), String> {
    if filter.len() > 1024 || !filter.starts_with('(') || !filter.ends_with(')') {
        return Err(format!(
            "ldap.{field}: must be an LDAP filter in parentheses (at most 1024 characters)"
        ));
    }
    if !filter.contains(placeholder) {
        return Err(format!("ldap.{field}: must contain {placeholder}"));
    }
    let mut depth = 0i32;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!("ldap.{field}: unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(format!("ldap.{field}: unbalanced parentheses"));
    }
    Ok(())
}

/// An attribute description: a name (letters, digits, `-`) or an OID.
fn check_attribute(field: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "ldap.{field}: {name:?} is not an attribute name (letters, digits, '-')"
        ))
    }
}

/// RFC 4515 §3: in an assertion value, `*`, `(`, `)`, `\` and NUL are written as `\XX`
/// (two hex digits). Everything else, UTF-8 included, stays: the username can then only
/// ever be a literal value, never filter syntax (LDAP injection).
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// The value of a DN's first RDN (`cn=Dev Ops,ou=groups,dc=x` → `Dev Ops`), with RFC
/// 4514 escapes (`\,`, `\2C`) undone. `None` for something that is not a DN.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut out: Vec<u8> = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                } else {
                    out.push(*bytes.get(i + 1)?);
                    i += 2;
                }
            }
            b',' | b'+' => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let value = String::from_utf8(out).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// An Active Directory `objectGUID` (16 bytes, its first three fields little-endian) in
/// the textual form AD tools show; any other binary value as lowercase hex.
pub fn binary_subject(attribute: &str, bytes: &[u8]) -> String {
    match <[u8; 16]>::try_from(bytes) {
        Ok(b) if attribute.eq_ignore_ascii_case("objectGUID") => format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[3],
            b[2],
            b[1],
            b[0],
            b[5],
            b[4],
            b[7],
            b[6],
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        ),
        _ => hex::encode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn directory(extra: &serde_json::Value) -> Result<LdapDirectory, String> {
        let mut v = json!({"url": "ldap://dir.corp.example", "bindDn": "cn=svc,dc=corp",
            "bindPassword": {"file": "/s/ldap"}, "userBaseDn": "ou=people,dc=corp"});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        let d: LdapDirectory = serde_json::from_value(v).map_err(|e| e.to_string())?;
        d.check().map(|()| d)
    }

    #[test]
    fn a_directory_gets_the_documented_defaults() {
        let d = directory(&json!({})).unwrap();
        assert_eq!(d.user_filter, "(uid={username})");
        assert_eq!(d.subject_attribute, "entryUUID");
        assert_eq!(
            (d.username_attribute.as_str(), d.email_attribute.as_str()),
            ("uid", "mail")
        );
        assert_eq!((d.timeout_seconds, d.pool_size), (5, 4));
        assert!(!d.email_verified && !d.start_tls && !d.reads_groups());
        assert_eq!(d.groups_claim, "groups");
    }

    #[test]
    fn bad_blocks_name_the_field() {
        for (extra, field) in [
            (json!({"url": "http://dir"}), "ldap.url"),
            (json!({"url": "ldap://dir/dc=x"}), "ldap.url"),
            (
                json!({"url": "ldaps://dir", "startTls": true}),
                "ldap.startTls",
            ),
            (json!({"bindPassword": {}}), "ldap.bindPassword"),
            (json!({"userFilter": "(uid=alice)"}), "ldap.userFilter"),
            (json!({"userFilter": "(uid={username}"}), "ldap.userFilter"),
            (
                json!({"usernameAttribute": "u id"}),
                "ldap.usernameAttribute",
            ),
            (json!({"groupBaseDn": "ou=g"}), "ldap.groupBaseDn"),
            (
                json!({"groupBaseDn": "ou=g", "groupFilter": "(member=x)"}),
                "ldap.groupFilter",
            ),
            (
                json!({"groupsAttribute": "memberOf", "groupBaseDn": "ou=g", "groupFilter": "(member={dn})"}),
                "ldap.groupsAttribute",
            ),
            (json!({"timeoutSeconds": 0}), "ldap.timeoutSeconds"),
            (json!({"poolSize": 1000}), "ldap.poolSize"),
            (json!({"bindDn": ""}), "ldap.bindDn"),
        ] {
            let e = directory(&extra).unwrap_err();
            assert!(e.contains(field), "{extra}: {e}");
        }
        // An inline password is not a reference.
        assert!(directory(&json!({"bindPassword": "s3cret"})).is_err());
    }

    #[test]
    fn usernames_are_escaped_as_rfc_4515_says() {
        let d =
            directory(&json!({"userFilter": "(&(objectClass=person)(uid={username}))"})).unwrap();
        assert_eq!(d.user_filter_for("*"), "(&(objectClass=person)(uid=\\2a))");
        assert_eq!(
            d.user_filter_for(")(uid=*"),
            "(&(objectClass=person)(uid=\\29\\28uid=\\2a))"
        );
        assert_eq!(escape_filter_value("a\0b\\c"), "a\\00b\\5cc");
        assert_eq!(escape_filter_value("Jürgen"), "Jürgen");
        let g = directory(&json!({"groupBaseDn": "ou=g", "groupFilter": "(member={dn})"})).unwrap();
        assert_eq!(
            g.group_filter_for("cn=a\\,b (x),dc=c").as_deref(),
            Some("(member=cn=a\\5c,b \\28x\\29,dc=c)")
        );
    }

    #[test]
    fn group_names_come_from_the_first_rdn() {
        assert_eq!(
            first_rdn_value("cn=Dev Ops,ou=groups,dc=corp").as_deref(),
            Some("Dev Ops")
        );
        assert_eq!(first_rdn_value("CN=a\\,b,OU=x").as_deref(), Some("a,b"));
        assert_eq!(
            first_rdn_value("cn=\\4a\\c3\\bcrgen,dc=x").as_deref(),
            Some("Jürgen")
        );
        assert_eq!(first_rdn_value("not a dn"), None);
    }

    #[test]
    fn object_guids_read_as_active_directory_writes_them() {
        let raw = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            binary_subject("objectGUID", &raw),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(binary_subject("other", &[1, 2]), "0102");
    }
}
