//! Which resources the fake serves: group, version, kind, plural, scope and which
//! server-side behaviours (status subresource, `metadata.generation`) apply to them.
//!
//! The built-in table covers the kinds Gatehouse and its tests use; a
//! `CustomResourceDefinition` written to the fake adds its kinds at run time (see
//! [`ResourceType::from_crd`]), so a test controller over any custom resource works once
//! its CRD is applied.

use serde_json::Value;

/// One served resource: `/api/v1/...` when `group` is empty, `/apis/{group}/{version}/...`
/// otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// `kind` of a single object.
    pub kind: String,
    /// Lower-case plural used in URLs.
    pub plural: String,
    /// Namespaced (`true`) or cluster-scoped (`false`).
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource keep the stored `status`,
    /// writes to `/status` change only `status`.
    pub status_subresource: bool,
    /// Maintains `metadata.generation` (bumped when anything but metadata and a
    /// subresource-managed status changes), as the real server does for CRs, Jobs, CronJobs,
    /// Deployments and CRDs — not for Secrets, ConfigMaps, Events, Leases or Namespaces.
    pub generation: bool,
    /// Short names for discovery (`kubectl get oidc`).
    pub short_names: Vec<String>,
}

/// Short names of the built-in kinds, as the real server (or the CRD) declares them.
fn built_in_short_names(plural: &str) -> &'static [&'static str] {
    match plural {
        "namespaces" => &["ns"],
        "configmaps" => &["cm"],
        "events" => &["ev"],
        "pods" => &["po"],
        "services" => &["svc"],
        "serviceaccounts" => &["sa"],
        "cronjobs" => &["cj"],
        "deployments" => &["deploy"],
        "customresourcedefinitions" => &["crd", "crds"],
        "identitytenants" => &["idt"],
        "oidcclients" => &["oidc"],
        "signingkeysets" => &["sks"],
        _ => &[],
    }
}

/// `(group, version, kind, plural, namespaced, status subresource, generation)`.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    bool,
);

const BUILT_IN: &[Row] = &[
    ("", "v1", "Namespace", "namespaces", false, true, false),
    ("", "v1", "Secret", "secrets", true, false, false),
    ("", "v1", "ConfigMap", "configmaps", true, false, false),
    ("", "v1", "Event", "events", true, false, false),
    ("", "v1", "Pod", "pods", true, true, false),
    ("", "v1", "Service", "services", true, true, false),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        false,
    ),
    ("events.k8s.io", "v1", "Event", "events", true, false, false),
    ("batch", "v1", "Job", "jobs", true, true, true),
    ("batch", "v1", "CronJob", "cronjobs", true, true, true),
    ("apps", "v1", "Deployment", "deployments", true, true, true),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        true,
    ),
    // Gatehouse's own kinds are served even before their CRDs are applied, so small
    // tests need not apply them; applying the CRDs adds schema validation and defaults.
    (
        "gatehouse.dev",
        "v1alpha1",
        "IdentityTenant",
        "identitytenants",
        false,
        true,
        true,
    ),
    (
        "gatehouse.dev",
        "v1alpha1",
        "OidcClient",
        "oidcclients",
        true,
        true,
        true,
    ),
    (
        "gatehouse.dev",
        "v1alpha1",
        "SigningKeySet",
        "signingkeysets",
        false,
        true,
        true,
    ),
];

/// The built-in table.
pub(crate) fn built_in() -> Vec<ResourceType> {
    BUILT_IN
        .iter()
        .map(
            |&(group, version, kind, plural, namespaced, status_subresource, generation)| {
                ResourceType {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    kind: kind.to_owned(),
                    plural: plural.to_owned(),
                    namespaced,
                    status_subresource,
                    generation,
                    short_names: built_in_short_names(plural)
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                }
            },
        )
        .collect()
}

impl ResourceType {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `secrets` or `oidcclients.gatehouse.dev`, as used in the real server's messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The served versions of a `CustomResourceDefinition` object, with each version's
    /// `openAPIV3Schema` (if any). Returns nothing for a malformed CRD.
    pub(crate) fn from_crd(crd: &Value) -> Vec<(ResourceType, Option<Value>)> {
        let spec = &crd["spec"];
        let (Some(group), Some(kind), Some(plural)) = (
            spec["group"].as_str(),
            spec["names"]["kind"].as_str(),
            spec["names"]["plural"].as_str(),
        ) else {
            return Vec::new();
        };
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["served"].as_bool().unwrap_or(true))
            .filter_map(|v| {
                let version = v["name"].as_str()?;
                let rt = ResourceType {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    kind: kind.to_owned(),
                    plural: plural.to_owned(),
                    namespaced,
                    status_subresource: v["subresources"].get("status").is_some(),
                    generation: true,
                    short_names: spec["names"]["shortNames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect(),
                };
                let schema = v["schema"].get("openAPIV3Schema").cloned();
                Some((rt, schema))
            })
            .collect()
    }
}
