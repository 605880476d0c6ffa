//! An in-memory Kubernetes API server behind `kube::Client` (a dispatching
//! `tower_test` mock, TOOLING §4c), enough for the operator's reconcilers and the
//! kube-runtime `Controller` loop: GET/LIST (equality label selectors), WATCH from a
//! resourceVersion (newline-delimited events, answered as soon as there is something to
//! send), server-side apply (create-on-apply, status subresource), JSON patches of
//! finalizers (with `test`), merge patches, POST, PUT with resourceVersion checks, and
//! DELETE with finalizers (deletionTimestamp first, gone once the last one is removed).
//!
//! Not modelled, so nobody mistakes it for the real thing: field ownership of
//! server-side apply (an apply replaces the top-level fields it names and merges
//! labels/annotations), schema validation and defaulting, set-based selectors, paging,
//! bookmarks, owner-reference garbage collection, admission and RBAC.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::SendResponse;

/// Where an object lives: `group/version`, plural, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub gv: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug)]
struct Route {
    gv: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let (gv, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        ("v1".to_owned(), rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.splitn(3, '/');
        let group = parts.next()?;
        let version = parts.next()?;
        (format!("{group}/{version}"), parts.next()?)
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (namespace, segs) = if segs.first() == Some(&"namespaces") && segs.len() >= 3 {
        (Some(segs[1].to_owned()), &segs[2..])
    } else {
        (None, &segs[..])
    };
    Some(Route {
        gv,
        plural: (*segs.first()?).to_owned(),
        namespace,
        name: segs.get(1).map(|s| (*s).to_owned()),
        subresource: segs.get(2).map(|s| (*s).to_owned()),
    })
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            v.replace("%2F", "/")
                .replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%3A", ":")
                .replace("%21", "!")
        })
    })
}

fn labels_match(obj: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k] == json!(v),
        None => match term.strip_prefix('!') {
            Some(k) => obj["metadata"]["labels"][k].is_null(),
            None => !obj["metadata"]["labels"][term].is_null(),
        },
    })
}

/// `fieldSelector` terms `dotted.path=value` (what the operator sends: `metadata.name`).
fn fields_match(obj: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| {
        let Some((path, v)) = term.split_once('=') else {
            return false;
        };
        path.split('.').fold(obj, |o, k| &o[k]) == &json!(v)
    })
}

struct Watch {
    gv: String,
    plural: String,
    namespace: Option<String>,
    selector: Option<String>,
    fields: Option<String>,
    since: u64,
    send: SendResponse<Response<Body>>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    /// Every change: (resourceVersion, key, event type, object).
    history: Vec<(u64, Key, &'static str, Value)>,
    rv: u64,
    uid: u64,
    parked: Vec<Watch>,
    /// `METHOD path?query` of every request, in order.
    requests: Vec<String>,
}

/// The fake API server. Clone it freely; all clones share the state.
#[derive(Clone, Default)]
pub struct FakeKube {
    state: Arc<Mutex<State>>,
}

impl FakeKube {
    /// A `kube::Client` served by a new fake.
    pub fn start() -> (kube::Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = Self::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                server.handle(req, send).await;
            }
        });
        (kube::Client::new(service, "default"), fake)
    }

    /// Stores `obj` as if created through the API (uid, resourceVersion, generation and
    /// creationTimestamp filled in when absent).
    pub fn insert(&self, obj: Value) {
        let key = key_of(&obj);
        let mut s = self.state.lock().unwrap();
        let obj = s.stamp_new(obj);
        s.commit(key, "ADDED", obj);
    }

    /// The stored object at `key`.
    pub fn get(
        &self,
        gv: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = Key {
            gv: gv.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.map(Into::into),
            name: name.to_owned(),
        };
        self.state.lock().unwrap().objects.get(&key).cloned()
    }

    /// Changes a stored object in place (a user's `kubectl edit`), bumping
    /// resourceVersion, and generation when the spec changed.
    pub fn edit(
        &self,
        gv: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) {
        let key = Key {
            gv: gv.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.map(Into::into),
            name: name.to_owned(),
        };
        let mut s = self.state.lock().unwrap();
        let mut obj = s.objects.get(&key).cloned().expect("object to edit exists");
        let spec = obj["spec"].clone();
        f(&mut obj);
        if obj["spec"] != spec {
            bump_generation(&mut obj);
        }
        s.commit(key, "MODIFIED", obj);
    }

    /// `kubectl delete`: sets deletionTimestamp while finalizers remain, else removes.
    pub fn delete(&self, gv: &str, plural: &str, namespace: Option<&str>, name: &str) {
        let key = Key {
            gv: gv.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.map(Into::into),
            name: name.to_owned(),
        };
        let mut s = self.state.lock().unwrap();
        s.delete(&key);
    }

    /// Every request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    #[allow(clippy::too_many_lines)] // one dispatch table reads best in one place
    async fn handle(&self, req: Request<Body>, send: SendResponse<Response<Body>>) {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut s = self.state.lock().unwrap();
        s.requests.push(format!("{method} {path}?{query}"));
        let Some(r) = route(&path) else {
            return respond(
                send,
                StatusCode::NOT_FOUND,
                &status_body(404, "NotFound", &path),
            );
        };
        let is_watch = query_param(&query, "watch").as_deref() == Some("true");
        match (method, r.name.clone()) {
            (Method::GET, None) if is_watch => {
                let since = query_param(&query, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let watch = Watch {
                    gv: r.gv,
                    plural: r.plural,
                    namespace: r.namespace,
                    selector: query_param(&query, "labelSelector"),
                    fields: query_param(&query, "fieldSelector"),
                    since,
                    send,
                };
                s.serve_or_park(watch);
            }
            (Method::GET, None) => {
                let selector = query_param(&query, "labelSelector");
                let fields = query_param(&query, "fieldSelector");
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|(k, o)| {
                        k.gv == r.gv
                            && k.plural == r.plural
                            && (r.namespace.is_none() || k.namespace == r.namespace)
                            && labels_match(o, selector.as_deref())
                            && fields_match(o, fields.as_deref())
                    })
                    .map(|(_, o)| o.clone())
                    .collect();
                let list = json!({
                    "apiVersion": r.gv, "kind": "List",
                    "metadata": {"resourceVersion": s.rv.to_string()},
                    "items": items,
                });
                respond(send, StatusCode::OK, &list);
            }
            (Method::GET, Some(name)) => match s.objects.get(&r.key(&name)) {
                Some(o) => respond(send, StatusCode::OK, o),
                None => respond(
                    send,
                    StatusCode::NOT_FOUND,
                    &status_body(404, "NotFound", &name),
                ),
            },
            (Method::POST, None) => {
                let mut obj = body;
                if let Some(ns) = &r.namespace {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let key = r.key(&name);
                if s.objects.contains_key(&key) {
                    return respond(
                        send,
                        StatusCode::CONFLICT,
                        &status_body(409, "AlreadyExists", &name),
                    );
                }
                let obj = s.stamp_new(obj);
                let stored = s.commit(key, "ADDED", obj);
                respond(send, StatusCode::CREATED, &stored);
            }
            (Method::PUT, Some(name)) => {
                let key = r.key(&name);
                let Some(current) = s.objects.get(&key).cloned() else {
                    return respond(
                        send,
                        StatusCode::NOT_FOUND,
                        &status_body(404, "NotFound", &name),
                    );
                };
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return respond(
                        send,
                        StatusCode::CONFLICT,
                        &status_body(409, "Conflict", &name),
                    );
                }
                let mut obj = body;
                for k in ["uid", "creationTimestamp", "generation"] {
                    obj["metadata"][k] = current["metadata"][k].clone();
                }
                let stored = s.commit(key, "MODIFIED", obj);
                respond(send, StatusCode::OK, &stored);
            }
            (Method::PATCH, Some(name)) => {
                let key = r.key(&name);
                let result = if content_type.starts_with("application/apply-patch") {
                    s.apply(&key, &r, body)
                } else if content_type.starts_with("application/json-patch") {
                    s.json_patch(&key, &body)
                } else {
                    s.merge_patch(&key, &r, body)
                };
                match result {
                    Ok(stored) => respond(send, StatusCode::OK, &stored),
                    Err((code, reason)) => respond(
                        send,
                        StatusCode::from_u16(code).unwrap(),
                        &status_body(code, reason, &name),
                    ),
                }
            }
            (Method::DELETE, Some(name)) => {
                let key = r.key(&name);
                if s.objects.contains_key(&key) {
                    s.delete(&key);
                    respond(
                        send,
                        StatusCode::OK,
                        &json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}}),
                    );
                } else {
                    respond(
                        send,
                        StatusCode::NOT_FOUND,
                        &status_body(404, "NotFound", &name),
                    );
                }
            }
            (m, _) => respond(
                send,
                StatusCode::METHOD_NOT_ALLOWED,
                &status_body(405, "MethodNotAllowed", m.as_str()),
            ),
        }
    }
}

impl Route {
    fn key(&self, name: &str) -> Key {
        Key {
            gv: self.gv.clone(),
            plural: self.plural.clone(),
            namespace: self.namespace.clone(),
            name: name.to_owned(),
        }
    }
}

fn plural_of(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

fn key_of(obj: &Value) -> Key {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion");
    Key {
        gv: api_version.to_owned(),
        plural: plural_of(obj["kind"].as_str().expect("kind")),
        namespace: obj["metadata"]["namespace"].as_str().map(Into::into),
        name: obj["metadata"]["name"].as_str().expect("name").to_owned(),
    }
}

fn bump_generation(obj: &mut Value) {
    let g = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    obj["metadata"]["generation"] = json!(g + 1);
}

fn status_body(code: u16, reason: &str, what: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "metadata": {},
           "reason": reason, "code": code, "message": format!("{reason}: {what}")})
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn merge_map(target: &mut Value, patch: &Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    } else if !patch.is_null() {
        *target = patch.clone();
    }
}

impl State {
    fn stamp_new(&mut self, mut obj: Value) -> Value {
        self.uid += 1;
        let m = &mut obj["metadata"];
        if m["uid"].is_null() {
            m["uid"] = json!(format!("uid-{}", self.uid));
        }
        if m["creationTimestamp"].is_null() {
            m["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        if m["generation"].is_null() {
            m["generation"] = json!(1);
        }
        obj
    }

    /// Stores `obj` under a new resourceVersion and notifies watchers.
    fn commit(&mut self, key: Key, event: &'static str, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if event == "DELETED" {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), obj.clone());
        }
        self.history.push((self.rv, key, event, obj.clone()));
        let parked = std::mem::take(&mut self.parked);
        for w in parked {
            self.serve_or_park(w);
        }
        obj
    }

    fn delete(&mut self, key: &Key) {
        let Some(mut obj) = self.objects.get(key).cloned() else {
            return;
        };
        let has_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if obj["metadata"]["deletionTimestamp"].is_null() {
                obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                self.commit(key.clone(), "MODIFIED", obj);
            }
        } else {
            self.commit(key.clone(), "DELETED", obj);
        }
    }

    fn serve_or_park(&mut self, w: Watch) {
        let events: Vec<String> = self
            .history
            .iter()
            .filter(|(rv, k, _, o)| {
                *rv > w.since
                    && k.gv == w.gv
                    && k.plural == w.plural
                    && (w.namespace.is_none() || k.namespace == w.namespace)
                    && labels_match(o, w.selector.as_deref())
                    && fields_match(o, w.fields.as_deref())
            })
            .map(|(_, _, t, o)| json!({"type": t, "object": o}).to_string() + "\n")
            .collect();
        if events.is_empty() {
            self.parked.push(w);
        } else {
            w.send.send_response(
                Response::builder()
                    .status(StatusCode::OK)
                    .body(Body::from(events.concat().into_bytes()))
                    .unwrap(),
            );
        }
    }

    fn apply(&mut self, key: &Key, r: &Route, body: Value) -> Result<Value, (u16, &'static str)> {
        let existing = self.objects.get(key).cloned();
        if r.subresource.as_deref() == Some("status") {
            let mut obj = existing.ok_or((404, "NotFound"))?;
            obj["status"] = body["status"].clone();
            return Ok(self.commit(key.clone(), "MODIFIED", obj));
        }
        let Some(mut obj) = existing else {
            let mut obj = body;
            obj["metadata"]["name"] = json!(key.name);
            if let Some(ns) = &key.namespace {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let obj = self.stamp_new(obj);
            return Ok(self.commit(key.clone(), "ADDED", obj));
        };
        let spec = obj["spec"].clone();
        for (k, v) in body.as_object().into_iter().flatten() {
            match k.as_str() {
                "metadata" => {
                    for field in ["labels", "annotations"] {
                        if !v[field].is_null() {
                            if obj["metadata"][field].is_null() {
                                obj["metadata"][field] = json!({});
                            }
                            merge_map(&mut obj["metadata"][field], &v[field]);
                        }
                    }
                    if !v["ownerReferences"].is_null() {
                        obj["metadata"]["ownerReferences"] = v["ownerReferences"].clone();
                    }
                }
                "status" | "apiVersion" | "kind" => {}
                _ => obj[k] = v.clone(),
            }
        }
        if obj["spec"] != spec {
            bump_generation(&mut obj);
        }
        Ok(self.commit(key.clone(), "MODIFIED", obj))
    }

    fn json_patch(&mut self, key: &Key, ops: &Value) -> Result<Value, (u16, &'static str)> {
        let mut obj = self.objects.get(key).cloned().ok_or((404, "NotFound"))?;
        for op in ops.as_array().into_iter().flatten() {
            let path = op["path"].as_str().unwrap_or_default();
            let pointer = |p: &str| p.to_owned();
            match op["op"].as_str() {
                Some("test") => {
                    let current = obj.pointer(&pointer(path)).cloned().unwrap_or(Value::Null);
                    if current != op["value"] {
                        return Err((422, "Invalid"));
                    }
                }
                Some("add") if path.ends_with("/-") => {
                    let parent = &path[..path.len() - 2];
                    let list = obj.pointer_mut(parent).ok_or((422, "Invalid"))?;
                    list.as_array_mut()
                        .ok_or((422, "Invalid"))?
                        .push(op["value"].clone());
                }
                Some("add") if path == "/metadata/finalizers" => {
                    obj["metadata"]["finalizers"] = op["value"].clone();
                }
                Some("remove") => {
                    let (parent, index) = path.rsplit_once('/').ok_or((422, "Invalid"))?;
                    let index: usize = index.parse().map_err(|_| (422, "Invalid"))?;
                    let list = obj
                        .pointer_mut(parent)
                        .and_then(Value::as_array_mut)
                        .ok_or((422, "Invalid"))?;
                    if index >= list.len() {
                        return Err((422, "Invalid"));
                    }
                    list.remove(index);
                }
                _ => return Err((422, "Invalid")),
            }
        }
        let gone = !obj["metadata"]["deletionTimestamp"].is_null()
            && obj["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        Ok(self.commit(key.clone(), if gone { "DELETED" } else { "MODIFIED" }, obj))
    }

    #[allow(clippy::needless_pass_by_value)]
    fn merge_patch(
        &mut self,
        key: &Key,
        r: &Route,
        body: Value,
    ) -> Result<Value, (u16, &'static str)> {
        let mut obj = self.objects.get(key).cloned().ok_or((404, "NotFound"))?;
        if r.subresource.as_deref() == Some("status") {
            merge_map(&mut obj["status"], &body["status"]);
        } else {
            for (k, v) in body.as_object().into_iter().flatten() {
                if k != "status" {
                    obj[k] = v.clone();
                }
            }
        }
        Ok(self.commit(key.clone(), "MODIFIED", obj))
    }
}
