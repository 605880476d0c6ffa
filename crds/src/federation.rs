//! `IdentityTenant.spec.federation`: upstream identity providers the tenant's users may
//! sign in with. The operator passes it to the auth server as the tenant's
//! `settings.federation`, with each `clientSecretRef` turned into the path where the
//! auth pods have that Secret mounted (see `charts/gatehouse`, `federation.secrets`).

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
    /// The providers, in the order the sign-in page lists them ("Sign in with …").
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
/// Dex, another Gatehouse …) or OAuth 2.0 with a user API (GitHub). Register
/// `<issuer of this tenant>/login/upstream/callback` as the redirect URI there.
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
    /// user API in `oauth2`.
    #[serde(default)]
    pub kind: UpstreamKind,

    /// The provider's issuer, exactly as its discovery document and ID tokens say it.
    /// For `oauth2`, the provider's URL (compared with an `iss` on the callback, should
    /// it send one).
    #[schemars(length(min = 1, max = 512))]
    pub issuer: String,

    /// The endpoints of an `oauth2` provider (required for it, refused for `oidc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Endpoints>,

    /// The discovery document's URL when it is not at
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub discovery_url: Option<String>,

    /// The client id registered at the provider.
    #[schemars(length(min = 1, max = 255))]
    pub client_id: String,

    /// The Secret (in the auth server's namespace) holding the client secret, and its
    /// key. Never inline: the auth pods read it from the mounted Secret at each use, so
    /// a rotated Secret is picked up without a restart. The IdentityTenant reports
    /// Ready=False, reason UpstreamSecretMissing, while it does not exist.
    pub client_secret_ref: SecretKeyRef,

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
    /// and only after the user enters that account's password. Default: true.
    #[serde(default = "default_true")]
    pub link_by_email: bool,

    /// Also read the provider's userinfo endpoint (its `sub` must match). Default: false.
    #[serde(default)]
    pub userinfo: bool,

    /// Which upstream claims fill the user's profile and which are forwarded.
    #[serde(default)]
    pub claims: ClaimMapping,
}

/// What kind of upstream a provider is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamKind {
    #[default]
    Oidc,
    Oauth2,
}

/// Endpoints of an OAuth 2.0 provider without OpenID Connect. GitHub:
/// `https://github.com/login/oauth/authorize`, `https://github.com/login/oauth/access_token`,
/// `https://api.github.com/user`, `…/user/emails`, `…/user/orgs`.
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
    /// Only members of one of these organisations sign in (case-insensitive); empty:
    /// anyone with an account. Needs `orgsUrl` (GitHub: the `read:org` scope).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_orgs: Vec<String>,
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
    /// `clientSecretRef` replaced by the mounted file the auth pods read.
    pub fn settings(&self) -> serde_json::Value {
        let providers: Vec<serde_json::Value> = self
            .providers
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("clientSecretRef");
                    m.insert(
                        "clientSecret".into(),
                        serde_json::json!({ "file": p.client_secret_ref.mounted_path() }),
                    );
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

    /// The Secrets the providers reference, each once.
    pub fn secret_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .providers
            .iter()
            .map(|p| p.client_secret_ref.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl SecretKeyRef {
    /// Where the auth pods find this key.
    pub fn mounted_path(&self) -> String {
        format!("{UPSTREAM_SECRETS_DIR}/{}/{}", self.name, self.key)
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
}
