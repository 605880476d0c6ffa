//! Field ownership (`metadata.managedFields`): which field manager set which field, what
//! server-side apply removes when a manager stops sending a field, and when an apply
//! conflicts with another manager. The rules are structured-merge-diff's, the library
//! behind the real server (see
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/>):
//!
//! - An update (POST, PUT, JSON/merge/strategic patch) gives its manager (operation
//!   `Update`) the fields it added or changed and takes them from every other manager;
//!   a field it removed is nobody's any more. It never conflicts.
//! - An apply makes its manager (operation `Apply`) own exactly the applied fields. A
//!   field the manager applied last time and not this time is removed from the object,
//!   unless another manager owns it too. Changing a field another manager owns is a
//!   conflict (409) unless `force`, which moves the field to the applier; applying the
//!   value a field already has shares it.
//! - Entries are per manager, operation and subresource, so `m` applying and `m`
//!   updating are two owners, and so are `m` on the object and `m` on `/status`.
//!
//! Simplifications: a field set holds leaf paths only (scalars, `null`, empty maps, and
//! every list as one field), so lists are owned and replaced whole — never merged by
//! key as `listType: map`/`set` lists are on the real server — and `fieldsV1` has only
//! `f:` keys (and `.` for a member that also has owned children), no `k:`/`v:`/`i:`.
//! An update entry is per manager whatever the `apiVersion` (the real server keeps one
//! per version).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::store::Subresource;

/// A field: the member names from the object's root.
pub(crate) type Path = Vec<String>;

/// Owned fields.
pub(crate) type FieldSet = BTreeSet<Path>;

/// Fields only the server sets, which nobody owns (structured-merge-diff's strip set).
const SERVER_FIELDS: [&[&str]; 12] = [
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "clusterName"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
];

fn server_field(path: &[String]) -> bool {
    SERVER_FIELDS
        .iter()
        .any(|s| s.len() == path.len() && s.iter().zip(path).all(|(a, b)| a == b))
}

/// `.status.issuer`, as the real server prints a path in conflicts.
pub(crate) fn path_string(path: &[String]) -> String {
    path.iter().fold(String::new(), |mut s, f| {
        let _ = write!(s, ".{f}");
        s
    })
}

/// The part of an object a write may change, so the part whose fields it can own: with a
/// status subresource, `/status` writes only `status` and main writes everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Where the write goes.
    pub sub: Subresource,
    /// Whether the kind has a status subresource.
    pub status_subresource: bool,
}

impl Scope {
    fn contains(self, path: &[String]) -> bool {
        let in_status = path.first().is_some_and(|f| f == "status");
        match self.sub {
            Subresource::Status => in_status,
            Subresource::Main => !(self.status_subresource && in_status),
        }
    }
}

/// The leaf fields of `obj` within `scope` with their values: scalars, `null`s, lists
/// and empty maps (a non-empty map is only the sum of its members).
pub(crate) fn leaves(obj: &Value, scope: Scope) -> BTreeMap<Path, &Value> {
    fn walk<'a>(v: &'a Value, path: &mut Path, out: &mut BTreeMap<Path, &'a Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ if path.is_empty() => {}
            leaf => {
                out.insert(path.clone(), leaf);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(obj, &mut Vec::new(), &mut out);
    out.retain(|p, _| scope.contains(p) && !server_field(p));
    out
}

/// The fields of an applied configuration.
pub(crate) fn field_set(obj: &Value, scope: Scope) -> FieldSet {
    leaves(obj, scope).into_keys().collect()
}

/// What a write changed, field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    /// Added or given another value.
    pub changed: FieldSet,
    /// Gone.
    pub removed: FieldSet,
}

impl Diff {
    /// Between the stored object and the one to store.
    pub(crate) fn between(old: &Value, new: &Value, scope: Scope) -> Self {
        let before = leaves(old, scope);
        let after = leaves(new, scope);
        Self {
            changed: after
                .iter()
                .filter(|(p, v)| before.get(*p) != Some(*v))
                .map(|(p, _)| p.clone())
                .collect(),
            removed: before
                .into_keys()
                .filter(|p| !after.contains_key(p))
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Removes field `path` from `obj` if it is a leaf there: a map that has members now
/// (someone else's, once it was empty) stays.
pub(crate) fn remove_leaf(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for p in parents {
        match node.get_mut(p.as_str()) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Value::Object(m) = node
        && m.get(last)
            .is_some_and(|v| v.as_object().is_none_or(Map::is_empty))
    {
        m.remove(last);
    }
}

/// `managedFields[].operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// Who writes: the owner the write's fields go to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// Apply or update.
    pub operation: Operation,
    /// Main resource or `/status`.
    pub sub: Subresource,
    /// The `apiVersion` written with.
    pub api_version: &'a str,
}

impl Writer<'_> {
    fn subresource(&self) -> &'static str {
        match self.sub {
            Subresource::Main => "",
            Subresource::Status => "status",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    manager: String,
    operation: Operation,
    /// `""` for the main resource.
    subresource: String,
    api_version: String,
    time: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn is(&self, w: &Writer<'_>) -> bool {
        self.manager == w.manager
            && self.operation == w.operation
            && self.subresource == w.subresource()
    }

    /// The manager as the real server names it in a conflict.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            let _ = write!(s, " with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            let _ = write!(s, " using {}", self.api_version);
            if let Some(t) = &self.time {
                let _ = write!(s, " at {t}");
            }
        }
        s
    }

    fn decode(v: &Value) -> Option<Self> {
        let operation = match v["operation"].as_str()? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        let mut fields = FieldSet::new();
        decode_fields(&v["fieldsV1"], &mut Vec::new(), &mut fields);
        Some(Self {
            manager: v["manager"].as_str().unwrap_or_default().to_owned(),
            operation,
            subresource: v["subresource"].as_str().unwrap_or_default().to_owned(),
            api_version: v["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: v["time"].as_str().map(str::to_owned),
            fields,
        })
    }

    fn encode(&self) -> Value {
        let mut e = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields(&self.fields),
        });
        if let Some(t) = &self.time {
            e["time"] = t.clone().into();
        }
        if !self.subresource.is_empty() {
            e["subresource"] = self.subresource.clone().into();
        }
        e
    }
}

/// `fieldsV1`: `{"f:spec": {"f:x": {}}}`; a member that also has owned members below it
/// carries `".": {}`.
fn encode_fields(set: &FieldSet) -> Value {
    fn strip_lone_dots(v: &mut Value) {
        if let Value::Object(m) = v {
            if m.len() == 1 && m.contains_key(".") {
                m.clear();
            }
            m.values_mut().for_each(strip_lone_dots);
        }
    }
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut node = &mut root;
        for f in path {
            node = &mut node[format!("f:{f}")];
            if !node.is_object() {
                *node = json!({});
            }
        }
        node["."] = json!({});
    }
    strip_lone_dots(&mut root);
    root
}

/// The inverse of [`encode_fields`]. Keys other than `f:` and `.` (list items by key,
/// value or index, which the fake never writes) are skipped.
fn decode_fields(v: &Value, path: &mut Path, out: &mut FieldSet) {
    let Value::Object(m) = v else {
        return;
    };
    if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
        out.insert(path.clone());
    }
    for (k, child) in m {
        if let Some(f) = k.strip_prefix("f:") {
            path.push(f.to_owned());
            decode_fields(child, path, out);
            path.pop();
        }
    }
}

/// The ownership of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ManagedFields {
    entries: Vec<Entry>,
}

impl ManagedFields {
    /// Read from a stored object's `metadata.managedFields`.
    pub(crate) fn of(obj: &Value) -> Self {
        Self {
            entries: obj["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Entry::decode)
                .collect(),
        }
    }

    /// Writes `metadata.managedFields` (omitted when empty), in the real server's order:
    /// Apply before Update, then oldest first.
    pub(crate) fn write_to(&self, obj: &mut Value) {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| {
            (
                a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert(
                "managedFields".into(),
                entries.into_iter().map(Entry::encode).collect(),
            );
        }
    }

    /// The fields `writer` owns (empty if it has no entry).
    pub(crate) fn owned_by(&self, writer: &Writer<'_>) -> FieldSet {
        self.entries
            .iter()
            .find(|e| e.is(writer))
            .map(|e| e.fields.clone())
            .unwrap_or_default()
    }

    /// What an apply of `config` by `writer` removes from the object: the fields it
    /// applied last time and not now, that no other manager owns.
    pub(crate) fn to_prune(&self, writer: &Writer<'_>, config: &FieldSet) -> FieldSet {
        let others: FieldSet = self
            .entries
            .iter()
            .filter(|e| !e.is(writer))
            .flat_map(|e| e.fields.iter().cloned())
            .collect();
        self.owned_by(writer)
            .into_iter()
            .filter(|p| !config.contains(p) && !others.contains(p))
            .collect()
    }

    /// Records an update: `writer` gets what it changed, nobody keeps what it removed.
    pub(crate) fn update(&mut self, writer: &Writer<'_>, diff: &Diff, now: &str) {
        for e in self.entries.iter_mut().filter(|e| !e.is(writer)) {
            e.fields
                .retain(|p| !diff.changed.contains(p) && !diff.removed.contains(p));
        }
        if !diff.changed.is_empty() {
            let own = self.entry_mut(writer);
            own.fields.extend(diff.changed.iter().cloned());
            writer.api_version.clone_into(&mut own.api_version);
            own.time = Some(now.to_owned());
        }
        if let Some(own) = self.entries.iter_mut().find(|e| e.is(writer)) {
            own.fields.retain(|p| !diff.removed.contains(p));
        }
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Records an apply of the fields `config` that changed the object by `diff`: 409
    /// `Conflict` naming every field another manager owns and `diff` changes, unless
    /// `force`, which takes those fields from their managers.
    pub(crate) fn apply(
        &mut self,
        writer: &Writer<'_>,
        config: FieldSet,
        diff: &Diff,
        force: bool,
        now: &str,
    ) -> Result<(), ApiError> {
        // An applied `null` removes the field: a change of value for whoever owns it.
        let contested: FieldSet = diff
            .changed
            .iter()
            .chain(diff.removed.intersection(&config))
            .cloned()
            .collect();
        let conflicts: Vec<(String, Path)> = self
            .entries
            .iter()
            .filter(|e| !e.is(writer))
            .flat_map(|e| {
                e.fields
                    .intersection(&contested)
                    .map(|p| (e.describe(), p.clone()))
            })
            .collect();
        if !conflicts.is_empty() && !force {
            return Err(ApiError::apply_conflict(&conflicts));
        }
        for e in self.entries.iter_mut().filter(|e| !e.is(writer)) {
            e.fields
                .retain(|p| !contested.contains(p) && !diff.removed.contains(p));
        }
        let is_new = !self.entries.iter().any(|e| e.is(writer));
        let own = self.entry_mut(writer);
        own.fields = config;
        writer.api_version.clone_into(&mut own.api_version);
        if is_new || !diff.is_empty() {
            own.time = Some(now.to_owned());
        }
        self.entries.retain(|e| !e.fields.is_empty());
        Ok(())
    }

    fn entry_mut(&mut self, writer: &Writer<'_>) -> &mut Entry {
        let i = self
            .entries
            .iter()
            .position(|e| e.is(writer))
            .unwrap_or_else(|| {
                self.entries.push(Entry {
                    manager: writer.manager.to_owned(),
                    operation: writer.operation,
                    subresource: writer.subresource().to_owned(),
                    api_version: writer.api_version.to_owned(),
                    time: None,
                    fields: FieldSet::new(),
                });
                self.entries.len() - 1
            });
        &mut self.entries[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Path {
        p.split('.').skip(1).map(str::to_owned).collect()
    }

    fn set(paths: &[&str]) -> FieldSet {
        paths.iter().map(|p| path(p)).collect()
    }

    const MAIN: Scope = Scope {
        sub: Subresource::Main,
        status_subresource: true,
    };

    #[test]
    fn leaves_are_scalars_nulls_lists_and_empty_maps_without_server_fields() {
        let obj = json!({
            "apiVersion": "v1", "kind": "X",
            "metadata": {"name": "n", "uid": "u", "labels": {"a": "b"}, "annotations": {}},
            "spec": {"list": [{"x": 1}], "none": null, "deep": {"n": 1}},
            "status": {"s": 1},
        });
        assert_eq!(
            field_set(&obj, MAIN),
            set(&[
                ".metadata.annotations",
                ".metadata.labels.a",
                ".spec.deep.n",
                ".spec.list",
                ".spec.none"
            ])
        );
        let status = Scope {
            sub: Subresource::Status,
            ..MAIN
        };
        assert_eq!(field_set(&obj, status), set(&[".status.s"]));
        let no_subresource = Scope {
            status_subresource: false,
            ..MAIN
        };
        assert!(field_set(&obj, no_subresource).contains(&path(".status.s")));
    }

    #[test]
    fn fields_v1_round_trips_with_a_dot_for_a_member_that_has_members() {
        let fields = set(&[".metadata.labels", ".metadata.labels.a", ".spec.x"]);
        let encoded = encode_fields(&fields);
        assert_eq!(
            encoded,
            json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}, "f:spec": {"f:x": {}}})
        );
        let mut decoded = FieldSet::new();
        decode_fields(&encoded, &mut Vec::new(), &mut decoded);
        assert_eq!(decoded, fields);
    }

    #[test]
    fn a_diff_tells_changed_from_removed_fields() {
        let old = json!({"spec": {"a": 1, "b": 1, "c": {"d": 1}}});
        let new = json!({"spec": {"a": 1, "b": 2, "c": {}, "e": [1]}});
        let d = Diff::between(&old, &new, MAIN);
        assert_eq!(d.changed, set(&[".spec.b", ".spec.c", ".spec.e"]));
        assert_eq!(d.removed, set(&[".spec.c.d"]));
    }

    #[test]
    fn removing_a_leaf_keeps_a_map_that_has_members_now() {
        let mut obj = json!({"spec": {"a": 1, "m": {"k": 1}}});
        remove_leaf(&mut obj, &path(".spec.m"));
        remove_leaf(&mut obj, &path(".spec.a"));
        remove_leaf(&mut obj, &path(".spec.missing.x"));
        assert_eq!(obj, json!({"spec": {"m": {"k": 1}}}));
    }

    #[test]
    fn applying_null_to_another_managers_field_conflicts() {
        let one = Writer {
            manager: "one",
            operation: Operation::Apply,
            sub: Subresource::Main,
            api_version: "v1",
        };
        let two = Writer {
            manager: "two",
            ..one
        };
        let mut owners = ManagedFields::default();
        let added = Diff {
            changed: set(&[".spec.a"]),
            removed: FieldSet::new(),
        };
        owners
            .apply(&one, set(&[".spec.a"]), &added, false, "t")
            .unwrap();
        let nulled = Diff {
            changed: FieldSet::new(),
            removed: set(&[".spec.a"]),
        };
        let err = owners
            .apply(&two, set(&[".spec.a"]), &nulled, false, "t")
            .unwrap_err();
        assert_eq!(err.code, 409);
    }
}
