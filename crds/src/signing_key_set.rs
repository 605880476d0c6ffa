//! `SigningKeySet`: the keys a tenant signs tokens with, and when they rotate. The
//! operator asks the auth server (admin API) to generate or import keys and to rotate
//! them when due or when the `gatehouse.dev/rotate` annotation changes (publish now, sign
//! after the promotion delay), or at once when `gatehouse.dev/rotate-now` changes (an
//! emergency: a compromised key).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::schema;

/// Signing keys of one tenant: algorithms, key size, and the rotation schedule.
// clippy reads the repeated `type_ = …` of kube's printcolumn(…) as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "SigningKeySet",
    plural = "signingkeysets",
    shortname = "sks",
    category = "gatehouse",
    status = "SigningKeySetStatus",
    derive = "PartialEq",
    doc = "The signing keys of an IdentityTenant and their rotation. Annotate with gatehouse.dev/rotate=<new value> to rotate now: the new keys are published at once and sign after promotionDelaySeconds. Emergency (a compromised key): gatehouse.dev/rotate-now=<new value> makes the new keys sign at once and withdraws every previous key from the JWKS; relying parties with a cached JWKS then reject new tokens until they refetch it, and every token signed before stops verifying.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef"),
    printcolumn(
        name = "Next Rotation",
        type_ = "date",
        json_path = ".status.nextRotation",
        priority = 1
    ),
    printcolumn(
        name = "Next Activation",
        type_ = "date",
        json_path = ".status.nextActivation",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.rotationIntervalDays * 86400 >= self.overlapWindowSeconds")
        .message("overlapWindowSeconds must not exceed the rotation interval (rotationIntervalDays × 86400)")
        .field_path(".overlapWindowSeconds"),
    validation = Rule::new("!has(self.promotionDelaySeconds) || self.promotionDelaySeconds < self.rotationIntervalDays * 86400")
        .message("promotionDelaySeconds must be shorter than the rotation interval (rotationIntervalDays × 86400)")
        .field_path(".promotionDelaySeconds"),
)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeySetSpec {
    /// Name of the IdentityTenant whose keys these are. One SigningKeySet per tenant; a
    /// second one for the same tenant gets Ready=False, reason Conflict. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("tenantRef is immutable").reason(Reason::FieldValueForbidden))]
    #[schemars(length(min = 1, max = 63), regex(pattern = schema::DNS_LABEL))]
    pub tenant_ref: String,

    /// JWS algorithms to keep a key for: `RS256`, `ES256`, `EdDSA` (Ed25519). Each has its
    /// own key and all are published in the JWKS. RS256 is required: OpenID Connect
    /// Discovery §3 makes it the mandatory ID token algorithm. Default: all three.
    #[serde(default = "default_algorithms")]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("'RS256' in self").message("RS256 is required by OpenID Connect and must stay in algorithms")
    )]
    #[schemars(length(min = 1, max = 3))]
    pub algorithms: Vec<SigningAlgorithm>,

    /// RSA modulus size in bits for RS256 keys: 2048 (default), 3072 or 4096. Applies to
    /// keys generated after a change.
    #[serde(default)]
    pub rsa_bits: RsaBits,

    /// Days between automatic rotations: a new key per algorithm is then created and
    /// published, becomes active after promotionDelaySeconds, and the previous one stays
    /// published until every token it signed has expired (at least overlapWindowSeconds).
    /// Default: 90. Range: 1 to 3650.
    #[serde(default = "default_rotation_interval_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub rotation_interval_days: i32,

    /// Seconds a replaced key stays in the JWKS (state retiring) so tokens it signed still
    /// verify. The auth server keeps it longer when the tenant's access or ID tokens (or a
    /// client's access tokens) live longer, so no token outlives its key. Default: 7200
    /// (2 hours). Range: 0 to 31536000; at most the rotation interval.
    #[serde(default = "default_overlap_window_seconds")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub overlap_window_seconds: i32,

    /// Seconds a new key is published in the JWKS (state pending) before it signs, so
    /// relying parties that cache the JWKS (Cache-Control max-age, up to 900 s) have it
    /// before any token is signed with it. Unset (or 0, which earlier versions defaulted
    /// to): the auth server's default, its JWKS max-age plus 60 s (960 s with default
    /// settings). A value shorter than the JWKS max-age the auth server sends is refused:
    /// Ready=False, reason InvalidSpec. To sign with a new key at once (a compromised key),
    /// use the gatehouse.dev/rotate-now annotation instead. Range: 0 to 604800 (7 days);
    /// less than the rotation interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604_800))]
    pub promotion_delay_seconds: Option<i32>,

    /// Where keys come from. `generated: {}` (default): the auth server generates them and
    /// keeps the private parts only in its database, encrypted. `secretRef: {name,
    /// namespace}`: PEM private keys are imported from a Secret instead.
    #[serde(default)]
    #[x_kube(validation = Rule::new("has(self.generated) != has(self.secretRef)").message("set exactly one of source.generated and source.secretRef"))]
    pub source: KeySource,
}

fn default_algorithms() -> Vec<SigningAlgorithm> {
    SigningAlgorithm::ALL.to_vec()
}

fn default_rotation_interval_days() -> i32 {
    90
}

fn default_overlap_window_seconds() -> i32 {
    7200
}

/// A JWS signing algorithm (RFC 7518, RFC 8037).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlgorithm {
    /// Every algorithm Gatehouse signs with.
    pub const ALL: [SigningAlgorithm; 3] = [
        SigningAlgorithm::Rs256,
        SigningAlgorithm::Es256,
        SigningAlgorithm::EdDsa,
    ];

    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// The data key holding this algorithm's PEM private key in a `source.secretRef`
    /// Secret.
    pub fn secret_key(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "rs256.pem",
            SigningAlgorithm::Es256 => "es256.pem",
            SigningAlgorithm::EdDsa => "eddsa.pem",
        }
    }
}

/// RSA key size. An enum of integers in the schema, so `rsaBits: 1024` is rejected by the
/// API server rather than by the operator.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(try_from = "i32", into = "i32")]
pub enum RsaBits {
    #[default]
    Bits2048,
    Bits3072,
    Bits4096,
}

impl RsaBits {
    /// The modulus size in bits.
    pub fn bits(self) -> u32 {
        match self {
            RsaBits::Bits2048 => 2048,
            RsaBits::Bits3072 => 3072,
            RsaBits::Bits4096 => 4096,
        }
    }
}

impl From<RsaBits> for i32 {
    fn from(value: RsaBits) -> Self {
        match value {
            RsaBits::Bits2048 => 2048,
            RsaBits::Bits3072 => 3072,
            RsaBits::Bits4096 => 4096,
        }
    }
}

impl TryFrom<i32> for RsaBits {
    type Error = String;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match value {
            2048 => Ok(RsaBits::Bits2048),
            3072 => Ok(RsaBits::Bits3072),
            4096 => Ok(RsaBits::Bits4096),
            other => Err(format!("rsaBits must be 2048, 3072 or 4096, not {other}")),
        }
    }
}

impl JsonSchema for RsaBits {
    fn schema_name() -> Cow<'static, str> {
        "RsaBits".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "format": "int32",
            "enum": [2048, 3072, 4096],
        })
    }
}

/// Where a key set's private keys come from: exactly one of the two.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum KeySource {
    /// The auth server generates the keys; private parts never leave its database, where
    /// they are encrypted under ENCRYPTION_KEY. Write `generated: {}`.
    Generated {},
    /// Import PEM (PKCS#8) private keys from a Secret: one per algorithm, under the data
    /// keys `rs256.pem`, `es256.pem` and `eddsa.pem`. Rotation then means changing the
    /// Secret: the operator imports a changed key as a new pending key and retires the old
    /// one after the overlap window; rotationIntervalDays does not apply.
    SecretRef {
        /// Name of the Secret.
        #[schemars(length(min = 1, max = 253), regex(pattern = schema::DNS_SUBDOMAIN))]
        name: String,
        /// Namespace of the Secret. The operator needs read access to Secrets there.
        #[schemars(length(min = 1, max = 63), regex(pattern = schema::DNS_LABEL))]
        namespace: String,
    },
}

impl Default for KeySource {
    fn default() -> Self {
        KeySource::Generated {}
    }
}

/// Lifecycle state of a signing key.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in the JWKS, not yet signing.
    Pending,
    /// Signing new tokens; one per algorithm.
    Active,
    /// Replaced, still published so earlier tokens verify.
    Retiring,
    /// No longer published.
    Retired,
}

impl KeyState {
    /// The lowercase state name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }
}

/// One key of the set, as the auth server reports it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyStatus {
    /// Key id (`kid` in JWT headers and the JWKS).
    pub kid: String,
    /// Algorithm: RS256, ES256 or EdDSA.
    pub alg: SigningAlgorithm,
    /// pending (published, not yet signing), active (signing), retiring (replaced, still
    /// published), retired (no longer published).
    pub state: KeyState,
    /// When the key became active, or, while pending, when it will start signing. A key
    /// withdrawn by an emergency rotation while pending never activates (state retired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Time>,
    /// When the key leaves the JWKS; unset until a rotation replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retires_at: Option<Time>,
}

/// Observed state of a SigningKeySet, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeySetStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current state. `Ready` is True when every algorithm has an active key; when False
    /// its reason says why (TenantNotFound, SecretNotFound, SecretInvalid, Conflict,
    /// MigrationPending, AuthServerUnavailable, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The tenant's keys that are not retired, plus recently retired ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<SigningKeyStatus>,

    /// When the next automatic rotation is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Time>,

    /// When the earliest pending key starts signing (see keys[].activatedAt); unset when
    /// no key is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_activation: Option<Time>,

    /// The last value of the `gatehouse.dev/rotate` annotation the operator acted on; a
    /// different value on the object triggers a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_annotation: Option<String>,

    /// The last value of the `gatehouse.dev/rotate-now` annotation the operator acted on;
    /// a different value on the object triggers an emergency rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_now_annotation: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;
    use crate::test_support::{assert_fails_with, at, cel_errors, raw_cel_errors, schema};

    fn key_set(spec: serde_json::Value) -> SigningKeySet {
        let mut spec = spec;
        spec.as_object_mut()
            .unwrap()
            .entry("tenantRef")
            .or_insert(json!("acme"));
        SigningKeySet::new("acme", serde_json::from_value(spec).unwrap())
    }

    fn errors(spec: serde_json::Value) -> Vec<kube::core::cel::ValidationError> {
        cel_errors(&key_set(spec), None)
    }

    #[test]
    fn crd_is_cluster_scoped_with_short_name_and_printer_columns() {
        let crd = SigningKeySet::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("signingkeysets.gatehouse.dev")
        );
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["sks".to_owned()]));
        let columns: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Ready",
                "Reason",
                "Tenant",
                "Next Rotation",
                "Next Activation",
                "Age"
            ]
        );
    }

    #[test]
    fn schema_carries_defaults_and_the_rsa_bits_enum() {
        let schema = schema::<SigningKeySet>();
        let spec = at(&schema, "properties.spec.properties");
        assert_eq!(
            spec["algorithms"]["default"],
            json!(["RS256", "ES256", "EdDSA"])
        );
        assert_eq!(spec["rsaBits"]["default"], 2048);
        assert_eq!(spec["rsaBits"]["enum"], json!([2048, 3072, 4096]));
        assert_eq!(spec["rotationIntervalDays"]["default"], 90);
        assert_eq!(spec["rotationIntervalDays"]["minimum"], 1.0);
        assert_eq!(spec["overlapWindowSeconds"]["default"], 7200);
        // No schema default: unset means the auth server's (JWKS max-age + 60 s).
        assert_eq!(spec["promotionDelaySeconds"].get("default"), None);
        assert_eq!(spec["promotionDelaySeconds"]["maximum"], 604_800.0);
        assert_eq!(spec["source"]["default"], json!({"generated": {}}));
        assert_eq!(
            at(
                &schema,
                "properties.status.properties.keys.items.properties.state.enum"
            ),
            &json!(["pending", "active", "retiring", "retired"])
        );
    }

    #[test]
    fn a_key_set_with_only_a_tenant_gets_the_defaults() {
        let k = key_set(json!({}));
        assert_eq!(k.spec.algorithms, SigningAlgorithm::ALL);
        assert_eq!(k.spec.rsa_bits.bits(), 2048);
        assert_eq!(k.spec.rotation_interval_days, 90);
        assert_eq!(k.spec.overlap_window_seconds, 7200);
        assert_eq!(k.spec.promotion_delay_seconds, None);
        assert_eq!(k.spec.source, KeySource::Generated {});
        assert!(cel_errors(&k, None).is_empty());
    }

    #[test]
    fn rsa_bits_accept_only_the_three_sizes() {
        let spec = |bits| {
            serde_json::from_value::<SigningKeySetSpec>(json!({"tenantRef": "a", "rsaBits": bits}))
        };
        assert_eq!(spec(4096).unwrap().rsa_bits, RsaBits::Bits4096);
        let err = spec(1024).unwrap_err().to_string();
        assert!(
            err.contains("rsaBits must be 2048, 3072 or 4096, not 1024"),
            "{err}"
        );
        assert_eq!(serde_json::to_value(RsaBits::Bits3072).unwrap(), 3072);
    }

    #[test]
    fn rotation_interval_covers_overlap_and_promotion_delay() {
        assert!(
            errors(json!({"rotationIntervalDays": 1, "overlapWindowSeconds": 86_400})).is_empty()
        );
        assert_fails_with(
            &errors(json!({"rotationIntervalDays": 1, "overlapWindowSeconds": 86_401})),
            &["overlapWindowSeconds must not exceed the rotation interval"],
        );
        assert_fails_with(
            &errors(json!({"rotationIntervalDays": 1, "promotionDelaySeconds": 86_400})),
            &["promotionDelaySeconds must be shorter than the rotation interval"],
        );
        assert!(
            errors(json!({"rotationIntervalDays": 1, "promotionDelaySeconds": 960})).is_empty()
        );
        // Unset: the rule does not apply (the auth server's default is far shorter).
        assert!(errors(json!({"rotationIntervalDays": 1})).is_empty());
    }

    #[test]
    fn rs256_cannot_be_dropped() {
        assert!(errors(json!({"algorithms": ["RS256"]})).is_empty());
        assert_fails_with(
            &errors(json!({"algorithms": ["ES256", "EdDSA"]})),
            &["RS256 is required"],
        );
    }

    #[test]
    fn tenant_ref_is_immutable() {
        let old = key_set(json!({}));
        assert!(cel_errors(&old, Some(&old)).is_empty());
        let mut moved = old.clone();
        moved.spec.tenant_ref = "other".into();
        assert_fails_with(&cel_errors(&moved, Some(&old)), &["tenantRef is immutable"]);
    }

    #[test]
    fn source_is_exactly_one_of_generated_and_secret_ref() {
        let with_source = |source| {
            let mut value = serde_json::to_value(key_set(json!({}))).unwrap();
            value["spec"]["source"] = source;
            raw_cel_errors::<SigningKeySet>(&value, None)
        };
        let secret = json!({"secretRef": {"name": "acme-keys", "namespace": "gatehouse"}});
        assert!(with_source(secret.clone()).is_empty());
        let k = key_set(json!({"source": secret}));
        assert_eq!(
            k.spec.source,
            KeySource::SecretRef {
                name: "acme-keys".into(),
                namespace: "gatehouse".into()
            }
        );
        let both = json!({"generated": {}, "secretRef": {"name": "k", "namespace": "n"}});
        assert_fails_with(
            &with_source(both),
            &["set exactly one of source.generated and source.secretRef"],
        );
        assert_fails_with(&with_source(json!({})), &["set exactly one of"]);
    }
}
