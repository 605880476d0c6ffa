//! `OidcClient`: a relying party registered with an IdentityTenant. The operator
//! registers it through the admin API and writes its credentials into a Secret in the
//! client's namespace (`CLIENT_ID`, `CLIENT_SECRET`, `ISSUER_URL`).

// `OidcClientSpec`'s registration metadata is a set of independent switches (RFC 7591
// names them so). Module-wide because KubeSchema derives a copy of the struct without
// its attributes.
#![allow(clippy::struct_excessive_bools)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::signing_key_set::SigningAlgorithm;
use crate::{DeletionPolicy, SubjectType, schema};

/// An OAuth 2.0 / OpenID Connect client of a tenant.
// clippy reads the repeated `type_ = …` of kube's printcolumn(…) as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "OidcClient",
    plural = "oidcclients",
    namespaced,
    shortname = "oidc",
    category = "gatehouse",
    status = "OidcClientStatus",
    derive = "PartialEq",
    doc = "An OAuth 2.0 / OpenID Connect client registered with an IdentityTenant. The operator writes its credentials to a Secret in the same namespace.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "ClientID", type_ = "string", json_path = ".status.clientId"),
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(self.spec.secretRef) || self.spec.secretRef.name != (has(self.spec.secretName) ? self.spec.secretName : self.metadata.name + '-oidc')")
        .message("secretRef must not name the Secret the operator generates (secretName, default <name>-oidc)")
        .field_path(".spec.secretRef.name"),
    validation = Rule::new("self.metadata.name.size() <= 191")
        .message("metadata.name: at most 191 characters, so that the default client id <namespace>-<name> fits its 255 and the Secret <name>-oidc its 253")
)]
#[x_kube(
    validation = Rule::new("self.clientType != 'public' || !has(self.secretRef)")
        .message("a public client has no secret: remove secretRef")
        .field_path(".secretRef"),
    validation = Rule::new("self.clientType != 'public' || !has(self.tokenEndpointAuthMethod) || self.tokenEndpointAuthMethod == 'none'")
        .message("a public client does not authenticate: tokenEndpointAuthMethod must be none")
        .field_path(".tokenEndpointAuthMethod"),
    validation = Rule::new("self.clientType != 'confidential' || !has(self.tokenEndpointAuthMethod) || self.tokenEndpointAuthMethod != 'none'")
        .message("a confidential client must authenticate: tokenEndpointAuthMethod none is for public clients")
        .field_path(".tokenEndpointAuthMethod"),
    validation = Rule::new("!has(self.secretRef) || !has(self.tokenEndpointAuthMethod) || self.tokenEndpointAuthMethod in ['client_secret_basic', 'client_secret_post']")
        .message("secretRef is used only with tokenEndpointAuthMethod client_secret_basic or client_secret_post")
        .field_path(".secretRef"),
    validation = Rule::new("!has(self.tokenEndpointAuthMethod) || self.tokenEndpointAuthMethod != 'private_key_jwt' || has(self.jwksUri)")
        .message("private_key_jwt needs jwksUri, where the client publishes its public keys")
        .field_path(".jwksUri")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.clientType != 'public' || !('client_credentials' in self.grantTypes)")
        .message("client_credentials needs a confidential client")
        .field_path(".grantTypes"),
    validation = Rule::new("!('refresh_token' in self.grantTypes) || 'authorization_code' in self.grantTypes")
        .message("refresh_token is issued only together with authorization_code")
        .field_path(".grantTypes"),
    validation = Rule::new("!('authorization_code' in self.grantTypes) || size(self.redirectUris) > 0")
        .message("authorization_code needs at least one entry in redirectUris")
        .field_path(".redirectUris")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new(schema::PAIRWISE_SINGLE_SECTOR)
        .message("a pairwise client whose redirectUris use several hosts needs sectorIdentifierUri: its host becomes the sector")
        .field_path(".sectorIdentifierUri")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("has(self.clientId) == has(oldSelf.clientId) && (!has(self.clientId) || self.clientId == oldSelf.clientId)")
        .message("clientId is immutable: create a new OidcClient for a new client id")
        .field_path(".clientId")
        .reason(Reason::FieldValueForbidden),
)]
#[serde(rename_all = "camelCase")]
pub struct OidcClientSpec {
    /// Name of the IdentityTenant this client belongs to. The tenant's
    /// `allowedNamespaces` must select this namespace. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("tenantRef is immutable").reason(Reason::FieldValueForbidden))]
    #[schemars(length(min = 1, max = 63), regex(pattern = schema::DNS_LABEL))]
    pub tenant_ref: String,

    /// The OAuth `client_id`. Default: `<namespace>-<name>` of this object. Must be unique
    /// in the tenant: if another OidcClient already holds it, this one gets Ready=False,
    /// reason Conflict. Immutable once the object exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = "^[A-Za-z0-9._~-]+$"))]
    pub client_id: Option<String>,

    /// Name shown to users on the consent page. Default: the client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub display_name: Option<String>,

    /// `confidential` (default): the client keeps a secret or private key (server-side
    /// web apps, services). `public`: it cannot (single-page and native apps); it has no
    /// secret, must use PKCE, and cannot use client_credentials.
    #[serde(default)]
    pub client_type: ClientType,

    /// OAuth grants the client may use: `authorization_code` (users sign in; needs
    /// redirectUris), `refresh_token` (with authorization_code), `client_credentials`
    /// (service to service; confidential clients only). Default: [authorization_code].
    #[serde(default = "default_grant_types")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(min = 1, max = 3))]
    pub grant_types: Vec<GrantType>,

    /// Allowed `redirect_uri` values, compared exactly (RFC 9700 §4.1.3), except that the
    /// port of a loopback http URI may vary (RFC 8252 §7.3). Each is https, or http on
    /// localhost, 127.0.0.1 or [::1], without a fragment. At most 32.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 32), inner(length(min = 1, max = 2048)), transform = schema::redirect_uri_items)]
    pub redirect_uris: Vec<String>,

    /// Allowed `post_logout_redirect_uri` values for RP-initiated logout, compared exactly;
    /// same form as redirectUris. At most 32.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 32), inner(length(min = 1, max = 2048)), transform = schema::redirect_uri_items)]
    pub post_logout_redirect_uris: Vec<String>,

    /// Scopes the client may request; a request for any other scope is refused
    /// (`invalid_scope`). Default: [openid]. Include `openid` for OpenID Connect sign-in.
    #[serde(default = "default_scopes")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(
        length(max = 64),
        inner(
            length(min = 1, max = 128),
            regex(pattern = r"^[\x21\x23-\x5B\x5D-\x7E]+$")
        )
    )]
    pub scopes: Vec<String>,

    /// Audiences (`aud`, RFC 8707 resource indicators) the client may obtain access tokens
    /// for, such as the URL or name of an API. Empty (default): tokens carry only the
    /// client id as audience.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 32), inner(length(min = 1, max = 512)))]
    pub audiences: Vec<String>,

    /// How the client authenticates at the token endpoint: `client_secret_basic` (HTTP
    /// Basic), `client_secret_post` (form fields), `private_key_jwt` (a JWT signed with a
    /// key from jwksUri; no secret), or `none` (public clients only). Default:
    /// client_secret_basic for confidential clients, none for public clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,

    /// URL of the client's JSON Web Key Set, used to verify its `private_key_jwt`
    /// assertions. https, or http on localhost, 127.0.0.1 or [::1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(schema::HTTPS_OR_LOOPBACK_URL).message(schema::REDIRECT_URI_MESSAGE))]
    #[schemars(length(min = 1, max = 2048))]
    pub jwks_uri: Option<String>,

    /// Bind access and refresh tokens to the client's DPoP key (RFC 9449): token requests
    /// without a DPoP proof are refused. Default: false.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,

    /// Access token lifetime for this client, in seconds. Unset: the tenant's
    /// `tokens.accessTokenSeconds`. Range: 60 to 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 86_400))]
    pub access_token_lifetime_seconds: Option<i32>,

    /// Refresh token family lifetime for this client, in seconds. Unset: the tenant's
    /// `tokens.refreshTokenSeconds`. Range: 300 to 31536000 (365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 300, max = 31_536_000))]
    pub refresh_token_lifetime_seconds: Option<i32>,

    /// Algorithm the client's ID tokens are signed with: `RS256`, `ES256` or `EdDSA`.
    /// Choose one of the tenant's SigningKeySet `algorithms`: the tenant's key for it
    /// signs, and sign-ins fail while there is none. An algorithm the auth server does not
    /// enable is rejected (Ready=False, reason InvalidSpec). Unset (default): the auth
    /// server's default, RS256, which every OpenID Connect client supports (Discovery §3).
    /// Example: `ES256` for a client library that verifies ECDSA signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_signing_alg: Option<SigningAlgorithm>,

    /// Issue a refresh token on every authorization-code exchange, even when the user did
    /// not grant the `offline_access` scope. Default: false (refresh tokens only with
    /// `offline_access`, as OpenID Connect Core §11 intends). Takes effect only when
    /// grantTypes includes refresh_token. Example: true for a web app that keeps the
    /// session alive in the background while the user is signed in.
    #[serde(default)]
    pub refresh_without_offline_access: bool,

    /// `sub` claim type for this client: `public` (default) or `pairwise`. The tenant must
    /// list it in `subjectTypes`.
    #[serde(default = "default_subject_type")]
    pub subject_type: SubjectType,

    /// For `subjectType: pairwise`: the host of this https URL is the client's sector
    /// (OpenID Connect Core §8.1), so clients sharing it see the same `sub` for a user.
    /// The auth server uses only the host; it does not fetch the URL. Unset (default): the
    /// sector is the host of redirectUris, which must then all share one host. Ignored
    /// for public subjects. Changing the sector changes every user's `sub` at this
    /// client. Example: `https://apps.example.com/redirect_uris.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(schema::HTTPS_URL).message(schema::HTTPS_URL_MESSAGE))]
    #[schemars(length(min = 1, max = 2048))]
    pub sector_identifier_uri: Option<String>,

    /// Require this client to push its authorization requests to the PAR endpoint first
    /// (RFC 9126) and pass only the returned `request_uri` in the browser; plain
    /// authorization requests are refused. Default: false. The tenant's `requirePar`
    /// requires it for every client regardless of this field. Example: true for a client
    /// whose authorization parameters must not travel through the browser.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,

    /// A first-party client (operated by the tenant's owner) skips the consent page.
    /// Honoured only in namespaces the IdentityTenant lists in `firstPartyNamespaces`;
    /// elsewhere the client gets Ready=False, reason InvalidSpec. Default: false.
    #[serde(default)]
    pub first_party: bool,

    /// Token introspection (RFC 7662) answers this client for every access token of the
    /// tenant: for a resource server that accepts tokens issued to other clients without
    /// being named in their audience. Default false: a client learns only about tokens
    /// issued to it or whose `aud` names its client id; for any other token it gets
    /// `{"active": false}`.
    #[serde(default)]
    pub introspect_any_token: bool,

    /// Web origins (`https://app.example.com`, no path) allowed to call the token,
    /// userinfo and revocation endpoints from a browser (CORS). Empty (default): none.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 32), inner(length(min = 1, max = 512)), transform = schema::origin_items)]
    pub allowed_cors_origins: Vec<String>,

    /// Bring your own client secret: a key of an existing Secret in this namespace. The
    /// operator uses its value instead of generating one, and waits (Ready=False, reason
    /// SecretNotFound) while the Secret or key is missing. Confidential clients with a
    /// client_secret_* method only. Unset: the operator generates a 256-bit secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ClientSecretRef>,

    /// Name of the Secret the operator writes in this namespace, holding `CLIENT_ID`,
    /// `CLIENT_SECRET` (confidential clients with a secret only) and `ISSUER_URL`. It is
    /// owned by this OidcClient and deleted with it. Default: `<name>-oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = schema::DNS_SUBDOMAIN))]
    pub secret_name: Option<String>,

    /// When the secret is rotated (annotation `gatehouse.dev/rotate-secret` changed), the
    /// previous secret stays valid this many seconds so running instances can pick up the
    /// new one. Default: 86400 (24 hours). Range: 0 to 2592000 (30 days).
    #[serde(default = "default_secret_rotation_overlap")]
    #[schemars(range(min = 0, max = 2_592_000))]
    pub secret_rotation_overlap_seconds: i32,

    /// What deleting this OidcClient does to the client in the database: `Delete`
    /// (default) removes it and revokes its tokens; `Retain` keeps it registered. While
    /// the auth server is unreachable, `Delete` is retried with backoff and, after 8
    /// failed attempts (about 10 minutes), falls back to `Retain` with a Warning Event
    /// `CleanupAbandoned`. The annotation `gatehouse.dev/skip-cleanup: "true"` skips the
    /// deletion at once.
    #[serde(default = "default_deletion_policy")]
    pub deletion_policy: DeletionPolicy,
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode]
}

fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned()]
}

fn default_subject_type() -> SubjectType {
    SubjectType::Public
}

fn default_secret_rotation_overlap() -> i32 {
    86_400
}

fn default_deletion_policy() -> DeletionPolicy {
    DeletionPolicy::Delete
}

/// Whether a client can keep a credential (RFC 6749 §2.1).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    #[default]
    Confidential,
    Public,
}

/// An OAuth 2.0 grant type.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    /// The RFC 6749 `grant_type` name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

/// Token endpoint client authentication method (OpenID Connect Core §9).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
// Used as `Option<…>`: the field's description must survive (see `without_description`).
#[schemars(transform = schema::without_description)]
pub enum TokenEndpointAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl TokenEndpointAuthMethod {
    /// The registered name (`token_endpoint_auth_method`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
            TokenEndpointAuthMethod::PrivateKeyJwt => "private_key_jwt",
            TokenEndpointAuthMethod::None => "none",
        }
    }

    /// Whether the method authenticates with a client secret.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::ClientSecretPost
        )
    }
}

/// A key of a Secret in the OidcClient's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = schema::DNS_SUBDOMAIN))]
    pub name: String,

    /// Key in the Secret's data holding the client secret. Default: CLIENT_SECRET.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_secret_key() -> String {
    "CLIENT_SECRET".to_owned()
}

/// Observed state of an OidcClient, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OidcClientStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current state. `Ready` is True once the client is registered and its Secret
    /// written; when False its reason says why (NamespaceNotAllowed, TenantNotFound,
    /// SecretNotFound, SecretInvalid, Conflict, MigrationPending, AuthServerUnavailable, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The registered `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,

    /// Name of the Secret holding the client's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// When the current client secret was issued (generated, rotated or read from
    /// secretRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_rotated_at: Option<Time>,

    /// The last value of the `gatehouse.dev/rotate-secret` annotation the operator acted
    /// on; a different value on the object triggers a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_secret_rotation_annotation: Option<String>,

    /// `resourceVersion` of the `spec.secretRef` Secret whose value is the current client
    /// secret. A new version (the value was changed) makes that value current at once and
    /// keeps the previous one valid for `secretRotationOverlapSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref_version: Option<String>,
}

impl OidcClientSpec {
    /// The token endpoint auth method in effect: the spec's, or the default for the client
    /// type (client_secret_basic for confidential, none for public).
    pub fn auth_method(&self) -> TokenEndpointAuthMethod {
        self.token_endpoint_auth_method
            .unwrap_or(match self.client_type {
                ClientType::Confidential => TokenEndpointAuthMethod::ClientSecretBasic,
                ClientType::Public => TokenEndpointAuthMethod::None,
            })
    }
}

/// The default client id of an OidcClient: `<namespace>-<name>`.
pub fn default_client_id(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}")
}

/// The default name of the generated Secret: `<name>-oidc`.
pub fn default_secret_name(name: &str) -> String {
    format!("{name}-oidc")
}

impl OidcClient {
    /// The client id in effect: `spec.clientId`, or `<namespace>-<name>`.
    pub fn client_id(&self) -> String {
        self.spec.client_id.clone().unwrap_or_else(|| {
            default_client_id(&self.namespace().unwrap_or_default(), &self.name_any())
        })
    }

    /// The name of the Secret the operator writes: `spec.secretName`, or `<name>-oidc`.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| default_secret_name(&self.name_any()))
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;
    use crate::test_support::{assert_fails_with, at, cel_errors, schema};

    /// A confidential authorization-code client in namespace `shop`.
    fn client(spec: serde_json::Value) -> OidcClient {
        let mut spec = spec;
        let base = json!({
            "tenantRef": "acme",
            "redirectUris": ["https://app.example.com/cb"],
        });
        for (k, v) in base.as_object().unwrap() {
            spec.as_object_mut()
                .unwrap()
                .entry(k.clone())
                .or_insert(v.clone());
        }
        let mut c = OidcClient::new("app", serde_json::from_value(spec).unwrap());
        c.metadata.namespace = Some("shop".into());
        c
    }

    fn errors(spec: serde_json::Value) -> Vec<kube::core::cel::ValidationError> {
        cel_errors(&client(spec), None)
    }

    #[test]
    fn crd_is_namespaced_with_short_name_and_printer_columns() {
        let crd = OidcClient::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("oidcclients.gatehouse.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["oidc".to_owned()]));
        let columns: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.json_path.as_str(), c.priority))
            .collect();
        assert_eq!(
            columns,
            [
                (
                    "Ready",
                    r#".status.conditions[?(@.type=="Ready")].status"#,
                    None
                ),
                (
                    "Reason",
                    r#".status.conditions[?(@.type=="Ready")].reason"#,
                    None
                ),
                ("ClientID", ".status.clientId", None),
                ("Tenant", ".spec.tenantRef", Some(1)),
                ("Age", ".metadata.creationTimestamp", None),
            ]
        );
    }

    #[test]
    fn schema_carries_defaults_and_ranges() {
        let schema = schema::<OidcClient>();
        let spec = at(&schema, "properties.spec.properties");
        assert_eq!(spec["clientType"]["default"], "confidential");
        assert_eq!(spec["grantTypes"]["default"], json!(["authorization_code"]));
        assert_eq!(spec["scopes"]["default"], json!(["openid"]));
        assert_eq!(spec["subjectType"]["default"], "public");
        assert_eq!(spec["dpopBoundAccessTokens"]["default"], false);
        assert_eq!(spec["firstParty"]["default"], false);
        assert_eq!(spec["secretRotationOverlapSeconds"]["default"], 86_400);
        assert_eq!(spec["deletionPolicy"]["default"], "Delete");
        assert_eq!(
            at(spec, "secretRef.properties.key.default"),
            "CLIENT_SECRET"
        );
        assert_eq!(spec["accessTokenLifetimeSeconds"]["minimum"], 60.0);
        assert_eq!(spec["accessTokenLifetimeSeconds"]["maximum"], 86_400.0);
        assert_eq!(spec["refreshTokenLifetimeSeconds"]["maximum"], 31_536_000.0);
        assert_eq!(
            spec["tokenEndpointAuthMethod"]["enum"],
            json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
                null
            ])
        );
        // kube hoists the enum's schema over an Option field's: the field doc must survive.
        assert!(
            spec["tokenEndpointAuthMethod"]["description"]
                .as_str()
                .unwrap()
                .starts_with("How the client authenticates")
        );
        assert_eq!(spec["refreshWithoutOfflineAccess"]["default"], false);
        assert_eq!(spec["requirePushedAuthorizationRequests"]["default"], false);
        assert_eq!(
            spec["idTokenSigningAlg"]["enum"],
            json!(["RS256", "ES256", "EdDSA", null])
        );
        assert!(spec["idTokenSigningAlg"].get("default").is_none());
        assert!(
            spec["idTokenSigningAlg"]["description"]
                .as_str()
                .unwrap()
                .starts_with("Algorithm the client's ID tokens are signed with")
        );
        assert_eq!(spec["sectorIdentifierUri"]["maxLength"], 2048);
        assert_eq!(
            at(spec, "tenantRef.x-kubernetes-validations.0.rule"),
            "self == oldSelf"
        );
        assert!(at(spec, "redirectUris.items.x-kubernetes-validations.0.rule").is_string());
    }

    #[test]
    fn helpers_derive_the_client_id_secret_name_and_auth_method() {
        let c = client(json!({}));
        assert_eq!(c.client_id(), "shop-app");
        assert_eq!(c.secret_name(), "app-oidc");
        assert_eq!(
            c.spec.auth_method(),
            TokenEndpointAuthMethod::ClientSecretBasic
        );
        let c =
            client(json!({"clientId": "my-app", "secretName": "creds", "clientType": "public"}));
        assert_eq!(c.client_id(), "my-app");
        assert_eq!(c.secret_name(), "creds");
        assert_eq!(c.spec.auth_method(), TokenEndpointAuthMethod::None);
        assert!(!c.spec.auth_method().uses_secret());
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragment() {
        for good in [
            "https://app.example.com/cb",
            "https://app.example.com:8443/oauth/callback?x=1",
            "http://localhost/cb",
            "http://localhost:8080/cb",
            "http://127.0.0.1:51000/cb",
            "http://[::1]:51000/cb",
            "http://127.0.0.1",
        ] {
            assert!(errors(json!({"redirectUris": [good]})).is_empty(), "{good}");
            assert!(
                errors(json!({"postLogoutRedirectUris": [good]})).is_empty(),
                "{good}"
            );
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "com.example.app:/cb",
            "http://localhost.example.com/cb",
            "http://127.0.0.2/cb",
            "https://attacker@app.example.com/cb",
            "https:///cb",
            "https://app.example.com/c b",
        ] {
            let errs = errors(json!({"redirectUris": ["https://ok.example.com/cb", bad]}));
            assert_fails_with(&errs, &["must be an https URL"]);
            assert_eq!(errs[0].field_path, "spec.redirectUris[1]", "{bad}");
            let errs = errors(json!({"postLogoutRedirectUris": [bad]}));
            assert_fails_with(&errs, &["must be an https URL"]);
        }
    }

    #[test]
    fn the_new_registration_fields_default_to_the_server_defaults() {
        let c = client(json!({}));
        assert_eq!(c.spec.id_token_signing_alg, None);
        assert!(!c.spec.refresh_without_offline_access);
        assert_eq!(c.spec.sector_identifier_uri, None);
        assert!(!c.spec.require_pushed_authorization_requests);
        let c = client(json!({
            "idTokenSigningAlg": "EdDSA",
            "refreshWithoutOfflineAccess": true,
            "sectorIdentifierUri": "https://apps.example.com/uris.json",
            "requirePushedAuthorizationRequests": true,
        }));
        assert_eq!(c.spec.id_token_signing_alg, Some(SigningAlgorithm::EdDsa));
        assert!(c.spec.refresh_without_offline_access);
        assert!(c.spec.require_pushed_authorization_requests);
        // Unset optional fields stay out of the applied object.
        let applied = serde_json::to_value(client(json!({})).spec).unwrap();
        assert!(applied.get("idTokenSigningAlg").is_none());
        assert!(applied.get("sectorIdentifierUri").is_none());
        assert!(
            serde_json::from_value::<OidcClientSpec>(
                json!({"tenantRef": "acme", "idTokenSigningAlg": "HS256"})
            )
            .is_err()
        );
    }

    #[test]
    fn sector_identifier_uri_is_an_https_url() {
        for good in [
            "https://apps.example.com/redirect_uris.json",
            "https://apps.example.com",
            "https://apps.example.com:8443/s?v=1",
        ] {
            assert!(
                errors(json!({"sectorIdentifierUri": good})).is_empty(),
                "{good}"
            );
        }
        for bad in [
            "http://apps.example.com/uris.json",
            "http://localhost/uris.json",
            "https://apps.example.com/uris.json#x",
            "https://user@apps.example.com/",
            "https:///uris.json",
            "apps.example.com",
        ] {
            let errs = errors(json!({"sectorIdentifierUri": bad}));
            assert_fails_with(&errs, &["must be an https URL (https://host/path)"]);
            assert_eq!(errs[0].field_path, "spec.sectorIdentifierUri", "{bad}");
        }
    }

    #[test]
    fn a_pairwise_client_with_redirect_uris_on_several_hosts_needs_a_sector() {
        let pairwise =
            |uris: serde_json::Value| json!({"subjectType": "pairwise", "redirectUris": uris});
        // One host, compared as the auth server does: case, scheme and port aside.
        for one_host in [
            json!(["https://app.example.com/cb"]),
            json!([
                "https://app.example.com/cb",
                "https://APP.example.com:8443/other?x=1"
            ]),
            json!(["http://localhost:8080/cb", "https://localhost/cb"]),
            json!(["http://[::1]:51000/cb", "http://[::1]/cb"]),
        ] {
            assert!(errors(pairwise(one_host.clone())).is_empty(), "{one_host}");
        }
        for several in [
            json!(["https://app.example.com/cb", "https://www.example.com/cb"]),
            json!(["https://app.example.com/cb", "http://localhost:8080/cb"]),
            json!([
                "https://app.example.com/cb",
                "https://app.example.com.evil.test/cb"
            ]),
            json!(["http://[::1]/cb", "http://127.0.0.1/cb"]),
        ] {
            let errs = errors(pairwise(several.clone()));
            assert_fails_with(
                &errs,
                &[
                    "a pairwise client whose redirectUris use several hosts needs sectorIdentifierUri",
                ],
            );
            assert_eq!(errs[0].field_path, "spec.sectorIdentifierUri", "{several}");
            let mut with_sector = pairwise(several.clone());
            with_sector["sectorIdentifierUri"] = json!("https://apps.example.com/uris.json");
            assert!(errors(with_sector).is_empty(), "{several}");
            // Public subjects have no sector.
            assert!(errors(json!({"redirectUris": several})).is_empty());
        }
        // A pairwise machine client has no redirect URIs and needs no sector here (the
        // auth server falls back to the client id).
        assert!(
            errors(
                json!({"subjectType": "pairwise", "grantTypes": ["client_credentials"],
                          "redirectUris": []})
            )
            .is_empty()
        );
    }

    #[test]
    fn cors_origins_have_no_path() {
        assert!(
            errors(
                json!({"allowedCorsOrigins": ["https://app.example.com", "http://localhost:3000"]})
            )
            .is_empty()
        );
        for bad in [
            "https://app.example.com/",
            "http://app.example.com",
            "app.example.com",
        ] {
            assert_fails_with(
                &errors(json!({"allowedCorsOrigins": [bad]})),
                &["must be an origin"],
            );
        }
    }

    #[test]
    fn tenant_ref_and_client_id_are_immutable() {
        let old = client(json!({}));
        assert!(cel_errors(&old, Some(&old)).is_empty());
        let moved = client(json!({"tenantRef": "other"}));
        assert_fails_with(&cel_errors(&moved, Some(&old)), &["tenantRef is immutable"]);

        let named = client(json!({"clientId": "app-1"}));
        let renamed = client(json!({"clientId": "app-2"}));
        assert!(cel_errors(&named, Some(&named)).is_empty());
        assert_fails_with(
            &cel_errors(&renamed, Some(&named)),
            &["clientId is immutable"],
        );
        assert_fails_with(&cel_errors(&named, Some(&old)), &["clientId is immutable"]);
        assert_fails_with(&cel_errors(&old, Some(&named)), &["clientId is immutable"]);
    }

    #[test]
    fn a_public_client_has_no_secret_and_authenticates_with_none() {
        assert!(errors(json!({"clientType": "public"})).is_empty());
        assert!(
            errors(json!({"clientType": "public", "tokenEndpointAuthMethod": "none"})).is_empty()
        );
        assert_fails_with(
            &errors(json!({"clientType": "public", "secretRef": {"name": "s"}})),
            &["a public client has no secret"],
        );
        assert_fails_with(
            &errors(
                json!({"clientType": "public", "tokenEndpointAuthMethod": "client_secret_basic"}),
            ),
            &["a public client does not authenticate"],
        );
        assert_fails_with(
            &errors(
                json!({"clientType": "public", "grantTypes": ["client_credentials"], "redirectUris": []}),
            ),
            &["client_credentials needs a confidential client"],
        );
    }

    #[test]
    fn a_confidential_client_authenticates() {
        assert_fails_with(
            &errors(json!({"tokenEndpointAuthMethod": "none"})),
            &["a confidential client must authenticate"],
        );
        assert!(
            errors(
                json!({"secretRef": {"name": "s"}, "tokenEndpointAuthMethod": "client_secret_post"})
            )
            .is_empty()
        );
        assert_fails_with(
            &errors(
                json!({"secretRef": {"name": "s"}, "tokenEndpointAuthMethod": "private_key_jwt",
                           "jwksUri": "https://app.example.com/jwks"}),
            ),
            &["secretRef is used only with"],
        );
        assert_fails_with(
            &errors(json!({"tokenEndpointAuthMethod": "private_key_jwt"})),
            &["private_key_jwt needs jwksUri"],
        );
        assert_fails_with(
            &errors(
                json!({"tokenEndpointAuthMethod": "private_key_jwt", "jwksUri": "http://keys.example.com/jwks"}),
            ),
            &["must be an https URL"],
        );
    }

    #[test]
    fn grant_types_must_fit_together() {
        assert!(
            errors(json!({"grantTypes": ["client_credentials"], "redirectUris": []})).is_empty()
        );
        assert_fails_with(
            &errors(json!({"grantTypes": ["refresh_token", "client_credentials"]})),
            &["refresh_token is issued only together with authorization_code"],
        );
        assert_fails_with(
            &errors(json!({"grantTypes": ["authorization_code"], "redirectUris": []})),
            &["authorization_code needs at least one entry in redirectUris"],
        );
    }

    #[test]
    fn names_are_bounded_so_the_client_id_and_the_secret_name_fit() {
        let named = |name: &str| {
            let mut c = client(json!({}));
            c.metadata.name = Some(name.to_owned());
            cel_errors(&c, None)
        };
        assert!(named(&"a".repeat(191)).is_empty());
        assert_fails_with(
            &named(&"a".repeat(192)),
            &["metadata.name: at most 191 characters"],
        );
        let longest = default_client_id(&"n".repeat(63), &"a".repeat(191));
        assert_eq!(
            longest.len(),
            255,
            "the default client id still fits spec.clientId's bound"
        );
    }

    #[test]
    fn secret_ref_cannot_point_at_the_generated_secret() {
        assert_fails_with(
            &errors(json!({"secretRef": {"name": "app-oidc"}})),
            &["secretRef must not name the Secret the operator generates"],
        );
        assert_fails_with(
            &errors(json!({"secretRef": {"name": "creds"}, "secretName": "creds"})),
            &["secretRef must not name the Secret the operator generates"],
        );
        assert!(
            errors(json!({"secretRef": {"name": "app-oidc"}, "secretName": "creds"})).is_empty()
        );
    }
}
