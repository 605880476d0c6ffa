//! `operator/rbac.yaml` grants what the operator does: every request of the Controller
//! loop test, plus the migration, status ConfigMap and Lease calls it does not run; and
//! `operator/rbac-namespaced.yaml` (`--watch-namespaces shop,billing`) grants every
//! request of the namespaced Controller loop test and nothing about Secrets, OidcClients
//! or Events outside those namespaces.

use serde_json::Value;

struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    /// `None` for ClusterRole rules.
    namespace: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(Into::into))
        .collect()
}

/// The cluster-wide reference.
pub const CLUSTER_WIDE: &str = "rbac.yaml";
/// The namespace-scoped reference (`--watch-namespaces shop,billing`).
pub const NAMESPACED: &str = "rbac-namespaced.yaml";

fn rules(file: &str) -> Vec<Rule> {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut rules = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
        let namespace = match doc["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(doc["metadata"]["namespace"].as_str().unwrap().to_owned()),
            _ => continue,
        };
        for r in doc["rules"].as_array().unwrap() {
            rules.push(Rule {
                groups: strings(&r["apiGroups"]),
                resources: strings(&r["resources"]),
                verbs: strings(&r["verbs"]),
                namespace: namespace.clone(),
            });
        }
    }
    rules
}

/// Whether a request `METHOD path?query` is allowed by `rbac.yaml`.
pub fn allowed(request: &str) -> bool {
    allowed_by(CLUSTER_WIDE, request)
}

/// Whether a request `METHOD path?query` is allowed by the rules in `file`.
pub fn allowed_by(file: &str, request: &str) -> bool {
    let (method, rest) = request.split_once(' ').unwrap();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (group, rest) = if let Some(r) = path.strip_prefix("/api/v1/") {
        (String::new(), r)
    } else {
        let r = path.strip_prefix("/apis/").unwrap();
        let mut parts = r.splitn(3, '/');
        let group = parts.next().unwrap().to_owned();
        parts.next();
        (group, parts.next().unwrap_or_default())
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let (namespace, segs) = if segs[0] == "namespaces" && segs.len() >= 3 {
        (Some(segs[1]), &segs[2..])
    } else {
        (None, &segs[..])
    };
    let resource = match segs.get(2) {
        Some(sub) => format!("{}/{sub}", segs[0]),
        None => segs[0].to_owned(),
    };
    let verb = match (method, segs.len()) {
        ("GET", 1) if query.contains("watch=true") => "watch",
        ("GET", 1) => "list",
        ("GET", _) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return false,
    };
    rules(file).iter().any(|r| {
        r.groups.contains(&group)
            && r.resources.contains(&resource)
            && r.verbs.iter().any(|v| v == verb)
            && (r.namespace.is_none() || r.namespace.as_deref() == namespace)
    })
}

#[test]
fn the_calls_outside_the_controller_loop_are_granted() {
    for request in [
        // migration
        "GET /api/v1/namespaces/gatehouse/configmaps/gatehouse-operator-status?",
        "PATCH /api/v1/namespaces/gatehouse/configmaps/gatehouse-operator-status?fieldManager=x&force=true",
        "GET /apis/batch/v1/namespaces/gatehouse/jobs/gatehouse-migrate-1-0-abc?",
        "PATCH /apis/batch/v1/namespaces/gatehouse/jobs/gatehouse-migrate-1-0-abc?force=true",
        "GET /apis/batch/v1/namespaces/gatehouse/jobs?labelSelector=x",
        "DELETE /apis/batch/v1/namespaces/gatehouse/jobs/gatehouse-migrate-0-9-abc?",
        "GET /api/v1/namespaces/gatehouse/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3Dx",
        "GET /api/v1/namespaces/gatehouse/pods/gatehouse-migrate-1-0-abc-xyz/log?tailLines=20",
        // leader election
        "GET /apis/coordination.k8s.io/v1/namespaces/gatehouse/leases/gatehouse-operator?",
        "POST /apis/coordination.k8s.io/v1/namespaces/gatehouse/leases?",
        "PUT /apis/coordination.k8s.io/v1/namespaces/gatehouse/leases/gatehouse-operator?",
        // key sets
        "GET /apis/gatehouse.dev/v1alpha1/signingkeysets?",
        "GET /apis/gatehouse.dev/v1alpha1/signingkeysets?watch=true",
        "PATCH /apis/gatehouse.dev/v1alpha1/signingkeysets/acme/status?",
        "GET /api/v1/namespaces/gatehouse/secrets/acme-keys?",
        // events updated as a series
        "PATCH /apis/events.k8s.io/v1/namespaces/shop/events/web.1?",
    ] {
        assert!(allowed(request), "rbac.yaml does not grant {request}");
    }
}

#[test]
fn namespaced_grants_stay_in_the_operator_namespace() {
    assert!(!allowed("GET /apis/batch/v1/namespaces/shop/jobs/x?"));
    assert!(!allowed(
        "PUT /apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x?"
    ));
    assert!(!allowed(
        "DELETE /apis/gatehouse.dev/v1alpha1/identitytenants/acme?"
    ));
    assert!(!allowed("GET /api/v1/namespaces/shop/pods?"));
    assert!(
        !allowed("GET /api/v1/namespaces/gatehouse/pods/x?"),
        "list only"
    );
    assert!(!allowed("DELETE /api/v1/namespaces/gatehouse/pods/x?"));
}

#[test]
fn the_namespaced_rbac_grants_secrets_and_events_only_in_watched_namespaces() {
    let ns = |r: &str| allowed_by(NAMESPACED, r);
    for granted in [
        "GET /apis/gatehouse.dev/v1alpha1/namespaces/shop/oidcclients?watch=true",
        "PATCH /apis/gatehouse.dev/v1alpha1/namespaces/billing/oidcclients/web/status?",
        "GET /api/v1/namespaces/shop/secrets?labelSelector=x&watch=true",
        "PATCH /api/v1/namespaces/shop/secrets/web-oidc?",
        "POST /apis/events.k8s.io/v1/namespaces/shop/events?",
        // tenants and key sets are cluster-scoped; their Events live in `default`
        "GET /apis/gatehouse.dev/v1alpha1/identitytenants?watch=true",
        "GET /apis/gatehouse.dev/v1alpha1/signingkeysets?",
        "POST /apis/events.k8s.io/v1/namespaces/default/events?",
        "GET /api/v1/namespaces?watch=true",
        // the operator's namespace: bootstrap Secrets, migration, Lease
        "GET /api/v1/namespaces/gatehouse/secrets/gatehouse-encryption?",
        "POST /api/v1/namespaces/gatehouse/secrets?",
        "PATCH /apis/batch/v1/namespaces/gatehouse/jobs/gatehouse-migrate-1-0-abc?force=true",
        "PUT /apis/coordination.k8s.io/v1/namespaces/gatehouse/leases/gatehouse-operator?",
        // OidcClients anywhere (no secrets in them): deleting a watched namespace deletes
        // its Role while the clients there still wait for their finalizers to go.
        "PATCH /apis/gatehouse.dev/v1alpha1/namespaces/other/oidcclients/web?",
        "GET /apis/gatehouse.dev/v1alpha1/oidcclients?",
    ] {
        assert!(ns(granted), "rbac-namespaced.yaml does not grant {granted}");
    }
    for refused in [
        "GET /api/v1/secrets?watch=true",
        "GET /api/v1/namespaces/kube-system/secrets/x?",
        "POST /apis/events.k8s.io/v1/namespaces/other/events?",
        "GET /api/v1/namespaces/gatehouse/secrets?watch=true",
        "PATCH /api/v1/namespaces/gatehouse/secrets/gatehouse-encryption?",
    ] {
        assert!(!ns(refused), "rbac-namespaced.yaml grants {refused}");
    }
}
