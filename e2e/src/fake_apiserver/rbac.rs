//! Authorization: kube-apiserver's RBAC authorizer over the stored `ClusterRole`,
//! `ClusterRoleBinding`, `Role` and `RoleBinding` objects (`rbac.authorization.k8s.io/v1`),
//! for requests from an authenticated user (see `authn`; the harness is not authorized).
//!
//! As the real server does it
//! ([Using RBAC Authorization](https://kubernetes.io/docs/reference/access-authn-authz/rbac/),
//! `RequestInfoFactory` and `rbac/v1` rule matching in kubernetes/kubernetes):
//! - Request attributes ([`RequestInfo::parse`]): a resource request (`/api/v1/…`,
//!   `/apis/{group}/{version}/…` with a resource) has a verb from the method — `get`,
//!   `list` (GET without a name), `watch` (`watch=true`), `create`, `update`, `patch`,
//!   `delete`, `deletecollection` (DELETE without a name) —, the group, the resource,
//!   the subresource (`pods/log`, `oidcclients/status`), the namespace and the name; a
//!   `metadata.name` field selector names the object of a LIST or WATCH. Everything else
//!   (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`) is a
//!   non-resource request whose verb is the lower-case method.
//! - Rules: `verbs`, `apiGroups`, `resources` (a subresource needs its own
//!   `resource/subresource` entry or `*/subresource`), `resourceNames` (then the request
//!   needs a name, so they never grant `create`, `deletecollection`, or a LIST/WATCH
//!   without a `metadata.name` field selector), `nonResourceURLs` (exact, or a prefix
//!   ending in `*`), `*` everywhere.
//! - Bindings: ClusterRoleBindings grant everywhere; RoleBindings grant in their own
//!   namespace only, also when they reference a ClusterRole. Subjects `User`, `Group`
//!   and `ServiceAccount` (whose namespace defaults to a RoleBinding's own). A request
//!   without a namespace (cluster-scoped, or a LIST across namespaces) is only granted by
//!   ClusterRoleBindings; `/api/v1/namespaces/{name}` is in namespace `{name}`.
//! - Built in: what a cluster's bootstrap policy grants every authenticated user through
//!   `system:discovery`, `system:public-info-viewer` and `system:basic-user` — GET of the
//!   discovery and health paths, the self-reviews. They are rules here, not stored
//!   objects. `system:masters` may do anything, as on the real server.
//! - Denied: 403 `Forbidden` with the real message, e.g. `secrets "x" is forbidden: User
//!   "system:serviceaccount:ns:sa" cannot delete resource "secrets" in API group "" in the
//!   namespace "ns"` (`at the cluster scope` without a namespace), followed by
//!   `: RBAC: role.rbac.authorization.k8s.io "r" not found` when a binding of the user
//!   references a missing role.
//!
//! Not modelled: ClusterRole `aggregationRule` (no aggregation controller fills the
//! rules), the other bootstrap roles (`cluster-admin`, `admin`, `edit`, `view`, …
//! exist only when written), privilege-escalation checks on writing roles and bindings
//! (`escalate`, `bind`), impersonation, other authorizers (Node, ABAC, webhooks).

use serde_json::{Value, json};

use super::authn::{AUTHENTICATED, UserInfo};
use super::error::{ApiError, Result};

/// The RBAC group, and the group of the roles' `NotFound` errors.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The group that bypasses authorization on a real API server.
const MASTERS: &str = "system:masters";

/// What the authorizer sees of a request, as kube-apiserver's `RequestInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RequestInfo {
    /// A request for an API resource (else a non-resource path).
    pub resource_request: bool,
    /// The URL path.
    pub path: String,
    /// `get`, `list`, `watch`, `create`, … (resources) or the lower-case method.
    pub verb: String,
    /// The API group, empty for the core group.
    pub group: String,
    /// The resource's plural.
    pub resource: String,
    /// `status`, `log`, … or empty.
    pub subresource: String,
    /// Empty for cluster-scoped requests and LISTs across namespaces.
    pub namespace: String,
    /// Empty when the URL names no object.
    pub name: String,
}

impl RequestInfo {
    /// Parses a request like kube-apiserver's `RequestInfoFactory`; `query` is the URL's
    /// decoded query parameters.
    pub(crate) fn parse(method: &str, path: &str, query: &[(String, String)]) -> Self {
        let param = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let non_resource = Self {
            resource_request: false,
            path: path.to_owned(),
            verb: method.to_ascii_lowercase(),
            ..Self::default()
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let (group, mut rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
            _ => return non_resource,
        };
        let mut namespace = "";
        if let ["namespaces", ns, tail @ ..] = rest {
            // `/namespaces/{ns}` is the Namespace object itself (and its `status` and
            // `finalize`), in its own namespace; anything else is a namespaced resource.
            namespace = ns;
            if !matches!(tail, [] | ["status" | "finalize", ..]) {
                rest = tail;
            }
        }
        let part = |i: usize| rest.get(i).copied().unwrap_or_default();
        let mut name = part(1);
        let verb = match (method, name) {
            ("POST", _) => "create",
            ("GET" | "HEAD", "") => {
                // A LIST or WATCH of one object by name is authorized for that name, so
                // `resourceNames` can grant it.
                name = param("fieldSelector")
                    .and_then(exact_name)
                    .unwrap_or_default();
                if matches!(param("watch"), Some("true" | "1")) {
                    "watch"
                } else {
                    "list"
                }
            }
            ("GET" | "HEAD", _) => "get",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", "") => "deletecollection",
            ("DELETE", _) => "delete",
            _ => "",
        };
        Self {
            resource_request: true,
            path: path.to_owned(),
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: part(0).to_owned(),
            subresource: part(2).to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The same request with another verb (the `create` a create-on-apply also needs).
    pub(crate) fn with_verb(&self, verb: &str) -> Self {
        Self {
            verb: verb.to_owned(),
            ..self.clone()
        }
    }
}

/// The value of a `metadata.name=` (or `==`) term of a field selector.
fn exact_name(selector: &str) -> Option<&str> {
    selector.split(',').find_map(|term| {
        let value = term.trim().strip_prefix("metadata.name")?;
        let value = value
            .strip_prefix("==")
            .or_else(|| value.strip_prefix('='))?;
        (!value.is_empty()).then_some(value)
    })
}

/// One `PolicyRule`.
struct Rule<'a>(&'a Value);

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

impl Rule<'_> {
    fn allows(&self, req: &RequestInfo) -> bool {
        let rule = self.0;
        let verb = strings(&rule["verbs"]).any(|v| v == "*" || v == req.verb);
        if !req.resource_request {
            return verb
                && strings(&rule["nonResourceURLs"]).any(|url| {
                    url == "*"
                        || url == req.path
                        || url
                            .strip_suffix('*')
                            .is_some_and(|prefix| req.path.starts_with(prefix))
                });
        }
        let combined = if req.subresource.is_empty() {
            req.resource.clone()
        } else {
            format!("{}/{}", req.resource, req.subresource)
        };
        let resource = strings(&rule["resources"]).any(|r| {
            r == "*"
                || r == combined
                || (!req.subresource.is_empty()
                    && r.strip_prefix("*/") == Some(req.subresource.as_str()))
        });
        let mut names = strings(&rule["resourceNames"]).peekable();
        let name = names.peek().is_none() || names.any(|n| !req.name.is_empty() && n == req.name);
        verb && strings(&rule["apiGroups"]).any(|g| g == "*" || g == req.group) && resource && name
    }
}

/// What the bootstrap ClusterRoles bound to `system:authenticated` grant:
/// `system:discovery`, `system:public-info-viewer` and `system:basic-user`.
fn built_in_rules() -> Value {
    json!([
        {"verbs": ["get"], "nonResourceURLs": [
            "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
            "/openapi/*", "/readyz", "/version", "/version/"]},
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
         "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
         "resources": ["selfsubjectreviews"]},
    ])
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// Whether one of a binding's `subjects` is `user`; `namespace` is a RoleBinding's own
/// (the default of its ServiceAccount subjects), empty for a ClusterRoleBinding.
fn binds(binding: &Value, user: &UserInfo, namespace: &str) -> bool {
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            let name = s["name"].as_str().unwrap_or_default();
            match s["kind"].as_str() {
                Some("User") => name == user.name,
                Some("Group") => user.groups.iter().any(|g| g == name),
                Some("ServiceAccount") => {
                    let ns = s["namespace"]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .unwrap_or(namespace);
                    !ns.is_empty() && user.as_service_account() == Some((ns, name))
                }
                _ => false,
            }
        })
}

/// Decides a request of `user` against `objects` (the stored RBAC objects, each with its
/// `kind`): `Ok` when a rule grants it, else the 403 the real server answers.
pub(crate) fn authorize(objects: &[Value], user: &UserInfo, req: &RequestInfo) -> Result<()> {
    if user.groups.iter().any(|g| g == MASTERS) {
        return Ok(());
    }
    let built_in = built_in_rules();
    if user.groups.iter().any(|g| g == AUTHENTICATED)
        && strings_rules(&built_in).any(|r| r.allows(req))
    {
        return Ok(());
    }
    let of_kind = |kind: &'static str| objects.iter().filter(move |o| o["kind"] == kind);
    let role = |kind: &str, namespace: &str, name: &str| {
        objects.iter().find(|o| {
            o["kind"] == kind
                && meta_str(o, "namespace") == namespace
                && meta_str(o, "name") == name
        })
    };
    let mut errors = Vec::new();
    let mut check = |role_ref: &Value, namespace: &str| -> bool {
        let name = role_ref["name"].as_str().unwrap_or_default();
        let found = match role_ref["kind"].as_str() {
            Some("ClusterRole") => role("ClusterRole", "", name).ok_or("clusterrole"),
            // Only a RoleBinding (with a namespace) may reference a Role.
            Some("Role") if !namespace.is_empty() => role("Role", namespace, name).ok_or("role"),
            _ => {
                errors.push(format!(
                    "unsupported role reference kind: {:?}",
                    role_ref["kind"].as_str().unwrap_or_default()
                ));
                return false;
            }
        };
        match found {
            Ok(r) => strings_rules(&r["rules"]).any(|rule| rule.allows(req)),
            Err(resource) => {
                errors.push(format!("{resource}.{RBAC_GROUP} \"{name}\" not found"));
                false
            }
        }
    };
    for binding in of_kind("ClusterRoleBinding") {
        if binds(binding, user, "") && check(&binding["roleRef"], "") {
            return Ok(());
        }
    }
    if !req.namespace.is_empty() {
        for binding in of_kind("RoleBinding").filter(|b| meta_str(b, "namespace") == req.namespace)
        {
            if binds(binding, user, &req.namespace) && check(&binding["roleRef"], &req.namespace) {
                return Ok(());
            }
        }
    }
    Err(forbidden(user, req, &errors))
}

fn strings_rules(rules: &Value) -> impl Iterator<Item = Rule<'_>> {
    rules.as_array().into_iter().flatten().map(Rule)
}

/// The real server's 403 (`ForbiddenStatusError`), with RBAC's reason when a role was
/// missing.
fn forbidden(user: &UserInfo, req: &RequestInfo, errors: &[String]) -> ApiError {
    let mut message = if req.resource_request {
        let resource = if req.subresource.is_empty() {
            req.resource.clone()
        } else {
            format!("{}/{}", req.resource, req.subresource)
        };
        let scope = if req.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace {:?}", req.namespace)
        };
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            user.name, req.verb, req.group
        )
    } else {
        format!(
            "User {:?} cannot {} path {:?}",
            user.name, req.verb, req.path
        )
    };
    match errors {
        [] => {}
        [one] => message = format!("{message}: RBAC: {one}"),
        many => message = format!("{message}: RBAC: [{}]", many.join(", ")),
    }
    if !req.resource_request {
        return ApiError::forbidden_resource("", "", "", &message);
    }
    ApiError::forbidden_resource(&req.group, &req.resource, &req.name, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserInfo {
        UserInfo::service_account("gatehouse", "op")
    }

    fn req(method: &str, url: &str) -> RequestInfo {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        RequestInfo::parse(method, path, &query)
    }

    fn objects(yaml: &str) -> Vec<Value> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect()
    }

    /// `rules` (YAML flow list) in a ClusterRole bound to the user by a
    /// ClusterRoleBinding.
    fn cluster_wide(rules: &str) -> Vec<Value> {
        objects(&format!(
            "kind: ClusterRole
metadata: {{name: r}}
rules: {rules}
---
kind: ClusterRoleBinding
metadata: {{name: b}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}}
subjects: [{{kind: ServiceAccount, name: op, namespace: gatehouse}}]
"
        ))
    }

    fn allowed(objects: &[Value], method: &str, url: &str) -> bool {
        authorize(objects, &user(), &req(method, url)).is_ok()
    }

    #[test]
    fn verbs_come_from_the_method_and_the_url() {
        for (method, url, verb) in [
            ("GET", "/api/v1/namespaces/ns/pods/p", "get"),
            ("HEAD", "/api/v1/namespaces/ns/pods/p", "get"),
            ("GET", "/api/v1/namespaces/ns/pods", "list"),
            ("GET", "/api/v1/pods?watch=true", "watch"),
            ("GET", "/api/v1/pods?watch=1", "watch"),
            ("GET", "/api/v1/pods?watch=false", "list"),
            ("POST", "/api/v1/namespaces/ns/pods", "create"),
            ("PUT", "/api/v1/namespaces/ns/pods/p", "update"),
            ("PATCH", "/api/v1/namespaces/ns/pods/p", "patch"),
            ("DELETE", "/api/v1/namespaces/ns/pods/p", "delete"),
            ("DELETE", "/api/v1/namespaces/ns/pods", "deletecollection"),
        ] {
            assert_eq!(req(method, url).verb, verb, "{method} {url}");
        }
    }

    #[test]
    fn urls_give_group_resource_subresource_namespace_and_name() {
        let r = req(
            "PATCH",
            "/apis/gatehouse.dev/v1alpha1/namespaces/shop/oidcclients/web/status",
        );
        assert!(r.resource_request);
        assert_eq!(
            (
                &*r.group,
                &*r.resource,
                &*r.subresource,
                &*r.namespace,
                &*r.name
            ),
            ("gatehouse.dev", "oidcclients", "status", "shop", "web")
        );
        let r = req("GET", "/apis/gatehouse.dev/v1alpha1/identitytenants/acme");
        assert_eq!((&*r.namespace, &*r.name), ("", "acme"));
        // The Namespace object is in its own namespace; so are its subresources.
        let r = req("GET", "/api/v1/namespaces/shop");
        assert_eq!(
            (&*r.resource, &*r.namespace, &*r.name),
            ("namespaces", "shop", "shop")
        );
        let r = req("PUT", "/api/v1/namespaces/shop/finalize");
        assert_eq!(
            (&*r.resource, &*r.subresource, &*r.namespace),
            ("namespaces", "finalize", "shop")
        );
        let r = req("GET", "/api/v1/namespaces");
        assert_eq!(
            (&*r.resource, &*r.namespace, &*r.verb),
            ("namespaces", "", "list")
        );
        let r = req(
            "GET",
            "/api/v1/configmaps?fieldSelector=metadata.name%3Dx&watch=true",
        );
        assert_eq!((&*r.verb, &*r.name), ("watch", "x"));
        for path in [
            "/version",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/batch/v1",
            "/healthz",
        ] {
            let r = req("GET", path);
            assert!(!r.resource_request, "{path}");
            assert_eq!(r.verb, "get");
        }
    }

    #[test]
    fn a_rule_grants_only_its_verbs_groups_and_resources() {
        let o = cluster_wide(r#"[{apiGroups: [""], resources: [secrets], verbs: [get, list]}]"#);
        assert!(allowed(&o, "GET", "/api/v1/namespaces/a/secrets/s"));
        assert!(allowed(&o, "GET", "/api/v1/secrets"));
        assert!(!allowed(&o, "GET", "/api/v1/secrets?watch=true"));
        assert!(!allowed(&o, "DELETE", "/api/v1/namespaces/a/secrets/s"));
        assert!(!allowed(&o, "GET", "/api/v1/namespaces/a/configmaps/s"));
        assert!(!allowed(
            &o,
            "GET",
            "/apis/other.io/v1/namespaces/a/secrets/s"
        ));
    }

    #[test]
    fn wildcards_match_any_verb_group_and_resource() {
        let o = cluster_wide(r#"[{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]"#);
        assert!(allowed(&o, "DELETE", "/apis/batch/v1/namespaces/a/jobs"));
        assert!(allowed(&o, "PATCH", "/apis/x.io/v1/widgets/w/status"));
        // … but not non-resource URLs, which need `nonResourceURLs`.
        assert!(!allowed(&o, "GET", "/metrics"));
        let o = cluster_wide(r#"[{verbs: ["get"], nonResourceURLs: ["/metrics", "/debug/*"]}]"#);
        assert!(allowed(&o, "GET", "/metrics"));
        assert!(allowed(&o, "GET", "/debug/pprof"));
        assert!(!allowed(&o, "POST", "/metrics"));
        assert!(!allowed(&o, "GET", "/metricsx"));
    }

    #[test]
    fn subresources_need_their_own_rule() {
        let o = cluster_wide(r#"[{apiGroups: [""], resources: [pods], verbs: [get]}]"#);
        assert!(allowed(&o, "GET", "/api/v1/namespaces/a/pods/p"));
        assert!(!allowed(&o, "GET", "/api/v1/namespaces/a/pods/p/log"));
        let o = cluster_wide(r#"[{apiGroups: [""], resources: [pods/log], verbs: [get]}]"#);
        assert!(allowed(&o, "GET", "/api/v1/namespaces/a/pods/p/log"));
        assert!(!allowed(&o, "GET", "/api/v1/namespaces/a/pods/p"));
        let o = cluster_wide(r#"[{apiGroups: ["*"], resources: ["*/status"], verbs: [patch]}]"#);
        assert!(allowed(
            &o,
            "PATCH",
            "/apis/gatehouse.dev/v1alpha1/identitytenants/t/status"
        ));
        assert!(!allowed(
            &o,
            "PATCH",
            "/apis/gatehouse.dev/v1alpha1/identitytenants/t"
        ));
    }

    #[test]
    fn resource_names_limit_requests_that_name_an_object() {
        let o = cluster_wide(
            r#"[{apiGroups: [""], resources: [configmaps], resourceNames: [status],
                 verbs: [get, list, watch, create, update, patch, delete, deletecollection]}]"#,
        );
        for method in ["GET", "PUT", "PATCH", "DELETE"] {
            assert!(
                allowed(&o, method, "/api/v1/namespaces/a/configmaps/status"),
                "{method}"
            );
            assert!(
                !allowed(&o, method, "/api/v1/namespaces/a/configmaps/other"),
                "{method}"
            );
        }
        // No name at authorization time: create, deletecollection, plain LIST and WATCH.
        assert!(!allowed(&o, "POST", "/api/v1/namespaces/a/configmaps"));
        assert!(!allowed(&o, "DELETE", "/api/v1/namespaces/a/configmaps"));
        assert!(!allowed(&o, "GET", "/api/v1/namespaces/a/configmaps"));
        assert!(!allowed(
            &o,
            "GET",
            "/api/v1/namespaces/a/configmaps?watch=true"
        ));
        // A LIST or WATCH with a `metadata.name` field selector names the object.
        assert!(allowed(
            &o,
            "GET",
            "/api/v1/namespaces/a/configmaps?watch=true&fieldSelector=metadata.name%3Dstatus"
        ));
        assert!(!allowed(
            &o,
            "GET",
            "/api/v1/namespaces/a/configmaps?fieldSelector=metadata.name%3Dother"
        ));
    }

    #[test]
    fn a_role_binding_grants_a_cluster_role_in_its_namespace_only() {
        let o = objects(
            r#"kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [list]}]
---
kind: RoleBinding
metadata: {name: b, namespace: gatehouse}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: ServiceAccount, name: op}]
"#,
        );
        assert!(allowed(&o, "GET", "/api/v1/namespaces/gatehouse/pods"));
        assert!(!allowed(&o, "GET", "/api/v1/namespaces/shop/pods"));
        // Across namespaces is the cluster scope, which a RoleBinding never grants.
        assert!(!allowed(&o, "GET", "/api/v1/pods"));
    }

    #[test]
    fn a_role_binding_grants_its_role_and_finds_it_in_its_namespace() {
        let o = objects(
            r#"kind: Role
metadata: {name: r, namespace: gatehouse}
rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get]}]
---
kind: Role
metadata: {name: r, namespace: shop}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
kind: RoleBinding
metadata: {name: b, namespace: gatehouse}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}
subjects: [{kind: ServiceAccount, name: op, namespace: gatehouse}]
"#,
        );
        assert!(allowed(
            &o,
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/gatehouse/leases/l"
        ));
        assert!(!allowed(
            &o,
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/gatehouse/leases/l"
        ));
        assert!(!allowed(
            &o,
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/shop/leases/l"
        ));
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let binding = |subject: &str| {
            objects(&format!(
                r#"kind: ClusterRole
metadata: {{name: r}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [get]}}]
---
kind: RoleBinding
metadata: {{name: b, namespace: gatehouse}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}}
subjects: [{subject}]
"#
            ))
        };
        let url = "/api/v1/namespaces/gatehouse/secrets/s";
        for (subject, granted) in [
            ("{kind: ServiceAccount, name: op}", true),
            (
                "{kind: ServiceAccount, name: op, namespace: gatehouse}",
                true,
            ),
            ("{kind: ServiceAccount, name: op, namespace: other}", false),
            ("{kind: ServiceAccount, name: other}", false),
            (
                "{kind: User, name: 'system:serviceaccount:gatehouse:op'}",
                true,
            ),
            ("{kind: User, name: op}", false),
            (
                "{kind: Group, name: 'system:serviceaccounts:gatehouse'}",
                true,
            ),
            ("{kind: Group, name: 'system:serviceaccounts'}", true),
            ("{kind: Group, name: 'system:authenticated'}", true),
            ("{kind: Group, name: 'system:serviceaccounts:other'}", false),
        ] {
            assert_eq!(allowed(&binding(subject), "GET", url), granted, "{subject}");
        }
        // A ClusterRoleBinding's ServiceAccount subject needs its namespace.
        let o = objects(
            r#"kind: ClusterRole
metadata: {name: r}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
kind: ClusterRoleBinding
metadata: {name: b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}
subjects: [{kind: ServiceAccount, name: op}]
"#,
        );
        assert!(!allowed(&o, "GET", url));
    }

    #[test]
    fn discovery_is_granted_to_every_authenticated_user() {
        for path in [
            "/version",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/batch/v1",
            "/readyz",
        ] {
            assert!(allowed(&[], "GET", path), "{path}");
        }
        assert!(!allowed(&[], "POST", "/api"));
        assert!(!allowed(&[], "GET", "/metrics"));
        assert!(!allowed(&[], "GET", "/api/v1/namespaces"));
    }

    #[test]
    fn system_masters_may_do_anything() {
        let admin = UserInfo::new("admin", [MASTERS]);
        assert!(authorize(&[], &admin, &req("DELETE", "/api/v1/namespaces/a/secrets")).is_ok());
    }

    #[test]
    fn a_denial_is_the_real_servers_403() {
        let e = authorize(
            &[],
            &user(),
            &req("DELETE", "/api/v1/namespaces/gatehouse/secrets/db"),
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            r#"secrets "db" is forbidden: User "system:serviceaccount:gatehouse:op" cannot delete resource "secrets" in API group "" in the namespace "gatehouse""#
        );
        assert_eq!(e.details, Some(json!({"name": "db", "kind": "secrets"})));
        let e = authorize(&[], &user(), &req("GET", "/api/v1/pods")).unwrap_err();
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "system:serviceaccount:gatehouse:op" cannot list resource "pods" in API group "" at the cluster scope"#
        );
        assert_eq!(e.details, Some(json!({"kind": "pods"})));
        let e = authorize(
            &[],
            &user(),
            &req(
                "PATCH",
                "/apis/gatehouse.dev/v1alpha1/identitytenants/acme/status",
            ),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            r#"identitytenants.gatehouse.dev "acme" is forbidden: User "system:serviceaccount:gatehouse:op" cannot patch resource "identitytenants/status" in API group "gatehouse.dev" at the cluster scope"#
        );
        let e = authorize(&[], &user(), &req("GET", "/metrics")).unwrap_err();
        assert_eq!(
            e.message,
            r#"forbidden: User "system:serviceaccount:gatehouse:op" cannot get path "/metrics""#
        );
        assert_eq!(e.details, Some(json!({})));
    }

    #[test]
    fn a_denial_names_the_missing_roles_of_the_users_bindings() {
        let o = objects(
            "kind: RoleBinding
metadata: {name: b, namespace: gatehouse}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: gone}
subjects: [{kind: ServiceAccount, name: op}]
---
kind: ClusterRoleBinding
metadata: {name: c}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gone-too}
subjects: [{kind: Group, name: 'system:serviceaccounts'}]
---
kind: ClusterRoleBinding
metadata: {name: someone-else}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: not-mine}
subjects: [{kind: User, name: alice}]
",
        );
        let e = authorize(
            &o,
            &user(),
            &req("GET", "/api/v1/namespaces/gatehouse/pods"),
        )
        .unwrap_err();
        assert!(
            e.message.ends_with(
                r#": RBAC: [clusterrole.rbac.authorization.k8s.io "gone-too" not found, role.rbac.authorization.k8s.io "gone" not found]"#
            ),
            "{}",
            e.message
        );
    }
}
