//! The in-memory object store and the server-side semantics of every write:
//! `resourceVersion` (one global counter), `uid`, `creationTimestamp`, `generation`,
//! status-subresource isolation, field ownership (`managedFields`, see `managed`),
//! no-op detection, finalizers and `deletionTimestamp`,
//! owner-reference garbage collection, namespace termination, CRD registration, and the
//! event history that watches replay from a given `resourceVersion`.
//!
//! Every method is synchronous and runs under the server's one lock, so each request is
//! atomic, as a single etcd transaction would be.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use super::error::{ApiError, Result};
use super::managed::{self, Diff, ManagedFields, Operation, Scope, Writer};
use super::patch::{self, PatchKind};
use super::resources::{self, ResourceType};
use super::schema;
use super::selector::{FieldSelector, LabelSelector};

/// Where a write goes: the main resource or its `/status` subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself: `status` is kept as stored when the kind has a status subresource.
    Main,
    /// `/status`: only `status` changes.
    Status,
}

/// Who makes a write and how, for `managedFields`.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    /// Any write but server-side apply, by this field manager.
    Update(&'a str),
    /// Server-side apply of `config` by `manager`.
    Apply {
        manager: &'a str,
        config: &'a Value,
        force: bool,
    },
}

impl<'a> Change<'a> {
    fn writer(self, api_version: &'a str, sub: Subresource) -> Writer<'a> {
        let (manager, operation) = match self {
            Self::Update(m) => (m, Operation::Update),
            Self::Apply { manager, .. } => (manager, Operation::Apply),
        };
        Writer {
            manager,
            operation,
            sub,
            api_version,
        }
    }
}

/// Identity of a stored object. Objects are stored once per group and plural, whatever
/// version they were written with (no conversion between versions).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjKey {
    pub group: String,
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub(crate) fn new(rt: &ResourceType, namespace: Option<&str>, name: &str) -> Self {
        Self {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        }
    }

    fn namespace_object(name: &str) -> Self {
        Self {
            group: String::new(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name: name.to_owned(),
        }
    }
}

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, kept for watches.
#[derive(Debug, Clone)]
pub(crate) struct HistEntry {
    pub rv: u64,
    pub key: ObjKey,
    pub event: EventType,
    pub object: Value,
    /// The object before a MODIFIED change, so a watch with a selector can turn it into
    /// ADDED or DELETED when the object starts or stops matching, as the real server does.
    pub old: Option<Value>,
}

/// Options of a DELETE.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `Orphan` strips owner references from dependents instead of deleting them;
    /// `Background` (default) and `Foreground` both delete dependents at once.
    pub orphan: bool,
    /// `preconditions.uid`
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`
    pub resource_version: Option<String>,
}

/// The field manager of a write: the `fieldManager` query parameter, else (not for
/// apply, where it is required) the user agent's product name, as the real server takes
/// it, else `unknown`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FieldManager<'a> {
    /// `fieldManager`
    pub query: Option<&'a str>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// `force` (apply only)
    pub force: bool,
}

impl<'a> FieldManager<'a> {
    /// The manager's name.
    pub(crate) fn name(&self) -> &'a str {
        self.query
            .filter(|m| !m.is_empty())
            .or_else(|| {
                self.user_agent
                    .and_then(|ua| ua.split('/').next())
                    .filter(|m| !m.is_empty())
            })
            .unwrap_or("unknown")
    }
}

/// Reads the current time; the only place the fake reads the clock.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The store. See the module docs.
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    history: VecDeque<HistEntry>,
    /// The history holds every event with `rv > history_start`.
    history_start: u64,
    history_limit: usize,
    resources: Vec<ResourceType>,
    schemas: HashMap<(String, String, String), Value>,
    uid_prefix: u32,
    counter: u64,
    changed: watch::Sender<u64>,
    jobs_created: Option<mpsc::UnboundedSender<ObjKey>>,
    /// Container logs by `(namespace, pod)`, written by the kubelet.
    pub(crate) pod_logs: HashMap<(String, String), String>,
}

fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)[field].as_str()
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    meta(obj)["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(str::to_owned))
        .collect()
}

/// Everything but `metadata` (and `status` when a subresource owns it): what a change
/// of bumps `metadata.generation`.
fn generation_content(obj: &Value, status_subresource: bool) -> Value {
    let mut c = obj.clone();
    if let Value::Object(m) = &mut c {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_subresource {
            m.remove("status");
        }
    }
    c
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Folds `stringData` into base64 `data`, as the real server does on every Secret write.
fn normalize_secret(obj: &mut Value) {
    let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (k, v) in string_data {
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        obj["data"][k] = base64::engine::general_purpose::STANDARD
            .encode(text)
            .into();
    }
}

impl Store {
    pub(crate) fn new(
        history_limit: usize,
        changed: watch::Sender<u64>,
        jobs_created: Option<mpsc::UnboundedSender<ObjKey>>,
    ) -> Self {
        let seed = jiff::Timestamp::now().subsec_nanosecond().unsigned_abs() ^ std::process::id();
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_start: 1,
            history_limit: history_limit.max(1),
            resources: resources::built_in(),
            schemas: HashMap::new(),
            uid_prefix: seed,
            counter: 0,
            changed,
            jobs_created,
            pod_logs: HashMap::new(),
        }
    }

    /// The latest `resourceVersion`.
    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The resources served now (built-in and from applied CRDs), later registrations first.
    pub(crate) fn resources(&self) -> impl Iterator<Item = &ResourceType> {
        self.resources.iter().rev()
    }

    /// Looks up a served resource by URL parts.
    pub(crate) fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<ResourceType> {
        self.resources()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    fn resource_for_key(&self, key: &ObjKey) -> Option<ResourceType> {
        self.resources()
            .find(|r| r.group == key.group && r.plural == key.plural)
            .cloned()
    }

    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn new_uid(&mut self) -> String {
        let n = self.next_counter();
        format!("{:08x}-0000-4000-8000-{n:012x}", self.uid_prefix)
    }

    /// A 5-character suffix like the real server's `generateName` ones.
    pub(crate) fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self
            .next_counter()
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(self.uid_prefix));
        (0..5)
            .map(|_| {
                let c = ALPHABET[usize::try_from(n % 27).unwrap_or_default()];
                n /= 27;
                char::from(c)
            })
            .collect()
    }

    fn record(&mut self, event: EventType, key: &ObjKey, object: &Value, old: Option<Value>) {
        self.history.push_back(HistEntry {
            rv: self.rv,
            key: key.clone(),
            event,
            object: object.clone(),
            old,
        });
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.history_start = e.rv;
            }
        }
        self.changed.send_replace(self.rv);
    }

    /// The object as served through `rt` (its `apiVersion` set to the requested version).
    pub(crate) fn present(rt: &ResourceType, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = rt.api_version().into();
        o["kind"] = rt.kind.clone().into();
        o
    }

    pub(crate) fn get_key(&self, key: &ObjKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// GET one object.
    pub(crate) fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value> {
        self.objects
            .get(&ObjKey::new(rt, ns, name))
            .map(|o| Self::present(rt, o))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// The stored RBAC objects (ClusterRoles, ClusterRoleBindings, Roles, RoleBindings)
    /// with their `kind`, for the authorizer.
    pub(crate) fn rbac_objects(&self) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.group == "rbac.authorization.k8s.io")
            .filter_map(|(k, o)| Some(Self::present(&self.resource_for_key(k)?, o)))
            .collect()
    }

    /// LIST: matching objects (in name order) and the current `resourceVersion`.
    pub(crate) fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> (Vec<Value>, u64) {
        let items = self
            .objects
            .iter()
            .filter(|(k, _)| {
                k.group == rt.group
                    && k.plural == rt.plural
                    && ns.is_none_or(|ns| k.namespace == ns)
            })
            .filter(|(_, o)| labels.matches(o) && fields.matches(o))
            .map(|(_, o)| Self::present(rt, o))
            .collect();
        (items, self.rv)
    }

    /// Events after `from` for `rt` (optionally one namespace), with the current
    /// `resourceVersion`; `Err(expired)` when `from` predates the kept history.
    pub(crate) fn events_since(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        from: u64,
    ) -> Result<(Vec<HistEntry>, u64)> {
        if from < self.history_start {
            return Err(ApiError::expired(from));
        }
        let start = self.history.partition_point(|e| e.rv <= from);
        let events = self
            .history
            .range(start..)
            .filter(|e| {
                e.key.group == rt.group
                    && e.key.plural == rt.plural
                    && ns.is_none_or(|ns| e.key.namespace == ns)
            })
            .cloned()
            .collect();
        Ok((events, self.rv))
    }

    fn check_type_meta(rt: &ResourceType, obj: &mut Value, required: bool) -> Result<()> {
        let expected = rt.api_version();
        match obj["apiVersion"].as_str() {
            Some(v) if v != expected => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({expected})"
                )));
            }
            None if required => {
                return Err(ApiError::bad_request("apiVersion must be set"));
            }
            _ => {}
        }
        match obj["kind"].as_str() {
            Some(k) if k != rt.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    rt.kind
                )));
            }
            None if required => return Err(ApiError::bad_request("kind must be set")),
            _ => {}
        }
        obj["apiVersion"] = expected.into();
        obj["kind"] = rt.kind.clone().into();
        Ok(())
    }

    /// Defaults, prunes and validates a custom resource against its CRD schema, if one
    /// was applied: the structural checks of `schema`, then the CEL rules
    /// (`x-kubernetes-validations`, transition rules with `oldSelf` on updates).
    fn validate(
        &self,
        rt: &ResourceType,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<()> {
        let key = (rt.group.clone(), rt.version.clone(), rt.plural.clone());
        let Some(s) = self.schemas.get(&key) else {
            return Ok(());
        };
        let errors = schema::apply(obj, s);
        if !errors.is_empty() {
            return Err(ApiError::invalid(rt, name, &errors));
        }
        schema::check_cel(s, obj, old).map_err(|causes| ApiError::invalid(rt, name, &causes))
    }

    /// `metadata.name`, or `generateName` plus a suffix, checked like the real server.
    fn name_for_create(&mut self, rt: &ResourceType, obj: &Value) -> Result<String> {
        let generate_name = meta_str(obj, "generateName").map(str::to_owned);
        let name = match (meta_str(obj, "name"), generate_name) {
            (Some(n), _) if !n.is_empty() => n.to_owned(),
            (_, Some(prefix)) => format!("{prefix}{}", self.random_suffix()),
            _ => {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
        };
        let name_ok = if rt.kind == "Namespace" {
            is_dns_label(&name)
        } else {
            rt.group.starts_with("rbac.") || is_dns_subdomain(&name)
        };
        if !name_ok {
            return Err(ApiError::invalid(
                rt,
                &name,
                &[(
                    "metadata.name".into(),
                    format!("Invalid value: {name:?}: must be a lowercase RFC 1123 name"),
                )],
            ));
        }
        Ok(name)
    }

    /// The namespace a new object goes to: the URL's, which must exist and not be
    /// terminating; `None` for cluster-scoped kinds.
    fn namespace_for_create<'a>(
        &self,
        rt: &ResourceType,
        ns: Option<&'a str>,
        obj: &Value,
        name: &str,
    ) -> Result<Option<&'a str>> {
        if !rt.namespaced {
            return Ok(None);
        }
        let Some(ns) = ns else {
            return Err(ApiError::bad_request(format!(
                "{} must be created in a namespace",
                rt.group_resource()
            )));
        };
        if let Some(body_ns) = meta_str(obj, "namespace")
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        match self.objects.get(&ObjKey::namespace_object(ns)) {
            None => Err(match self.resource("", "v1", "namespaces") {
                Some(ns_rt) => ApiError::not_found(&ns_rt, ns),
                None => ApiError::bad_request(format!("namespace {ns} not found")),
            }),
            Some(n) if meta(n).get("deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rt.group_resource()
                )))
            }
            Some(_) => Ok(Some(ns)),
        }
    }

    /// POST: create, the fields owned by `manager` (an update).
    pub(crate) fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Value> {
        self.create_as(rt, ns, obj, Change::Update(manager), dry_run)
    }

    /// Create, by POST or by server-side apply.
    fn create_as(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        change: Change<'_>,
        dry_run: bool,
    ) -> Result<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        Self::check_type_meta(rt, &mut obj, false)?;
        let name = self.name_for_create(rt, &obj)?;
        let ns = self.namespace_for_create(rt, ns, &obj, &name)?;
        let key = ObjKey::new(rt, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt, &name));
        }
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), name.clone().into());
            match ns {
                Some(ns) => {
                    m.insert("namespace".into(), ns.into());
                }
                None => {
                    m.remove("namespace");
                }
            }
            for f in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
                "selfLink",
            ] {
                m.remove(f);
            }
        }
        if rt.status_subresource
            && let Value::Object(o) = &mut obj
        {
            o.remove("status");
        }
        if rt.group.is_empty() && rt.kind == "Secret" {
            normalize_secret(&mut obj);
        }
        self.validate(rt, &name, &mut obj, None)?;
        let scope = Scope {
            sub: Subresource::Main,
            status_subresource: rt.status_subresource,
        };
        let api_version = rt.api_version();
        let writer = change.writer(&api_version, Subresource::Main);
        let diff = Diff::between(&json!({}), &obj, scope);
        let mut owners = ManagedFields::default();
        match change {
            Change::Update(_) => owners.update(&writer, &diff, &now_rfc3339()),
            // A new object has no other owner to conflict with.
            Change::Apply { config, .. } => owners.apply(
                &writer,
                managed::field_set(config, scope),
                &diff,
                true,
                &now_rfc3339(),
            )?,
        }
        owners.write_to(&mut obj);
        let uid = self.new_uid();
        {
            let m = meta_mut(&mut obj);
            m.insert("uid".into(), uid.into());
            m.insert("creationTimestamp".into(), now_rfc3339().into());
            if rt.generation {
                m.insert("generation".into(), 1.into());
            }
        }
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Namespace") => obj["status"] = json!({"phase": "Active"}),
            ("apiextensions.k8s.io", "CustomResourceDefinition") => crd_status(&mut obj),
            _ => {}
        }
        if dry_run {
            return Ok(obj);
        }
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), self.rv.to_string().into());
        if rt.kind == "CustomResourceDefinition" {
            self.register_crd(&obj);
        }
        self.objects.insert(key.clone(), obj.clone());
        self.record(EventType::Added, &key, &obj, None);
        if rt.group == "batch"
            && rt.kind == "Job"
            && let Some(tx) = &self.jobs_created
        {
            // The kubelet may be gone at shutdown; nothing to run then.
            let _ = tx.send(key);
        }
        Ok(obj)
    }

    /// PUT: replace.
    // The URL's parts, the body and the request's options, as the handler has them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replace(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        sub: Subresource,
        manager: &str,
        dry_run: bool,
    ) -> Result<Value> {
        let key = ObjKey::new(rt, ns, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if !body.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        Self::check_type_meta(rt, &mut body, false)?;
        self.commit_update(rt, &key, &old, body, sub, Change::Update(manager), dry_run)
    }

    /// PATCH, including server-side apply's create-on-apply.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        mut body: Value,
        sub: Subresource,
        manager: &FieldManager<'_>,
        dry_run: bool,
    ) -> Result<Value> {
        if kind == PatchKind::Apply {
            if manager.query.is_none_or(str::is_empty) {
                return Err(ApiError::unprocessable(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                ));
            }
            Self::check_type_meta(rt, &mut body, true)?;
            if let Some(n) = meta_str(&body, "name")
                && n != name
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        let key = ObjKey::new(rt, ns, name);
        let config = body.clone();
        let change = if kind == PatchKind::Apply {
            Change::Apply {
                manager: manager.name(),
                config: &config,
                force: manager.force,
            }
        } else {
            Change::Update(manager.name())
        };
        let Some(old) = self.objects.get(&key).cloned() else {
            if kind == PatchKind::Apply && sub == Subresource::Main {
                meta_mut(&mut body).insert("name".into(), name.into());
                return self.create_as(rt, ns, body, change, dry_run);
            }
            return Err(ApiError::not_found(rt, name));
        };
        let candidate = patch::apply(kind, &old, &body)?;
        self.commit_update(rt, &key, &old, candidate, sub, change, dry_run)
    }

    /// The common tail of PUT and PATCH. See the module docs.
    #[allow(clippy::too_many_arguments)] // as `replace`
    fn commit_update(
        &mut self,
        rt: &ResourceType,
        key: &ObjKey,
        old: &Value,
        candidate: Value,
        sub: Subresource,
        change: Change<'_>,
        dry_run: bool,
    ) -> Result<Value> {
        let name = key.name.as_str();
        if !candidate.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(rv) = meta_str(&candidate, "resourceVersion")
            && Some(rv) != meta_str(old, "resourceVersion")
        {
            return Err(ApiError::conflict(rt, name));
        }
        if let Some(uid) = meta_str(&candidate, "uid")
            && Some(uid) != meta_str(old, "uid")
        {
            // A uid in the body is a precondition on the real server too.
            return Err(ApiError::conflict(rt, name));
        }
        if let Some(n) = meta_str(&candidate, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(n) = meta_str(&candidate, "namespace")
            && !key.namespace.is_empty()
            && n != key.namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut new = Self::merge_subresource(rt, old, candidate, sub);
        keep_server_metadata(old, &mut new);
        if meta(old).get("deletionTimestamp").is_some() {
            let before: BTreeSet<String> = finalizers(old).into_iter().collect();
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[(
                        "metadata.finalizers".into(),
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                    )],
                ));
            }
        }
        if rt.group.is_empty() && rt.kind == "Secret" {
            normalize_secret(&mut new);
        }
        let scope = Scope {
            sub,
            status_subresource: rt.status_subresource,
        };
        let api_version = rt.api_version();
        let writer = change.writer(&api_version, sub);
        let mut owners = ManagedFields::of(old);
        let applied = match change {
            Change::Apply { config, force, .. } => {
                let fields = managed::field_set(config, scope);
                // Before validation, so dropping a required field is refused as on the
                // real server.
                for path in owners.to_prune(&writer, &fields) {
                    managed::remove_leaf(&mut new, &path);
                }
                Some((fields, force))
            }
            Change::Update(_) => None,
        };
        self.validate(rt, name, &mut new, Some(old))?;
        let diff = Diff::between(old, &new, scope);
        match applied {
            Some((fields, force)) => owners.apply(&writer, fields, &diff, force, &now_rfc3339())?,
            None => owners.update(&writer, &diff, &now_rfc3339()),
        }
        owners.write_to(&mut new);
        if rt.kind == "CustomResourceDefinition" {
            crd_status(&mut new);
        }
        if new == *old {
            return Ok(Self::present(rt, old));
        }
        if rt.generation
            && generation_content(&new, rt.status_subresource)
                != generation_content(old, rt.status_subresource)
        {
            let g = meta(old)["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), g.into());
        }
        if dry_run {
            return Ok(Self::present(rt, &new));
        }
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), self.rv.to_string().into());
        if rt.kind == "CustomResourceDefinition" {
            self.register_crd(&new);
        }
        if self.ready_to_remove(key, &new) {
            self.objects.insert(key.clone(), new.clone());
            return Ok(Self::present(rt, &self.remove(key, false)));
        }
        self.objects.insert(key.clone(), new.clone());
        self.record(EventType::Modified, key, &new, Some(old.clone()));
        Ok(Self::present(rt, &new))
    }

    /// Sets an object's `status` as a `/status` write would; used by the kubelet, so
    /// the fields go to the manager the real kubelet (Pods) or job controller (Jobs)
    /// writes as.
    pub(crate) fn set_status(&mut self, key: &ObjKey, status: Value) {
        let (Some(rt), Some(old)) = (self.resource_for_key(key), self.objects.get(key).cloned())
        else {
            return;
        };
        let mut candidate = Map::new();
        candidate.insert("status".into(), status);
        let candidate = Value::Object(candidate);
        let manager = if rt.kind == "Pod" {
            "kubelet"
        } else {
            "kube-controller-manager"
        };
        if let Err(error) = self.commit_update(
            &rt,
            key,
            &old,
            candidate,
            Subresource::Status,
            Change::Update(manager),
            false,
        ) {
            tracing::warn!(%error, name = %key.name, "fake apiserver could not set a status");
        }
    }

    /// A `/status` write keeps everything but `status`; a main write keeps the stored
    /// `status` when a subresource owns it.
    fn merge_subresource(
        rt: &ResourceType,
        old: &Value,
        candidate: Value,
        sub: Subresource,
    ) -> Value {
        match sub {
            Subresource::Status => {
                let mut n = old.clone();
                match (candidate.get("status"), &mut n) {
                    (Some(s), n) => n["status"] = s.clone(),
                    (None, Value::Object(o)) => {
                        o.remove("status");
                    }
                    (None, _) => {}
                }
                n
            }
            Subresource::Main => {
                let mut n = candidate;
                if rt.status_subresource
                    && let Value::Object(o) = &mut n
                {
                    match old.get("status") {
                        Some(s) => {
                            o.insert("status".into(), s.clone());
                        }
                        None => {
                            o.remove("status");
                        }
                    }
                }
                n
            }
        }
    }

    fn ready_to_remove(&self, key: &ObjKey, obj: &Value) -> bool {
        if meta(obj).get("deletionTimestamp").is_none() || !finalizers(obj).is_empty() {
            return false;
        }
        let is_namespace = key.group.is_empty() && key.plural == "namespaces";
        !is_namespace || !self.objects.keys().any(|k| k.namespace == key.name)
    }

    /// DELETE one object.
    pub(crate) fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        dry_run: bool,
    ) -> Result<Value> {
        let key = ObjKey::new(rt, ns, name);
        let obj = self
            .objects
            .get(&key)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if opts
            .uid
            .as_deref()
            .is_some_and(|u| Some(u) != meta_str(obj, "uid"))
            || opts
                .resource_version
                .as_deref()
                .is_some_and(|rv| Some(rv) != meta_str(obj, "resourceVersion"))
        {
            return Err(ApiError::conflict(rt, name));
        }
        if dry_run {
            return Ok(Self::present(rt, obj));
        }
        let out = self.delete_key(&key, opts.orphan);
        Ok(Self::present(rt, &out))
    }

    /// DELETE a collection: every matching object, as individual deletes.
    pub(crate) fn delete_collection(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &DeleteOptions,
    ) -> Vec<Value> {
        let (items, _) = self.list(rt, ns, labels, fields);
        items
            .iter()
            .filter_map(|o| {
                let key = ObjKey::new(rt, meta_str(o, "namespace"), meta_str(o, "name")?);
                Some(Self::present(rt, &self.delete_key(&key, opts.orphan)))
            })
            .collect()
    }

    /// Starts or finishes deleting an object; returns its latest state.
    pub(crate) fn delete_key(&mut self, key: &ObjKey, orphan: bool) -> Value {
        let Some(obj) = self.objects.get(key).cloned() else {
            return Value::Null;
        };
        let is_namespace = key.group.is_empty() && key.plural == "namespaces";
        let pending = !finalizers(&obj).is_empty() || is_namespace;
        if !pending {
            return self.remove(key, orphan);
        }
        let mut current = obj.clone();
        if meta(&obj).get("deletionTimestamp").is_none() {
            let generation = self.resource_for_key(key).is_some_and(|rt| rt.generation);
            {
                let m = meta_mut(&mut current);
                m.insert("deletionTimestamp".into(), now_rfc3339().into());
                m.insert("deletionGracePeriodSeconds".into(), 0.into());
                if generation {
                    let g = meta(&obj)["generation"].as_i64().unwrap_or(0) + 1;
                    m.insert("generation".into(), g.into());
                }
            }
            if is_namespace {
                current["status"] = json!({"phase": "Terminating"});
            }
            self.rv += 1;
            meta_mut(&mut current).insert("resourceVersion".into(), self.rv.to_string().into());
            self.objects.insert(key.clone(), current.clone());
            self.record(EventType::Modified, key, &current, Some(obj));
        }
        if is_namespace {
            let contents: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.namespace == key.name)
                .cloned()
                .collect();
            for k in contents {
                self.delete_key(&k, false);
            }
            return self.finish_namespace(&key.name).unwrap_or(current);
        }
        current
    }

    /// Removes a terminating namespace once it is empty and has no finalizers left.
    fn finish_namespace(&mut self, ns: &str) -> Option<Value> {
        let key = ObjKey::namespace_object(ns);
        let obj = self.objects.get(&key)?;
        if self.ready_to_remove(&key, obj) {
            Some(self.remove(&key, false))
        } else {
            None
        }
    }

    /// Removes an object for good: DELETED event, dependents garbage-collected (or
    /// orphaned), CRD kinds unregistered.
    fn remove(&mut self, key: &ObjKey, orphan: bool) -> Value {
        let Some(mut obj) = self.objects.remove(key) else {
            return Value::Null;
        };
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), self.rv.to_string().into());
        self.record(EventType::Deleted, key, &obj, None);
        if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
            self.unregister_crd(&obj);
        }
        if let Some(uid) = meta_str(&obj, "uid").map(str::to_owned) {
            self.collect_garbage(&uid, orphan);
        }
        if !key.namespace.is_empty() {
            self.finish_namespace(&key.namespace.clone());
        }
        obj
    }

    /// Dependents of a removed owner: deleted when no other owner of theirs exists,
    /// otherwise (or when orphaning) the dangling reference is removed.
    fn collect_garbage(&mut self, owner_uid: &str, orphan: bool) {
        let live_uids: BTreeSet<String> = self
            .objects
            .values()
            .filter_map(|o| meta_str(o, "uid").map(str::to_owned))
            .collect();
        let dependents: Vec<(ObjKey, bool)> = self
            .objects
            .iter()
            .filter(|(_, o)| owner_uids(o).iter().any(|u| u == owner_uid))
            .map(|(k, o)| {
                let other_owner_alive = owner_uids(o)
                    .iter()
                    .any(|u| u != owner_uid && live_uids.contains(u));
                (k.clone(), orphan || other_owner_alive)
            })
            .collect();
        for (key, keep) in dependents {
            if keep {
                self.strip_owner(&key, owner_uid);
            } else {
                self.delete_key(&key, false);
            }
        }
    }

    fn strip_owner(&mut self, key: &ObjKey, owner_uid: &str) {
        let Some(old) = self.objects.get(key).cloned() else {
            return;
        };
        let mut new = old.clone();
        if let Some(Value::Array(refs)) = meta_mut(&mut new).get_mut("ownerReferences") {
            refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
        }
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), self.rv.to_string().into());
        self.objects.insert(key.clone(), new.clone());
        self.record(EventType::Modified, key, &new, Some(old));
    }

    fn register_crd(&mut self, crd: &Value) {
        for (rt, schema) in ResourceType::from_crd(crd) {
            let key = (rt.group.clone(), rt.version.clone(), rt.plural.clone());
            self.resources.retain(|r| {
                !(r.group == rt.group && r.version == rt.version && r.plural == rt.plural)
            });
            self.resources.push(rt);
            match schema {
                Some(s) => {
                    self.schemas.insert(key, s);
                }
                None => {
                    self.schemas.remove(&key);
                }
            }
        }
    }

    /// Forgets a deleted CRD's schemas and deletes its objects; built-in table entries
    /// (Gatehouse's kinds) stay served.
    fn unregister_crd(&mut self, crd: &Value) {
        let built_in = resources::built_in();
        let registered = ResourceType::from_crd(crd);
        for (rt, _) in &registered {
            self.schemas
                .remove(&(rt.group.clone(), rt.version.clone(), rt.plural.clone()));
            self.resources.retain(|r| r != rt || built_in.contains(r));
        }
        if let Some((rt, _)) = registered.first() {
            let keys: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.group == rt.group && k.plural == rt.plural)
                .cloned()
                .collect();
            for k in keys {
                self.remove(&k, false);
            }
        }
    }

    /// Adds a namespace at start-up.
    pub(crate) fn ensure_namespace(&mut self, name: &str) -> Result<()> {
        let Some(rt) = self.resource("", "v1", "namespaces") else {
            return Ok(());
        };
        match self.create(
            &rt,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            "kube-apiserver",
            false,
        ) {
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Metadata only the server sets: identity, timestamps, generation, resourceVersion.
fn keep_server_metadata(old: &Value, new: &mut Value) {
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    {
        let m = meta_mut(new);
        m.remove("managedFields");
        m.remove("selfLink");
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match meta(old).get(f) {
                Some(v) => {
                    m.insert(f.into(), v.clone());
                }
                None => {
                    m.remove(f);
                }
            }
        }
    }
}

/// What the real server reports once a CRD's names are accepted.
fn crd_status(obj: &mut Value) {
    let names = obj["spec"]["names"].clone();
    let t = obj["metadata"]["creationTimestamp"].clone();
    obj["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": t}
        ],
        "storedVersions": obj["spec"]["versions"].as_array().into_iter().flatten()
            .filter(|v| v["storage"].as_bool() == Some(true))
            .filter_map(|v| v["name"].as_str())
            .collect::<Vec<_>>(),
    });
}

#[cfg(test)]
mod tests;
