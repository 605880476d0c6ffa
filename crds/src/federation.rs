//! `IdentityTenant.spec.federation`: upstream identity providers the tenant's users may
//! sign in with. The operator passes it to the auth server as the tenant's
//! `settings.federation`, with each `clientSecretRef` (and an LDAP directory's
//! `bindPasswordRef` and `caRef`) turned into the path where the auth pods have that
//! Secret mounted (see `charts/gatehouse`, `federation.secrets`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the auth pods mount the Secrets that upstream providers' `clientSecretRef`s
/// name: `<dir>/<secret name>/<key>`.
pub const UPSTREAM_SECRETS_DIR: &str = "/var/run/gatehouse/upstream";

/// Upstream identity providers and how the sign-in page offers them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FederationPolicy {
    /// The providers, in the order the sign-in page lists them ("Sign in with …"). The
    /// auth server checks each at every reconcile (discovery and keys fetched, an LDAP
    /// directory's service-account bind); while one fails the IdentityTenant reports
    /// Ready=False, reason UpstreamUnreachable, naming the provider and why, and stays
    /// registered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub providers: Vec<UpstreamProvider>,

    /// Home-realm discovery: a `login_hint` whose domain (after the last `@`) is a key
    /// here goes straight to the provider with that id, without the sign-in form.
    /// Keys are lowercase domains, for example `corp.example: corp`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub login_hint_domains: BTreeMap<String, String>,

    /// With exactly one provider, skip the sign-in form and go to the provider at once.
    /// Default: false.
    #[serde(default)]
    pub skip_password_form: bool,

    /// Ask for the tenant's own second factor after every upstream sign-in (users
    /// without one enrol first). Default: false — a user's enrolled factor,
    /// `mfa.required` and the client's `acr_values` apply anyway, as after a password.
    #[serde(default)]
    pub require_second_factor: bool,
}

/// One upstream identity provider: OpenID Connect (Google, Entra ID, Okta, Keycloak,
/// Dex, another Gatehouse …), OAuth 2.0 with a user API (GitHub), or an LDAP /
/// Active Directory directory (`kind: ldap`). Register
/// `<issuer of this tenant>/login/upstream/callback` as the redirect URI at the first two.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// Independent switches, each its own API field.
#[allow(clippy::struct_excessive_bools)]
pub struct UpstreamProvider {
    /// Stable id (1-63 lowercase letters, digits, `-`): the value of the sign-in
    /// page's button and the key of linked accounts. Renaming it orphans every link.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9-]+$"))]
    pub id: String,

    /// Shown on the button: "Sign in with {displayName}".
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,

    /// `oidc` (default): an OpenID Connect provider, from its discovery document.
    /// `oauth2`: OAuth 2.0 without OpenID Connect (GitHub-style), with the endpoints and
    /// user API in `oauth2`. `ldap`: an LDAP / Active Directory directory (`ldap`),
    /// checked with the sign-in form's username and password (no button).
    #[serde(default)]
    pub kind: UpstreamKind,

    /// The provider's issuer, exactly as its discovery document and ID tokens say it.
    /// For `oauth2`, the provider's URL (compared with an `iss` on the callback, should
    /// it send one). Required, except for `ldap` (which has none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 512))]
    pub issuer: String,

    /// The endpoints of an `oauth2` provider (required for it, refused for `oidc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Endpoints>,

    /// The directory of an `ldap` provider (required for it, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<LdapDirectory>,

    /// The discovery document's URL when it is not at
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub discovery_url: Option<String>,

    /// The client id registered at the provider. Required, except for `ldap`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 255))]
    pub client_id: String,

    /// The Secret (in the auth server's namespace) holding the client secret, and its
    /// key. Never inline: the auth pods read it from the mounted Secret at each use, so
    /// a rotated Secret is picked up without a restart. The IdentityTenant reports
    /// Ready=False, reason UpstreamSecretMissing, while it does not exist. Required,
    /// except for `ldap` (whose password is `ldap.bindPasswordRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,

    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub token_endpoint_auth_method: UpstreamClientAuth,

    /// Scopes asked of the provider; `openid` is always sent.
    /// Default: [openid, email, profile].
    #[serde(default = "default_scopes")]
    #[schemars(length(max = 32))]
    pub scopes: Vec<String>,

    /// Create a user at the first sign-in of an upstream account that matches none.
    /// Off: only accounts linked before sign in. Default: true.
    #[serde(default = "default_true")]
    pub jit_provisioning: bool,

    /// Offer to link an upstream account to the user with the same e-mail address —
    /// only when the provider says the address is verified (`email_verified: true`),
    /// and only after the user proves that account with its password or one of its
    /// passkeys. Default: true.
    #[serde(default = "default_true")]
    pub link_by_email: bool,

    /// Also read the provider's userinfo endpoint (its `sub` must match). Default: false.
    #[serde(default)]
    pub userinfo: bool,

    /// Which upstream claims fill the user's profile and which are forwarded.
    #[serde(default)]
    pub claims: ClaimMapping,

    /// Keep the provider's tokens of each linked account's last sign-in, sealed with
    /// AES-256-GCM under the auth server's ENCRYPTION_KEY (re-sealed by `authserver
    /// keys reencrypt`), so that the `tokenReaders` can call the provider's APIs as the
    /// user. Not for `kind: ldap`. Default: false (no upstream token is kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_tokens: bool,

    /// Client ids of this tenant whose access tokens (issued for a user) may read that
    /// user's kept upstream access token at `{issuer}/upstream/{id}/token`. Needs
    /// `storeTokens`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub token_readers: Vec<String>,
}

/// What kind of upstream a provider is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamKind {
    #[default]
    Oidc,
    Oauth2,
    Ldap,
}

/// An LDAP / Active Directory directory. The sign-in form's username is searched
/// with the service account, then the password is checked by binding as the entry
/// found (it is never stored). Active Directory: `url: ldaps://dc1.corp.example:636`,
/// `userFilter: (&(objectClass=user)(sAMAccountName={username}))`,
/// `subjectAttribute: objectGUID`, `usernameAttribute: sAMAccountName`,
/// `groupsAttribute: memberOf`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// Independent switches, each its own API field.
#[allow(clippy::struct_excessive_bools)]
pub struct LdapDirectory {
    /// `ldap://host[:389]` or `ldaps://host[:636]` (scheme, host and port only).
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^ldaps?://"))]
    pub url: String,
    /// Upgrade the `ldap://` connection with StartTLS before anything is sent.
    /// Default: false.
    #[serde(default)]
    pub start_tls: bool,
    /// A Secret with the CA certificate(s), PEM, the directory's certificate must chain
    /// to (LDAPS and StartTLS); key default `ca.crt`. Without it: the system's roots.
    /// Mounted like the other upstream Secrets (chart `federation.secrets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_ref: Option<CaSecretRef>,
    /// The service account's DN, which searches for users.
    #[schemars(length(min = 1, max = 1024))]
    pub bind_dn: String,
    /// The Secret holding the service account's password (key default
    /// `bind-password`). Never inline. Ready=False, reason UpstreamSecretMissing, while
    /// it does not exist.
    pub bind_password_ref: BindPasswordRef,
    /// Where users are searched (subtree).
    #[schemars(length(min = 1, max = 1024))]
    pub user_base_dn: String,
    /// The search filter; `{username}` becomes the typed username, escaped as RFC
    /// 4515 requires (no LDAP injection). Exactly one entry must match, otherwise the
    /// sign-in fails as a wrong password would. Default: `(uid={username})`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub user_filter: Option<String>,
    /// The attribute that identifies an account for good (the key of its link; must
    /// survive renames). Default: `entryUUID` (OpenLDAP); Active Directory: `objectGUID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_attribute: Option<String>,
    /// The attribute a provisioned user's username comes from. Default: `uid`
    /// (Active Directory: `sAMAccountName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_attribute: Option<String>,
    /// The e-mail address attribute. Default: `mail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_attribute: Option<String>,
    /// The full name attribute. Default: `cn` (Active Directory: `displayName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_attribute: Option<String>,
    /// Groups from an attribute of the user's entry listing group DNs (`memberOf`);
    /// each group's name is its DN's first RDN value (`cn=devs,…` → `devs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_attribute: Option<String>,
    /// Groups from a search under this DN with `groupFilter` (instead of
    /// `groupsAttribute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_base_dn: Option<String>,
    /// The group search filter; `{dn}` becomes the user's DN (escaped), for example
    /// `(&(objectClass=groupOfNames)(member={dn}))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_filter: Option<String>,
    /// The attribute naming a group found by the search. Default: `cn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name_attribute: Option<String>,
    /// The claim the group names go into, forwarded into ID tokens and userinfo (e.g.
    /// for kube-apiserver's `--oidc-groups-claim`). Refreshed at every sign-in.
    /// Default: `groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// Whether the directory's e-mail addresses count as verified: the user's
    /// `email_verified`, and linking to the local account with the same address (after
    /// its password). Default: false.
    #[serde(default)]
    pub email_verified: bool,
    /// Limit for connecting and for each LDAP operation, in seconds (1-60). Default: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: Option<u64>,
    /// Most service-account connections each auth pod keeps open (1-64). Default: 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub pool_size: Option<u32>,
}

/// The Secret key of an LDAP service account's password.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BindPasswordRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret. Default: `bind-password`.
    #[serde(default = "default_bind_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The Secret key of a directory's CA certificate(s).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret. Default: `ca.crt`.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_bind_password_key() -> String {
    "bind-password".into()
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// Endpoints of an OAuth 2.0 provider without OpenID Connect. GitHub:
/// `https://github.com/login/oauth/authorize`, `https://github.com/login/oauth/access_token`,
/// `https://api.github.com/user`, `…/user/emails`, `…/user/orgs`, `…/user/teams`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Endpoints {
    /// Where the browser is sent to sign in.
    #[schemars(length(min = 1, max = 512))]
    pub authorization_endpoint: String,
    /// Where the code is redeemed for an access token.
    #[schemars(length(min = 1, max = 512))]
    pub token_endpoint: String,
    /// The user API (a JSON object) read with the access token; `claims` maps it.
    #[schemars(length(min = 1, max = 512))]
    pub user_url: String,
    /// The user's addresses (`[{email, primary, verified}]`): the primary verified one
    /// becomes the user's verified address. Without it no address counts as verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub emails_url: Option<String>,
    /// The user's organisations (`[{login}]`): the claim `orgs`, and the
    /// `allowedOrgs` check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub orgs_url: Option<String>,
    /// Only members of one of these organisations — or of one of `allowedTeams` —
    /// sign in (case-insensitive); both empty: anyone with an account. Needs `orgsUrl`
    /// (GitHub: the `read:org` scope).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_orgs: Vec<String>,
    /// The user's teams (`[{slug, organization: {login}}]`, GitHub:
    /// `https://api.github.com/user/teams`): the claim `teams` (`org/slug`), and the
    /// `allowedTeams` check. Lists are read page by page (`Link: rel="next"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub teams_url: Option<String>,
    /// Only members of one of these teams, as `org/slug` — or of one of `allowedOrgs`
    /// — sign in (case-insensitive). Needs `teamsUrl` (GitHub: the `read:org` scope).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_teams: Vec<String>,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret. Default: `client-secret`.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// How the auth server authenticates at the provider's token endpoint.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// Claim mapping of an upstream provider.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    /// The claim that identifies an `oauth2` provider's account (a string or an
    /// integer; GitHub: `id`). OpenID providers always use the ID token's `sub`.
    /// Default: sub.
    #[serde(default = "default_subject_claim")]
    pub subject: String,
    /// The claim a provisioned user's username comes from. Default: preferred_username.
    #[serde(default = "default_username_claim")]
    pub username: String,
    /// The e-mail address claim. Default: email.
    #[serde(default = "default_email_claim")]
    pub email: String,
    /// The full name claim. Default: name.
    #[serde(default = "default_name_claim")]
    pub name: String,
    /// Upstream claims copied into the tenant's ID tokens and userinfo (with the
    /// `profile` scope) under the same name, for example `groups` for Kubernetes RBAC.
    /// Refreshed at every upstream sign-in. Claims Gatehouse sets itself (`sub`, `iss`,
    /// `email`, `amr` …) cannot be forwarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub forward: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            subject: default_subject_claim(),
            username: default_username_claim(),
            email: default_email_claim(),
            name: default_name_claim(),
            forward: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_secret_key() -> String {
    "client-secret".into()
}

fn default_subject_claim() -> String {
    "sub".into()
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_email_claim() -> String {
    "email".into()
}

fn default_name_claim() -> String {
    "name".into()
}

impl FederationPolicy {
    /// The auth server's `settings.federation`: the same fields, each
    /// `clientSecretRef` (and `ldap.bindPasswordRef`, `ldap.caRef`) replaced by the
    /// mounted file the auth pods read.
    pub fn settings(&self) -> serde_json::Value {
        let providers: Vec<serde_json::Value> = self
            .providers
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("clientSecretRef");
                    if let Some(r) = &p.client_secret_ref {
                        m.insert(
                            "clientSecret".into(),
                            serde_json::json!({ "file": r.mounted_path() }),
                        );
                    }
                    if p.kind == UpstreamKind::Ldap {
                        // The auth server's defaults apply to a directory, not these.
                        for unused in ["scopes", "tokenEndpointAuthMethod"] {
                            m.remove(unused);
                        }
                    }
                }
                if let (Some(d), Some(l)) = (
                    &p.ldap,
                    v.get_mut("ldap").and_then(serde_json::Value::as_object_mut),
                ) {
                    l.remove("bindPasswordRef");
                    l.remove("caRef");
                    l.insert(
                        "bindPassword".into(),
                        serde_json::json!({ "file": mounted(&d.bind_password_ref.name, &d.bind_password_ref.key) }),
                    );
                    if let Some(ca) = &d.ca_ref {
                        l.insert("caFile".into(), mounted(&ca.name, &ca.key).into());
                    }
                }
                v
            })
            .collect();
        serde_json::json!({
            "providers": providers,
            "loginHintDomains": self.login_hint_domains,
            "skipPasswordForm": self.skip_password_form,
            "requireSecondFactor": self.require_second_factor,
        })
    }

    /// The Secrets the providers reference (client secrets, bind passwords, CAs), each
    /// once.
    pub fn secret_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for p in &self.providers {
            if let Some(r) = &p.client_secret_ref {
                names.push(&r.name);
            }
            if let Some(d) = &p.ldap {
                names.push(&d.bind_password_ref.name);
                if let Some(ca) = &d.ca_ref {
                    names.push(&ca.name);
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Where the auth pods find `key` of the upstream Secret `name`.
fn mounted(name: &str, key: &str) -> String {
    format!("{UPSTREAM_SECRETS_DIR}/{name}/{key}")
}

impl SecretKeyRef {
    /// Where the auth pods find this key.
    pub fn mounted_path(&self) -> String {
        mounted(&self.name, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_refs_become_mounted_files_and_defaults_are_filled_in() {
        let f: FederationPolicy = serde_json::from_value(json!({
            "providers": [{"id": "corp", "displayName": "Corp", "issuer": "https://id.corp.example",
                           "clientId": "gh", "clientSecretRef": {"name": "corp-oidc"},
                           "claims": {"forward": ["groups"]}}],
            "loginHintDomains": {"corp.example": "corp"}
        }))
        .unwrap();
        assert_eq!(f.secret_names(), ["corp-oidc"]);
        let s = f.settings();
        let p = &s["providers"][0];
        assert_eq!(
            p["clientSecret"],
            json!({"file": "/var/run/gatehouse/upstream/corp-oidc/client-secret"})
        );
        assert!(p.get("clientSecretRef").is_none());
        assert_eq!(p["scopes"], json!(["openid", "email", "profile"]));
        assert_eq!(p["jitProvisioning"], true);
        assert_eq!(p["tokenEndpointAuthMethod"], "client_secret_basic");
        assert_eq!(p["claims"]["forward"], json!(["groups"]));
        assert_eq!(p["kind"], "oidc");
        assert!(p.get("oauth2").is_none());
        assert_eq!(s["loginHintDomains"], json!({"corp.example": "corp"}));
    }

    #[test]
    fn a_directorys_bind_password_and_ca_become_mounted_files() {
        let f: FederationPolicy = serde_json::from_value(json!({
            "providers": [{"id": "corp-ad", "displayName": "Corp AD", "kind": "ldap",
                "ldap": {"url": "ldaps://dc1.corp.example:636", "bindDn": "CN=svc,DC=corp",
                         "bindPasswordRef": {"name": "corp-ldap"},
                         "caRef": {"name": "corp-ca"},
                         "userBaseDn": "DC=corp", "groupsAttribute": "memberOf",
                         "subjectAttribute": "objectGUID"}}]
        }))
        .unwrap();
        assert_eq!(f.secret_names(), ["corp-ca", "corp-ldap"]);
        let s = f.settings();
        let p = &s["providers"][0];
        assert!(p.get("clientSecret").is_none() && p.get("issuer").is_none());
        assert!(p.get("scopes").is_none(), "{p}");
        assert_eq!(
            p["ldap"]["bindPassword"],
            json!({"file": "/var/run/gatehouse/upstream/corp-ldap/bind-password"})
        );
        assert_eq!(
            p["ldap"]["caFile"],
            "/var/run/gatehouse/upstream/corp-ca/ca.crt"
        );
        assert!(p["ldap"].get("bindPasswordRef").is_none());
        assert_eq!(p["ldap"]["subjectAttribute"], "objectGUID");
        assert!(
            p["ldap"].get("userFilter").is_none(),
            "the server's default"
        );
        assert_eq!(p["kind"], "ldap");
    }
}
