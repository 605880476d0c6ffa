//! Federation policy: the upstream identity providers a tenant's users may sign in
//! with, in the tenant's `settings.federation` (the IdentityTenant's camelCase):
//! OpenID Connect providers, OAuth 2.0 providers with a user API (GitHub-style,
//! `kind: oauth2`), and LDAP / Active Directory directories (`kind: ldap`, see
//! [`super::ldap`]), which are signed in to with the ordinary password form.
//!
//! An upstream's client secret is never part of the policy: `clientSecret` names where
//! to read it (an environment variable or a file of the auth server, e.g. a mounted
//! Secret), and is read when it is used, so a rotated file is picked up without a
//! restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ldap::LdapDirectory;

/// Most providers a tenant may have (each is a button on the sign-in page).
pub const MAX_PROVIDERS: usize = 16;
/// Most claims a provider may forward into our tokens.
pub const MAX_FORWARDED: usize = 16;

/// A tenant's upstream identity providers and how the sign-in page uses them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct FederationPolicy {
    /// The providers, in the order the sign-in page lists them.
    pub providers: Vec<UpstreamProvider>,
    /// Home-realm discovery: a `login_hint` whose domain (after the last `@`) is a key
    /// here goes straight to that provider, without showing the sign-in form.
    pub login_hint_domains: BTreeMap<String, String>,
    /// With exactly one provider, the sign-in form is skipped and the browser goes to
    /// the provider at once.
    pub skip_password_form: bool,
    /// After every upstream sign-in, ask for our own second factor (users without one
    /// enrol first). Without it the password's rule applies: an enrolled factor, or one
    /// the tenant or the request requires.
    pub require_second_factor: bool,
}

/// What kind of upstream a provider is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamKind {
    /// OpenID Connect (from the issuer's discovery document).
    #[default]
    Oidc,
    /// OAuth 2.0 without OpenID Connect (GitHub-style): the code buys an access token
    /// for a user API, whose answer the claim mapping reads (`oauth2`).
    Oauth2,
    /// An LDAP directory (`ldap`): no button, no redirect — the sign-in form's username
    /// and password are checked by binding to the directory.
    Ldap,
}

impl UpstreamKind {
    /// The settings' name: `oidc`, `oauth2` or `ldap`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Oauth2 => "oauth2",
            Self::Ldap => "ldap",
        }
    }
}

/// The endpoints of an OAuth 2.0 provider without OpenID Connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Endpoints {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// The user API (a JSON object: id, login, name, …) read with the access token.
    pub user_url: String,
    /// A list of the user's addresses (`[{email, primary, verified}]`, GitHub's
    /// `/user/emails`): the primary verified one becomes the user's verified address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails_url: Option<String>,
    /// A list of the user's organisations (`[{login}]`, GitHub's `/user/orgs`): given
    /// to the claim mapping as the claim `orgs`, and checked against `allowedOrgs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orgs_url: Option<String>,
    /// Only members of one of these organisations — or of one of `allowedTeams` —
    /// sign in (case-insensitive); both empty: anyone with an account. Needs `orgsUrl`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_orgs: Vec<String>,
    /// A list of the user's teams (`[{slug, organization: {login}}]`, GitHub's
    /// `/user/teams`): given to the claim mapping as the claim `teams` (`org/slug`),
    /// and checked against `allowedTeams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_url: Option<String>,
    /// Only members of one of these teams (`org/slug`) — or of one of `allowedOrgs` —
    /// sign in (case-insensitive). Needs `teamsUrl`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_teams: Vec<String>,
}

/// How we authenticate at the upstream's token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// One upstream identity provider.
// Independent switches, each documented in the CRD.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamProvider {
    /// Stable id: the value of the sign-in page's button, the key of linked accounts.
    /// Renaming it orphans every link made with it.
    pub id: String,
    /// What the button says ("Sign in with {displayName}").
    pub display_name: String,
    #[serde(default)]
    pub kind: UpstreamKind,
    /// The upstream's issuer; it must equal the `issuer` of its discovery document and
    /// the `iss` of its ID tokens. For `oauth2`, the provider's URL: compared with an
    /// `iss` on the callback, should it send one. Not for `ldap`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// The endpoints of an `oauth2` provider (required for it, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Endpoints>,
    /// The directory of an `ldap` provider (required for it, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<LdapDirectory>,
    /// Where the discovery document is, when not at
    /// `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// Not for `ldap`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// Not for `ldap` (its bind password is `ldap.bindPassword`).
    #[serde(default, skip_serializing_if = "SecretSource::is_empty")]
    pub client_secret: SecretSource,
    #[serde(default)]
    pub token_endpoint_auth_method: UpstreamClientAuth,
    /// Scopes asked of the upstream (`openid` is always sent).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Create a local user at the first sign-in of an upstream account that matches
    /// none (just-in-time provisioning). Off: only linked accounts sign in.
    #[serde(default = "default_true")]
    pub jit_provisioning: bool,
    /// Offer to link an upstream account to the local user with the same e-mail
    /// address — only when the upstream says the address is verified, and only after
    /// the user proves the local account with its password.
    #[serde(default = "default_true")]
    pub link_by_email: bool,
    /// Also read the userinfo endpoint (its `sub` must be the ID token's).
    #[serde(default)]
    pub userinfo: bool,
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Keep the upstream's tokens of each link's last sign-in, sealed under the
    /// ENCRYPTION_KEY, for the `tokenReaders` to call the upstream's APIs with.
    #[serde(default)]
    pub store_tokens: bool,
    /// Client ids of ours whose access tokens (for a user) may read that user's kept
    /// upstream access token at `{issuer}/upstream/{id}/token`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_readers: Vec<String>,
}

/// Where a secret is read from. Exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the auth server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file of the auth server (a mounted Kubernetes Secret, for example); trailing
    /// whitespace is ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl SecretSource {
    /// Names no source at all (an `ldap` provider's unused `clientSecret`).
    pub fn is_empty(&self) -> bool {
        self.env.is_none() && self.file.is_none()
    }
}

/// Which upstream claims fill our user's profile, and which are forwarded as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMapping {
    /// The claim that identifies the upstream account (`oauth2` only: an OpenID
    /// provider's is always the ID token's `sub`). A string or an integer (GitHub: `id`).
    pub subject: String,
    /// The claim a provisioned user's username comes from.
    pub username: String,
    pub email: String,
    pub name: String,
    /// Upstream claims copied into our ID tokens and userinfo (with the `profile`
    /// scope) under the same name, e.g. `groups` for Kubernetes RBAC. Refreshed at
    /// every upstream sign-in.
    pub forward: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            username: "preferred_username".into(),
            email: "email".into(),
            name: "name".into(),
            forward: Vec::new(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_true() -> bool {
    true
}

/// Claims that are ours to set: an upstream may not forward them into our tokens.
const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "sid",
    "at_hash",
    "c_hash",
    "email",
    "email_verified",
    "preferred_username",
    "updated_at",
    "cnf",
    "scope",
    "client_id",
];

impl FederationPolicy {
    /// The provider with this id.
    pub fn provider(&self, id: &str) -> Option<&UpstreamProvider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// The provider with this id that the browser is sent to (not a directory).
    pub fn redirecting_provider(&self, id: &str) -> Option<&UpstreamProvider> {
        self.provider(id).filter(|p| p.kind != UpstreamKind::Ldap)
    }

    /// The providers the sign-in page shows as buttons (directories use the form).
    pub fn buttons(&self) -> impl Iterator<Item = &UpstreamProvider> {
        self.providers
            .iter()
            .filter(|p| p.kind != UpstreamKind::Ldap)
    }

    /// The directories the password form is checked against, in order.
    pub fn directories(&self) -> impl Iterator<Item = (&UpstreamProvider, &LdapDirectory)> {
        self.providers
            .iter()
            .filter_map(|p| p.ldap.as_ref().map(|d| (p, d)))
    }

    /// The provider a `login_hint` names by its domain (home-realm discovery).
    pub fn provider_for_hint(&self, login_hint: &str) -> Option<&UpstreamProvider> {
        let (_, domain) = login_hint.rsplit_once('@')?;
        let id = self.login_hint_domains.get(&domain.to_ascii_lowercase())?;
        self.redirecting_provider(id)
    }

    /// The one provider the sign-in form is skipped for, if the tenant says so (never a
    /// directory: it needs the form).
    pub fn only_provider(&self) -> Option<&UpstreamProvider> {
        match self.providers.as_slice() {
            [one] if self.skip_password_form && one.kind != UpstreamKind::Ldap => Some(one),
            _ => None,
        }
    }

    /// Checks the providers; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.providers.len() > MAX_PROVIDERS {
            return Err(format!(
                "federation.providers: at most {MAX_PROVIDERS} providers"
            ));
        }
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("federation.providers[{i}]");
            p.check().map_err(|e| format!("{at}.{e}"))?;
            if self.providers[..i].iter().any(|q| q.id == p.id) {
                return Err(format!("{at}.id: {:?} is used twice", p.id));
            }
        }
        for (domain, id) in &self.login_hint_domains {
            if domain.is_empty() || domain.contains('@') || *domain != domain.to_ascii_lowercase() {
                return Err(format!(
                    "federation.loginHintDomains: {domain:?} is not a lowercase domain"
                ));
            }
            if self.redirecting_provider(id).is_none() {
                return Err(format!(
                    "federation.loginHintDomains.{domain}: no provider (other than a directory) has the id {id:?}"
                ));
            }
        }
        Ok(())
    }
}

impl UpstreamProvider {
    fn check(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 63
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(format!(
                "id: {:?} must be 1-63 lowercase letters, digits and '-'",
                self.id
            ));
        }
        if self.display_name.trim().is_empty() || self.display_name.len() > 100 {
            return Err("displayName: must be 1 to 100 characters".into());
        }
        self.check_claims()?;
        if !self.token_readers.is_empty() && !self.store_tokens {
            return Err("tokenReaders: needs storeTokens".into());
        }
        if self.token_readers.len() > 32
            || self
                .token_readers
                .iter()
                .any(|c| c.is_empty() || c.len() > 255)
        {
            return Err("tokenReaders: at most 32 client ids of 1 to 255 characters".into());
        }
        if self.kind == UpstreamKind::Ldap {
            return self.check_directory();
        }
        if self.ldap.is_some() {
            return Err("ldap: only for kind ldap".into());
        }
        check_url("issuer", &self.issuer)?;
        if let Some(d) = &self.discovery_url {
            check_url("discoveryUrl", d)?;
        }
        if self.client_id.is_empty() || self.client_id.len() > 255 {
            return Err("clientId: must be 1 to 255 characters".into());
        }
        match (&self.client_secret.env, &self.client_secret.file) {
            (Some(v), None) | (None, Some(v)) if !v.is_empty() => {}
            _ => {
                return Err(
                    "clientSecret: name exactly one of env (a variable) or file (a path)".into(),
                );
            }
        }
        if self
            .scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err("scopes: each scope is one word".into());
        }
        match (self.kind, &self.oauth2) {
            (UpstreamKind::Oidc, None) | (UpstreamKind::Ldap, _) => {}
            (UpstreamKind::Oidc, Some(_)) => {
                return Err("oauth2: only for kind oauth2".into());
            }
            (UpstreamKind::Oauth2, None) => {
                return Err("oauth2: kind oauth2 needs its endpoints".into());
            }
            (UpstreamKind::Oauth2, Some(o)) => {
                check_url("oauth2.authorizationEndpoint", &o.authorization_endpoint)?;
                check_url("oauth2.tokenEndpoint", &o.token_endpoint)?;
                check_url("oauth2.userUrl", &o.user_url)?;
                for (field, url) in [
                    ("oauth2.emailsUrl", &o.emails_url),
                    ("oauth2.orgsUrl", &o.orgs_url),
                    ("oauth2.teamsUrl", &o.teams_url),
                ] {
                    if let Some(u) = url {
                        check_url(field, u)?;
                    }
                }
                if !o.allowed_orgs.is_empty() && o.orgs_url.is_none() {
                    return Err("oauth2.allowedOrgs: needs oauth2.orgsUrl".into());
                }
                if !o.allowed_teams.is_empty() && o.teams_url.is_none() {
                    return Err("oauth2.allowedTeams: needs oauth2.teamsUrl".into());
                }
                if o.allowed_teams.iter().any(|t| {
                    !matches!(t.split_once('/'), Some((org, slug)) if !org.is_empty() && !slug.is_empty() && !slug.contains('/'))
                }) {
                    return Err("oauth2.allowedTeams: each team is org/slug".into());
                }
            }
        }
        Ok(())
    }

    fn check_claims(&self) -> Result<(), String> {
        let c = &self.claims;
        for (name, v) in [
            ("subject", &c.subject),
            ("username", &c.username),
            ("email", &c.email),
            ("name", &c.name),
        ] {
            if v.is_empty() {
                return Err(format!("claims.{name}: name a claim"));
            }
        }
        if c.forward.len() > MAX_FORWARDED {
            return Err(format!("claims.forward: at most {MAX_FORWARDED} claims"));
        }
        if let Some(r) = c
            .forward
            .iter()
            .find(|f| f.is_empty() || RESERVED_CLAIMS.contains(&f.as_str()))
        {
            return Err(format!(
                "claims.forward: {r:?} is set by Gatehouse itself and cannot be forwarded"
            ));
        }
        Ok(())
    }

    /// A directory has its `ldap` block and none of the redirecting providers' fields.
    fn check_directory(&self) -> Result<(), String> {
        let Some(d) = &self.ldap else {
            return Err("ldap: kind ldap needs its directory".into());
        };
        for (field, set) in [
            ("issuer", !self.issuer.is_empty()),
            ("clientId", !self.client_id.is_empty()),
            ("clientSecret", !self.client_secret.is_empty()),
            ("oauth2", self.oauth2.is_some()),
            ("discoveryUrl", self.discovery_url.is_some()),
            ("userinfo", self.userinfo),
            ("storeTokens", self.store_tokens),
        ] {
            if set {
                return Err(format!("{field}: not for kind ldap"));
            }
        }
        d.check()?;
        if RESERVED_CLAIMS.contains(&d.groups_claim.as_str()) || d.groups_claim.is_empty() {
            return Err(format!(
                "ldap.groupsClaim: {:?} is set by Gatehouse itself",
                d.groups_claim
            ));
        }
        Ok(())
    }

    /// Where the discovery document is.
    pub fn discovery_url(&self) -> String {
        self.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            )
        })
    }
}

/// An absolute http(s) URL without a fragment. Whether plain http may be fetched is
/// the outbound policy's call (`outbound.allow_http`), at fetch time.
fn check_url(field: &str, value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{field}: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(format!("{field}: must be an https URL"));
    }
    if url.fragment().is_some() {
        return Err(format!("{field}: must not have a fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> serde_json::Value {
        json!({"id": "corp", "displayName": "Corp", "issuer": "https://id.corp.example",
               "clientId": "gatehouse", "clientSecret": {"file": "/secrets/corp"}})
    }

    fn parse(v: serde_json::Value) -> Result<FederationPolicy, String> {
        let p: FederationPolicy = serde_json::from_value(v).map_err(|e| e.to_string())?;
        p.check().map(|()| p)
    }

    #[test]
    fn a_provider_gets_the_documented_defaults() {
        let p = parse(json!({"providers": [provider()]})).unwrap();
        let corp = p.provider("corp").unwrap();
        assert_eq!(corp.kind, UpstreamKind::Oidc);
        assert_eq!(corp.scopes, ["openid", "email", "profile"]);
        assert!(corp.jit_provisioning && corp.link_by_email && !corp.userinfo);
        assert_eq!(corp.claims.username, "preferred_username");
        assert_eq!(
            corp.discovery_url(),
            "https://id.corp.example/.well-known/openid-configuration"
        );
        assert_eq!(
            corp.token_endpoint_auth_method,
            UpstreamClientAuth::ClientSecretBasic
        );
        assert!(!p.skip_password_form && !p.require_second_factor);
    }

    #[test]
    fn token_readers_need_kept_tokens_and_a_directory_keeps_none() {
        let mut p = provider();
        p["tokenReaders"] = json!(["app"]);
        let e = parse(json!({"providers": [p.clone()]})).unwrap_err();
        assert!(e.contains("tokenReaders: needs storeTokens"), "{e}");
        p["storeTokens"] = json!(true);
        let ok = parse(json!({"providers": [p.clone()]})).unwrap();
        assert_eq!(ok.provider("corp").unwrap().token_readers, ["app"]);
        p["tokenReaders"] = json!([""]);
        assert!(parse(json!({"providers": [p]})).is_err());
        let directory = json!({"id": "ad", "displayName": "AD", "kind": "ldap", "storeTokens": true,
            "ldap": {"url": "ldap://dc", "bindDn": "cn=svc", "bindPassword": {"env": "P"},
                     "userBaseDn": "dc=corp"}});
        let e = parse(json!({"providers": [directory]})).unwrap_err();
        assert!(e.contains("storeTokens: not for kind ldap"), "{e}");
    }

    #[test]
    fn a_secret_is_a_reference_never_a_value() {
        let mut inline = provider();
        inline["clientSecret"] = json!("s3cret");
        assert!(parse(json!({"providers": [inline]})).is_err());
        let mut value = provider();
        value["clientSecret"] = json!({"value": "s3cret"});
        assert!(parse(json!({"providers": [value]})).is_err());
        let mut both = provider();
        both["clientSecret"] = json!({"env": "X", "file": "/y"});
        let e = parse(json!({"providers": [both]})).unwrap_err();
        assert!(e.contains("providers[0].clientSecret"), "{e}");
    }

    #[test]
    fn home_realms_name_existing_providers_and_hints_find_them() {
        let p = parse(json!({"providers": [provider()],
                             "loginHintDomains": {"corp.example": "corp"}}))
        .unwrap();
        assert_eq!(
            p.provider_for_hint("Ann@Corp.Example")
                .map(|p| p.id.as_str()),
            Some("corp")
        );
        assert!(p.provider_for_hint("ann@other.example").is_none());
        assert!(p.provider_for_hint("ann").is_none());
        let e = parse(json!({"providers": [provider()],
                             "loginHintDomains": {"corp.example": "nope"}}))
        .unwrap_err();
        assert!(e.contains("loginHintDomains.corp.example"), "{e}");
    }

    #[test]
    fn bad_providers_name_the_field() {
        let twice = parse(json!({"providers": [provider(), provider()]})).unwrap_err();
        assert!(twice.contains("providers[1].id"), "{twice}");
        let mut reserved = provider();
        reserved["claims"] = json!({"forward": ["sub"]});
        let e = parse(json!({"providers": [reserved]})).unwrap_err();
        assert!(e.contains("claims.forward"), "{e}");
        let mut bad_id = provider();
        bad_id["id"] = json!("Corp!");
        assert!(
            parse(json!({"providers": [bad_id]}))
                .unwrap_err()
                .contains(".id")
        );
        let mut bad_url = provider();
        bad_url["issuer"] = json!("ftp://x");
        assert!(
            parse(json!({"providers": [bad_url]}))
                .unwrap_err()
                .contains("issuer")
        );
    }

    #[test]
    fn an_oauth2_provider_needs_its_endpoints_and_orgs_need_the_orgs_api() {
        let mut github = provider();
        github["kind"] = json!("oauth2");
        let e = parse(json!({"providers": [github.clone()]})).unwrap_err();
        assert!(e.contains("providers[0].oauth2"), "{e}");
        github["oauth2"] = json!({"authorizationEndpoint": "https://github.com/login/oauth/authorize",
            "tokenEndpoint": "https://github.com/login/oauth/access_token",
            "userUrl": "https://api.github.com/user", "allowedOrgs": ["acme"]});
        let e = parse(json!({"providers": [github.clone()]})).unwrap_err();
        assert!(e.contains("allowedOrgs"), "{e}");
        github["oauth2"]["orgsUrl"] = json!("https://api.github.com/user/orgs");
        let p = parse(json!({"providers": [github]})).unwrap();
        assert_eq!(p.providers[0].kind, UpstreamKind::Oauth2);
        let mut oidc = provider();
        oidc["oauth2"] = json!({"authorizationEndpoint": "https://a.example", "tokenEndpoint": "https://a.example",
            "userUrl": "https://a.example"});
        assert!(
            parse(json!({"providers": [oidc]}))
                .unwrap_err()
                .contains("oauth2")
        );
    }

    fn directory() -> serde_json::Value {
        json!({"id": "corp-dir", "displayName": "Corp directory", "kind": "ldap",
               "ldap": {"url": "ldaps://dc1.corp.example", "bindDn": "cn=svc,dc=corp",
                        "bindPassword": {"file": "/secrets/ldap"}, "userBaseDn": "dc=corp"}})
    }

    #[test]
    fn a_directory_is_no_button_no_home_realm_and_never_skips_the_form() {
        let p = parse(json!({"providers": [directory(), provider()]})).unwrap();
        assert_eq!(p.providers[0].kind, UpstreamKind::Ldap);
        assert_eq!(
            p.buttons().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            ["corp"]
        );
        assert_eq!(p.directories().count(), 1);
        assert!(p.redirecting_provider("corp-dir").is_none());
        let only = parse(json!({"providers": [directory()], "skipPasswordForm": true})).unwrap();
        assert!(only.only_provider().is_none());
        let e = parse(json!({"providers": [directory()],
                             "loginHintDomains": {"corp.example": "corp-dir"}}))
        .unwrap_err();
        assert!(e.contains("loginHintDomains"), "{e}");
    }

    #[test]
    fn a_directory_has_its_block_and_none_of_the_redirect_fields() {
        let mut bare = directory();
        bare.as_object_mut().unwrap().remove("ldap");
        let e = parse(json!({"providers": [bare]})).unwrap_err();
        assert!(e.contains("providers[0].ldap"), "{e}");
        for (field, value) in [
            ("issuer", json!("https://x.example")),
            ("clientId", json!("x")),
            ("clientSecret", json!({"file": "/x"})),
        ] {
            let mut d = directory();
            d[field] = value;
            let e = parse(json!({"providers": [d]})).unwrap_err();
            assert!(e.contains(&format!("providers[0].{field}")), "{e}");
        }
        let mut ldap_on_oidc = provider();
        ldap_on_oidc["ldap"] = directory()["ldap"].clone();
        let e = parse(json!({"providers": [ldap_on_oidc]})).unwrap_err();
        assert!(e.contains("providers[0].ldap"), "{e}");
        let mut bad = directory();
        bad["ldap"]["url"] = json!("https://dc1.corp.example");
        let e = parse(json!({"providers": [bad]})).unwrap_err();
        assert!(e.contains("providers[0].ldap.url"), "{e}");
        let mut reserved = directory();
        reserved["ldap"]["groupsClaim"] = json!("sub");
        let e = parse(json!({"providers": [reserved]})).unwrap_err();
        assert!(e.contains("ldap.groupsClaim"), "{e}");
    }

    #[test]
    fn the_form_is_skipped_only_for_a_single_provider() {
        let one = parse(json!({"providers": [provider()], "skipPasswordForm": true})).unwrap();
        assert_eq!(one.only_provider().map(|p| p.id.as_str()), Some("corp"));
        let mut other = provider();
        other["id"] = json!("other");
        let two =
            parse(json!({"providers": [provider(), other], "skipPasswordForm": true})).unwrap();
        assert!(two.only_provider().is_none());
    }
}
