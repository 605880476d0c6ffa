//! The HTTP surface: URL parsing (`/api/v1/...`, `/apis/{group}/{version}/...`,
//! namespaced, cluster-scoped and cross-namespace), verbs, query parameters, watch
//! streams and discovery.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Shared;
use super::authn::UserInfo;
use super::error::{ApiError, Result};
use super::patch::PatchKind;
use super::rbac::{self, RequestInfo};
use super::requests::RequestKey;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{DeleteOptions, EventType, FieldManager, Store, Subresource};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = shared.options.request_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = dispatch(&shared, &method, &uri, &headers, &body);
    tracing::debug!(%method, %uri, status = %response.status(), "fake apiserver request");
    response
}

/// Query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Self {
        Self(
            url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector)> {
        Ok((
            LabelSelector::parse(self.get("labelSelector").unwrap_or_default())?,
            FieldSelector::parse(self.get("fieldSelector").unwrap_or_default())?,
        ))
    }
}

/// What a resource URL names.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, axum::Json(v)).into_response()
}

fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let path = uri.path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query = Query::parse(uri);
    // As on the real server: authentication, then authorization, before the request is
    // routed (a forbidden request learns nothing, not even whether the resource exists).
    let auth = match authenticate_and_authorize(shared, method, path, &query, headers) {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    // Counted once authenticated and authorized, as the API server's request metric
    // counts what reached a handler (refusals are in `denied_requests`).
    let key = match &auth {
        Some((user, info)) => RequestKey::new(Some(&user.name), info),
        None => RequestKey::new(None, &RequestInfo::parse(method.as_str(), path, &query.0)),
    };
    shared.record_request(key);
    let auth = auth.as_ref().map(|(user, info)| (user, info));
    let result = match segs.as_slice() {
        ["version"] => Ok(json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-gatehouse-fake",
                    "platform": "linux/amd64"}),
        )),
        ["api"] => Ok(json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr}]}),
        )),
        ["apis"] => Ok(json_response(StatusCode::OK, &api_group_list(shared))),
        ["api", "v1"] => Ok(json_response(
            StatusCode::OK,
            &resource_list(shared, "", "v1"),
        )),
        ["apis", group, version] => Ok(json_response(
            StatusCode::OK,
            &resource_list(shared, group, version),
        )),
        ["api", "v1", rest @ ..] => {
            resource_request(shared, "", "v1", rest, method, &query, headers, body, auth)
        }
        ["apis", group, version, rest @ ..] => resource_request(
            shared, group, version, rest, method, &query, headers, body, auth,
        ),
        _ => Err(ApiError::no_route(path)),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The request's user and attributes (`None` for the harness, which sends no
/// credentials); 401 for unknown credentials, 403 when RBAC does not grant the request.
fn authenticate_and_authorize(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Option<(UserInfo, RequestInfo)>> {
    let tokens = shared.tokens();
    let store = shared.lock();
    let user = tokens
        .authenticate(headers, &store)
        .inspect_err(|e| shared.record_denial(&format!("{method} {path}: {}", e.message)))?;
    let Some(user) = user else {
        return Ok(None);
    };
    let info = RequestInfo::parse(method.as_str(), path, &query.0);
    authorize(shared, &store, &user, &info)?;
    Ok(Some((user, info)))
}

/// [`rbac::authorize`], recording a denial.
fn authorize(shared: &Shared, store: &Store, user: &UserInfo, info: &RequestInfo) -> Result<()> {
    rbac::authorize(&store.rbac_objects(), user, info)
        .inspect_err(|e| shared.record_denial(&e.message))
}

fn api_group_list(shared: &Shared) -> Value {
    let store = shared.lock();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for rt in store.resources() {
        if rt.group.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, versions)) if !versions.contains(&rt.version) => {
                versions.push(rt.version.clone());
            }
            Some(_) => {}
            None => groups.push((rt.group.clone(), vec![rt.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let gv: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": gv, "preferredVersion": gv[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(shared: &Shared, group: &str, version: &str) -> Value {
    let store = shared.lock();
    let mut resources = Vec::new();
    let mut seen = Vec::new();
    for rt in store
        .resources()
        .filter(|r| r.group == group && r.version == version)
    {
        if seen.contains(&rt.plural) {
            continue;
        }
        seen.push(rt.plural.clone());
        resources.push(json!({
            "name": rt.plural, "singularName": rt.kind.to_lowercase(), "namespaced": rt.namespaced,
            "kind": rt.kind, "shortNames": rt.short_names,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }));
        if rt.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced,
                "kind": rt.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

fn parse_target(shared: &Shared, group: &str, version: &str, rest: &[&str]) -> Result<Target> {
    let not_found = || {
        let gv = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        ApiError::no_route(&format!("{gv}/{}", rest.join("/")))
    };
    let owned = |s: &&str| (*s).to_owned();
    let (namespace, plural, name, sub) = match rest {
        // `/api/v1/namespaces/{name}/status` is the Namespace's own subresource.
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces", Some(owned(name)), Some(owned(sub)))
        }
        ["namespaces", ns, plural, tail @ ..] => {
            let (name, sub) = match tail {
                [] => (None, None),
                [name] => (Some(owned(name)), None),
                [name, sub] => (Some(owned(name)), Some(owned(sub))),
                _ => return Err(not_found()),
            };
            (Some(owned(ns)), *plural, name, sub)
        }
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(owned(name)), None),
        [plural, name, sub] => (None, *plural, Some(owned(name)), Some(owned(sub))),
        _ => return Err(not_found()),
    };
    let rt = shared
        .lock()
        .resource(group, version, plural)
        .ok_or_else(not_found)?;
    // A namespaced object needs its namespace; a cluster-scoped one has none. Listing a
    // namespaced resource without a namespace is the cross-namespace LIST/WATCH.
    if (rt.namespaced && namespace.is_none() && name.is_some())
        || (!rt.namespaced && namespace.is_some())
    {
        return Err(not_found());
    }
    Ok(Target {
        rt,
        namespace,
        name,
        sub,
    })
}

fn dry_run(query: &Query, body: Option<&Value>) -> bool {
    query.get("dryRun") == Some("All")
        || body
            .and_then(|b| b["dryRun"].as_array())
            .is_some_and(|d| d.iter().any(|x| x == "All"))
}

fn parse_json(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("failed to decode the request body: {e}")))
}

fn delete_options(query: &Query, body: &[u8]) -> Result<(DeleteOptions, bool)> {
    let opts = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        parse_json(body)?
    };
    let policy = opts["propagationPolicy"]
        .as_str()
        .or_else(|| query.get("propagationPolicy"));
    let orphan = policy == Some("Orphan") || opts["orphanDependents"].as_bool() == Some(true);
    let pre = &opts["preconditions"];
    Ok((
        DeleteOptions {
            orphan,
            uid: pre["uid"].as_str().map(str::to_owned),
            resource_version: pre["resourceVersion"].as_str().map(str::to_owned),
        },
        dry_run(query, Some(&opts)),
    ))
}

// The URL's parts and the request, as `dispatch` has them; one arm per verb.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
fn resource_request(
    shared: &Arc<Shared>,
    group: &str,
    version: &str,
    rest: &[&str],
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
    auth: Option<(&UserInfo, &RequestInfo)>,
) -> Result<Response> {
    let Target {
        rt,
        namespace,
        name,
        sub,
    } = parse_target(shared, group, version, rest)?;
    let ns = namespace.as_deref();
    let subresource = match sub.as_deref() {
        None => Subresource::Main,
        Some("status") if rt.status_subresource => Subresource::Status,
        Some("log") if rt.group.is_empty() && rt.kind == "Pod" && *method == Method::GET => {
            return pod_log(shared, &rt, ns, name.as_deref().unwrap_or_default());
        }
        Some(_) => return Err(ApiError::no_route(&rest.join("/"))),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.contains("protobuf") {
        // kubectl's imperative commands (`create job`, `create cronjob`) send protobuf.
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let manager = field_manager(query, headers);
    let ok = |v: &Value| Ok(json_response(StatusCode::OK, v));
    match (method.clone(), name) {
        (Method::GET, None) if query.flag("watch") => watch(shared, &rt, ns, query),
        (Method::GET, None) => {
            let (labels, fields) = query.selectors()?;
            let (items, rv) = shared.lock().list(&rt, ns, &labels, &fields);
            ok(&json!({
                "apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind),
                "metadata": {"resourceVersion": rv.to_string()}, "items": items,
            }))
        }
        (Method::GET, Some(name)) => ok(&shared.lock().get(&rt, ns, &name)?),
        (Method::POST, None) => {
            let obj = parse_json(body)?;
            let created =
                shared
                    .lock()
                    .create(&rt, ns, obj, manager.name(), dry_run(query, None))?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::PUT, Some(name)) => {
            let obj = parse_json(body)?;
            ok(&shared.lock().replace(
                &rt,
                ns,
                &name,
                obj,
                subresource,
                manager.name(),
                dry_run(query, None),
            )?)
        }
        (Method::PATCH, Some(name)) => {
            let kind = PatchKind::from_content_type(content_type)?;
            let patch = kind.parse_body(body)?;
            let mut store = shared.lock();
            let existed = store.get(&rt, ns, &name).is_ok();
            if let Some((user, info)) = auth
                && kind == PatchKind::Apply
                && !existed
            {
                // An apply that creates the object needs `create` as well, as the real
                // server's patch handler checks before creating.
                authorize(shared, &store, user, &info.with_verb("create"))?;
            }
            let out = store.patch(
                &rt,
                ns,
                &name,
                kind,
                patch,
                subresource,
                &manager,
                dry_run(query, None),
            )?;
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(code, &out))
        }
        (Method::DELETE, Some(name)) => {
            let (opts, dry) = delete_options(query, body)?;
            ok(&shared.lock().delete(&rt, ns, &name, &opts, dry)?)
        }
        (Method::DELETE, None) => {
            let (labels, fields) = query.selectors()?;
            let (opts, _) = delete_options(query, body)?;
            let items = shared
                .lock()
                .delete_collection(&rt, ns, &labels, &fields, &opts);
            ok(&json!({
                "apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind),
                "metadata": {}, "items": items,
            }))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "method {m} is not supported on {}",
            rest.join("/")
        ))),
    }
}

fn field_manager<'a>(query: &'a Query, headers: &'a HeaderMap) -> FieldManager<'a> {
    FieldManager {
        query: query.get("fieldManager"),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        force: query.flag("force"),
    }
}

fn pod_log(shared: &Shared, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Response> {
    let store = shared.lock();
    let pod = store.get(rt, ns, name)?;
    let status = &pod["status"]["containerStatuses"][0];
    if let Some(reason) = status["state"]["waiting"]["reason"].as_str() {
        // The real API server's answer while the container has not started.
        return Err(ApiError::bad_request(format!(
            "container {:?} in pod {name:?} is waiting to start: {reason}",
            status["name"].as_str().unwrap_or_default()
        )));
    }
    let log = store
        .pod_logs
        .get(&(ns.unwrap_or_default().to_owned(), name.to_owned()))
        .cloned()
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain")], log).into_response())
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_events_end: bool) -> Bytes {
    let mut obj = json!({"kind": rt.kind, "apiVersion": rt.api_version(),
                         "metadata": {"resourceVersion": rv.to_string()}});
    if initial_events_end {
        obj["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(&json!({"type": "BOOKMARK", "object": obj}))
}

/// WATCH: without `resourceVersion` (or with `0`, or with `sendInitialEvents=true`) the
/// current objects come first as ADDED (then, for `sendInitialEvents`, a BOOKMARK with the
/// `k8s.io/initial-events-end` annotation); then every change after the start version,
/// from the history. BOOKMARKs every `bookmark_interval` when `allowWatchBookmarks`. The
/// stream ends after `timeoutSeconds` or at shutdown; a start version older than the kept
/// history gets an ERROR event with a 410 `Expired` Status, as from the real server.
fn watch(
    shared: &Arc<Shared>,
    rt: &ResourceType,
    ns: Option<&str>,
    query: &Query,
) -> Result<Response> {
    let (labels, fields) = query.selectors()?;
    let send_initial = query.flag("sendInitialEvents");
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
        })?)),
        None => None,
    };
    let mut initial = Vec::new();
    let from =
        {
            let store = shared.lock();
            match query.get("resourceVersion") {
                None | Some("" | "0") => None,
                _ if send_initial => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            }
            .unwrap_or_else(|| {
                let (items, rv) = store.list(rt, ns, &labels, &fields);
                initial = items
                    .iter()
                    .map(|o| line(&json!({"type": "ADDED", "object": o})))
                    .collect();
                rv
            })
        };
    if send_initial {
        initial.push(bookmark(rt, from, true));
    }

    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let task = WatchTask {
        shared: Arc::clone(shared),
        rt: rt.clone(),
        ns: ns.map(str::to_owned),
        labels,
        fields,
        bookmarks,
        bookmark_interval: shared.options.bookmark_interval,
        deadline: timeout.map(|t| tokio::time::Instant::now() + t),
        changed: shared.changed.clone(),
        shutdown: shared.shutdown.clone(),
    };
    tokio::spawn(task.run(tx, initial, from));
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|b| b.map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// Why an idle watch woke up.
enum Wake {
    Changed,
    Bookmark,
    Deadline,
    Stop,
}

struct WatchTask {
    shared: Arc<Shared>,
    rt: ResourceType,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    bookmarks: bool,
    bookmark_interval: Duration,
    deadline: Option<tokio::time::Instant>,
    changed: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl WatchTask {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    async fn run(mut self, tx: mpsc::Sender<Bytes>, initial: Vec<Bytes>, mut from: u64) {
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        loop {
            self.changed.borrow_and_update();
            let batch = self
                .shared
                .lock()
                .events_since(&self.rt, self.ns.as_deref(), from);
            let (events, latest) = match batch {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx
                        .send(line(&json!({"type": "ERROR", "object": e.status()})))
                        .await;
                    return;
                }
            };
            for e in events {
                let now = self.matches(&e.object);
                let before = e.old.as_ref().is_some_and(|o| self.matches(o));
                // An object that starts or stops matching the selectors is ADDED or
                // DELETED (with its new state) for this watch, as on the real server.
                let kind = match (e.event, before, now) {
                    (EventType::Modified, false, true) => EventType::Added,
                    (EventType::Modified, true, false) => EventType::Deleted,
                    (_, _, false) => continue,
                    (k, _, true) => k,
                };
                let obj = Store::present(&self.rt, &e.object);
                if tx
                    .send(line(&json!({"type": kind.as_str(), "object": obj})))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            from = latest;
            let deadline = self.deadline;
            let shutdown = &mut self.shutdown;
            let wake = tokio::select! {
                r = self.changed.changed() => if r.is_ok() { Wake::Changed } else { Wake::Stop },
                () = tokio::time::sleep(self.bookmark_interval), if self.bookmarks => Wake::Bookmark,
                () = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } },
                    if deadline.is_some() => Wake::Deadline,
                () = async { let _ = shutdown.wait_for(|s| *s).await; } => Wake::Stop,
                () = tx.closed() => Wake::Stop,
            };
            match wake {
                Wake::Changed => {}
                Wake::Bookmark => {
                    if tx.send(bookmark(&self.rt, from, false)).await.is_err() {
                        return;
                    }
                }
                Wake::Deadline => {
                    if self.bookmarks {
                        // The client is about to re-watch anyway; a lost bookmark is harmless.
                        let _ = tx.send(bookmark(&self.rt, from, false)).await;
                    }
                    return;
                }
                Wake::Stop => return,
            }
        }
    }
}
