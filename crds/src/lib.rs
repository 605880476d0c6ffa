//! Gatehouse custom resources, group `gatehouse.dev`, version `v1alpha1`:
//!
//! - [`IdentityTenant`] (cluster-scoped, `idt`): one issuer with its policies;
//! - [`OidcClient`] (namespaced, `oidc`): a relying party registered with a tenant;
//! - [`SigningKeySet`] (cluster-scoped, `sks`): a tenant's signing keys and their rotation.
//!
//! This crate owns the Rust types, the validation the API server enforces (OpenAPI
//! bounds, defaults and CEL `x-kubernetes-validations`), the [`conditions`] vocabulary
//! and the generated CRD YAML ([`generate`], run by the `crdgen` binary). It holds no
//! reconcile logic: the operator reads these types and writes their status.
//!
//! Field docs become `kubectl explain` output, so they are written for cluster users.

pub mod conditions;
pub mod federation;
pub mod generate;
pub mod identity_tenant;
pub mod oidc_client;
mod schema;
pub mod signing_key_set;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use identity_tenant::{IdentityTenant, IdentityTenantSpec, IdentityTenantStatus};
pub use oidc_client::{OidcClient, OidcClientSpec, OidcClientStatus};
pub use signing_key_set::{SigningKeySet, SigningKeySetSpec, SigningKeySetStatus};

/// API group of every Gatehouse resource.
pub const GROUP: &str = "gatehouse.dev";
/// API version of every Gatehouse resource.
pub const VERSION: &str = "v1alpha1";

/// The label that assigns an object to an operator instance (`--instance`; objects
/// without it belong to the default instance).
pub const INSTANCE_LABEL: &str = "gatehouse.dev/instance";

/// Annotation on a [`SigningKeySet`]: changing its value (any new value, e.g. a
/// timestamp) makes the operator rotate the keys now: the new keys are published at once
/// and sign after `spec.promotionDelaySeconds`. The last value acted on is recorded in
/// `status.lastRotationAnnotation`.
pub const ROTATE_ANNOTATION: &str = "gatehouse.dev/rotate";
/// Annotation on a [`SigningKeySet`]: changing its value makes the operator rotate the
/// keys in an emergency (a compromised key): the new keys sign at once and every previous
/// key leaves the JWKS at once. Relying parties with a cached JWKS reject new tokens until
/// they refetch it, and every token signed before stops verifying. The last value acted
/// on is recorded in `status.lastRotateNowAnnotation`.
pub const ROTATE_NOW_ANNOTATION: &str = "gatehouse.dev/rotate-now";
/// Annotation on an [`OidcClient`]: changing its value makes the operator generate a new
/// client secret; the previous one stays valid for `spec.secretRotationOverlapSeconds`.
/// The last value acted on is recorded in `status.lastSecretRotationAnnotation`.
pub const ROTATE_SECRET_ANNOTATION: &str = "gatehouse.dev/rotate-secret";
/// Annotation on an [`IdentityTenant`] or [`OidcClient`] being deleted (or about to be):
/// `"true"` makes the operator release its finalizer without calling the auth server, so
/// nothing is deleted from the database whatever `deletionPolicy` says. The way out when
/// the auth server or its database is gone for good. Accepted on a [`SigningKeySet`] too,
/// where it changes nothing: deleting a key set never touches the database.
pub const SKIP_CLEANUP_ANNOTATION: &str = "gatehouse.dev/skip-cleanup";

/// 32-bit FNV-1a of `s`: a stable, dependency-free hash for names derived from names
/// (the operator's hashed name suffixes, a tenant's purge minute). Stable across
/// releases: changing it renames objects and moves schedules.
pub fn fnv1a(s: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Every Gatehouse CRD, in a stable order (tenant, client, key set).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        IdentityTenant::crd(),
        OidcClient::crd(),
        SigningKeySet::crd(),
    ]
}

/// What happens to the database rows behind a resource when the resource is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Remove the rows (the tenant and everything in it, or the client and its tokens).
    Delete,
    /// Keep the rows; only the Kubernetes object and what the operator created for it
    /// (Secrets, CronJobs) go away. Re-creating the resource adopts the kept rows.
    Retain,
}

/// How the `sub` claim is computed (OpenID Connect Core §8).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    /// The same `sub` for a user at every client of the tenant.
    Public,
    /// A different, unlinkable `sub` per client sector (host of the redirect URIs).
    Pairwise,
}

impl SubjectType {
    /// The value used in discovery (`subject_types_supported`) and in the CRDs.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectType::Public => "public",
            SubjectType::Pairwise => "pairwise",
        }
    }
}

/// Helpers for the unit tests of the resource modules: client-side evaluation of the
/// CRDs' CEL rules with kube-cel (the `kube/cel` feature is a dev-dependency only).
#[cfg(test)]
mod test_support {
    use kube::CustomResourceExt;
    use kube::core::cel::{ValidationError, Validator};
    use serde::Serialize;
    use serde_json::Value;

    /// The openAPIV3Schema of `K`'s CRD.
    pub(crate) fn schema<K: CustomResourceExt>() -> Value {
        let crd = K::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("derived CRDs have a schema");
        serde_json::to_value(schema).unwrap()
    }

    /// The CEL failures for creating `obj` (`old` = None) or updating `old` to `obj`.
    pub(crate) fn cel_errors<K: CustomResourceExt + Serialize>(
        obj: &K,
        old: Option<&K>,
    ) -> Vec<ValidationError> {
        let value = serde_json::to_value(obj).unwrap();
        let old = old.map(|o| serde_json::to_value(o).unwrap());
        raw_cel_errors::<K>(&value, old.as_ref())
    }

    /// Like [`cel_errors`] for an object given as JSON (shapes the Rust types cannot hold).
    pub(crate) fn raw_cel_errors<K: CustomResourceExt>(
        value: &Value,
        old: Option<&Value>,
    ) -> Vec<ValidationError> {
        match Validator::new().validate(&schema::<K>(), value, old) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_vec(),
        }
    }

    /// Asserts that exactly the rules with these message fragments fail.
    #[track_caller]
    pub(crate) fn assert_fails_with(errors: &[ValidationError], fragments: &[&str]) {
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages.len(),
            fragments.len(),
            "expected failures {fragments:?}, got {messages:#?}"
        );
        for fragment in fragments {
            assert!(
                messages.iter().any(|m| m.contains(fragment)),
                "no failure mentions {fragment:?}: {messages:#?}"
            );
        }
    }

    /// Walks a dotted `path` (`properties.spec`, `x-kubernetes-validations.0.rule`) from `schema`.
    pub(crate) fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
        path.split('.')
            .fold(schema, |node, key| match key.parse::<usize>() {
                Ok(index) => &node[index],
                Err(_) => &node[key],
            })
    }
}
