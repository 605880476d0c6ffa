//! The Management API's HTTP edge (`{issuer}/api/v1/…`, see `crate::management`): each
//! handler parses the request, lets `Management::authorize` check the token, scope and
//! rate tier, calls one operation and renders the result. Every refusal is an RFC 9457
//! `application/problem+json` body with a stable `type`; a token refusal also carries
//! the RFC 6750 challenge with RFC 9728's `resource_metadata` pointer. Every response to
//! a caller that got past the token check carries the `X-RateLimit-*` headers of its tier.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ServerFailure;
use super::error::{no_store, rate_headers, retry_after_outage, server_status};
use super::tenant_routing::{CurrentTenant, client_ip};
use super::userinfo::{add_challenge, resource_status};
use crate::domain::signing_key::RotationMode;
use crate::domain::tenant::Tenant;
use crate::management::audit::{AuditQuery, CSV_HEADER};
use crate::management::{
    API_PATH, Authorized, ClientView, DEFAULT_PAGE, Error, MAX_PAGE, Management, Permission, Tier,
    resource_id,
};
use crate::oauth::ErrorCode;
use crate::oauth::resource::{ResourceError, ResourceRequest};

/// Where RFC 9728 §3 puts a resource's metadata: inserted between the host and the path
/// of its identifier.
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The base of our problem `type` URIs; each refusal appends its own name.
const PROBLEM_BASE: &str = "https://gatehouse.dev/problems/";

/// The largest request body an operation reads.
const MAX_BODY: usize = 16 * 1024;

mod openapi;
mod users;

pub fn router(state: &AppState) -> Router<AppState> {
    openapi::router(|op| {
        axum::middleware::from_fn_with_state(
            Gate {
                state: state.clone(),
                operation: op.id,
                permission: op.permission,
                tier: op.tier,
            },
            gate,
        )
    })
    .route(&format!("{API_PATH}/openapi.json"), get(openapi_document))
}

/// `GET /openapi.json`: the OpenAPI 3.1 document (public: it describes, it grants nothing).
async fn openapi_document(Extension(CurrentTenant(tenant)): Extension<CurrentTenant>) -> Response {
    let mut resp = Json(openapi::document(&tenant.issuer)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

impl AppState {
    pub(crate) fn management(&self) -> Management<'_> {
        Management {
            oauth: &self.oauth,
            store: &self.store,
            keys: &self.keys,
            clients: &self.oauth.clients,
            users: &self.users,
            mfa: &self.mfa,
        }
    }
}

/// The RFC 9728 metadata URL of `tenant`'s API.
pub fn metadata_url(tenant: &Tenant) -> String {
    let resource = resource_id(tenant);
    match url::Url::parse(&resource) {
        Ok(u) => format!(
            "{}://{}{METADATA_PREFIX}{}",
            u.scheme(),
            u.host_str().map_or_else(String::new, |h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            }),
            u.path()
        ),
        Err(_) => format!("{}{METADATA_PREFIX}{API_PATH}", tenant.issuer),
    }
}

/// RFC 9728 §2 protected resource metadata of `tenant`'s API.
pub fn metadata(state: &AppState, tenant: &Tenant) -> Response {
    let algs = state.oauth.dpop.algorithm_names();
    let body = serde_json::json!({
        "resource": resource_id(tenant),
        "authorization_servers": [tenant.issuer],
        "scopes_supported": Permission::ALL.iter().map(|p| p.scope()).collect::<Vec<_>>(),
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": algs,
        "resource_name": format!("Gatehouse Management API ({})", tenant.id),
        "resource_documentation": "https://github.com/gatehouse-dev/gatehouse/blob/main/docs/management-api.md",
    });
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// One Management API request: the tenant, what the token check needs, the caller's
/// address.
struct Call {
    tenant: Arc<Tenant>,
    method: String,
    url: String,
    authorization: Option<String>,
    dpop: Vec<String>,
    ip: Option<String>,
}

impl Call {
    fn new(state: &AppState, tenant: Arc<Tenant>, parts: &Parts) -> Self {
        let header_text = |v: &HeaderValue| v.to_str().ok().map(str::to_owned);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Self {
            url: format!("{}{}", tenant.issuer, parts.uri.path()),
            method: parts.method.as_str().to_owned(),
            authorization: parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(header_text),
            dpop: parts
                .headers
                .get_all("dpop")
                .iter()
                .filter_map(header_text)
                .collect(),
            ip: client_ip(&parts.headers, peer, &state.trusted_proxies).map(|ip| ip.to_string()),
            tenant,
        }
    }

    async fn authorize(
        &self,
        state: &AppState,
        permission: Permission,
        tier: Tier,
    ) -> Result<Authorized, Refused> {
        let req = ResourceRequest {
            method: &self.method,
            url: self.url.clone(),
            authorization: self.authorization.as_deref(),
            dpop: self.dpop.iter().map(String::as_str).collect(),
            form_token: None,
        };
        state
            .management()
            .authorize(&self.tenant, &req, permission, tier, self.ip.clone())
            .await
            .map_err(|e| Refused::new(&self.tenant, e))
    }
}

/// A refused call and what its answer needs: the tenant (for the challenge's metadata
/// pointer) and the rate figures of a caller that was let in.
struct Refused {
    error: Arc<Error>,
    metadata: String,
    rate: Option<crate::oauth::RateHeaders>,
}

impl Refused {
    fn new(tenant: &Tenant, error: impl Into<Arc<Error>>) -> Self {
        Self {
            error: error.into(),
            metadata: metadata_url(tenant),
            rate: None,
        }
    }
}

/// An RFC 9457 problem: `type` from our base and `name`, the status, a title, the detail,
/// and with a parameter or field error its name (`field`).
fn problem(
    status: StatusCode,
    name: &str,
    title: &str,
    detail: &str,
    field: Option<&str>,
) -> Response {
    let mut body = serde_json::json!({
        "type": format!("{PROBLEM_BASE}{name}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Some(f), Some(map)) = (field, body.as_object_mut()) {
        map.insert("field".into(), f.into());
    }
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

impl Refused {
    fn render(self, state: &AppState) -> Response {
        let mut resp = match &*self.error {
            Error::Token(e) => token_problem(state, e, &self.metadata),
            Error::RateLimited(rate) => {
                let mut resp = problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many requests",
                    &format!(
                        "the limit of this operation's tier is {} per window; retry after {} s",
                        rate.limit, rate.reset_seconds
                    ),
                    None,
                );
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(rate.reset_seconds.max(1)),
                );
                rate_headers(resp.headers_mut(), *rate);
                resp
            }
            Error::NotFound(detail) => problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "No such resource",
                detail,
                None,
            ),
            Error::Invalid { field, detail } => problem(
                StatusCode::BAD_REQUEST,
                "invalid-parameter",
                "A parameter or field is invalid",
                &format!("{field}: {detail}"),
                Some(field),
            ),
            Error::Unprocessable { field, detail } => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "The request body breaks a rule",
                detail,
                Some(field),
            ),
            Error::Conflict { kind, detail } => problem(
                StatusCode::CONFLICT,
                kind,
                "The request conflicts with the object's state",
                detail,
                None,
            ),
            Error::PreconditionFailed(detail) => problem(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "The object changed since it was read",
                detail,
                None,
            ),
            Error::Server(e) => {
                let status = server_status(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut resp = problem(
                    status,
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        "unavailable"
                    } else {
                        "server-error"
                    },
                    "The server failed",
                    e.description.as_deref().unwrap_or("internal error"),
                    None,
                );
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    retry_after_outage(resp.headers_mut());
                }
                ServerFailure::attach(&mut resp, e);
                resp
            }
        };
        if let Some(rate) = self.rate {
            rate_headers(resp.headers_mut(), rate);
        }
        no_store(resp.headers_mut());
        resp
    }
}

/// A refused token: the problem, and the RFC 6750 / 9449 challenge pointing at the
/// RFC 9728 metadata.
fn token_problem(state: &AppState, e: &ResourceError, metadata: &str) -> Response {
    let status = resource_status(e.error.as_ref());
    let (name, title) = match e.error.as_ref().map(|e| e.code) {
        None => ("unauthenticated", "An access token is required"),
        Some(ErrorCode::InsufficientScope) => {
            ("insufficient-scope", "The access token lacks the scope")
        }
        Some(ErrorCode::InvalidRequest) => ("invalid-request", "The request is malformed"),
        Some(code) if server_status(code).is_some() => ("server-error", "The server failed"),
        Some(_) => ("invalid-token", "The access token is not accepted here"),
    };
    let detail = e
        .error
        .as_ref()
        .and_then(|e| e.description.clone())
        .unwrap_or_else(|| "send an access token for this API".to_owned());
    let mut resp = problem(status, name, title, &detail, None);
    add_challenge(state, e, Some(metadata), &mut resp);
    resp
}

/// A successful answer: JSON, not cached, with the caller's rate figures.
fn ok(auth: &Authorized, status: StatusCode, body: &impl Serialize) -> Response {
    let mut resp = (status, Json(body)).into_response();
    finish(auth, resp.headers_mut());
    resp
}

fn finish(auth: &Authorized, headers: &mut HeaderMap) {
    if let Some(rate) = auth.rate {
        rate_headers(headers, rate);
    }
    no_store(headers);
}

/// What the gate found out about a request, for its handler: the call and its caller.
pub(super) struct Ctx {
    call: Call,
    auth: Authorized,
}

/// The operation a gate stands in front of.
#[derive(Clone)]
struct Gate {
    state: AppState,
    /// The operation's `operationId`, for the audit trail.
    operation: &'static str,
    permission: Permission,
    tier: Tier,
}

/// Runs before every operation (a route layer built from [`openapi::OPERATIONS`]): lets
/// the request in only with a token of the tenant for this API carrying the operation's
/// scope, within the caller's rate tier, and hands the handler the caller ([`Ctx`]).
/// After the handler, renders its [`Error`] as a problem with the caller's rate headers.
async fn gate(State(gate): State<Gate>, req: Request, next: axum::middleware::Next) -> Response {
    let Some(CurrentTenant(tenant)) = req.extensions().get::<CurrentTenant>().cloned() else {
        return not_found().await;
    };
    let (mut parts, body) = req.into_parts();
    let call = Call::new(&gate.state, tenant, &parts);
    let auth = match call
        .authorize(&gate.state, gate.permission, gate.tier)
        .await
    {
        Ok(auth) => auth,
        Err(refused) => return refused.render(&gate.state),
    };
    let writes = parts.method != axum::http::Method::GET;
    let cx = Arc::new(Ctx { call, auth });
    parts.extensions.insert(Arc::clone(&cx));
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    let Some(Failed(error)) = resp.extensions_mut().remove::<Failed>() else {
        return resp;
    };
    let resp = Refused {
        rate: cx.auth.rate,
        ..Refused::new(&cx.call.tenant, error)
    }
    .render(&gate.state);
    if writes {
        let call = &cx.call;
        gate.state
            .management()
            .write_failed(
                &call.tenant,
                &cx.auth.caller,
                &call.url,
                gate.operation,
                &call.method,
                resp.status().as_u16(),
            )
            .await;
    }
    resp
}

/// An operation's error on its way from the handler to [`gate`], which renders it.
#[derive(Clone)]
struct Failed(Arc<Error>);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        resp.extensions_mut().insert(Failed(Arc::new(self)));
        resp
    }
}

/// The query string's pairs, decoded.
fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// `limit` and `cursor` of a list, and nothing else.
fn page_params(parts: &Parts) -> Result<(usize, Option<String>), Error> {
    let mut limit = DEFAULT_PAGE;
    let mut cursor = None;
    for (name, value) in query_pairs(parts) {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        Error::invalid("limit", format!("must be a number from 1 to {MAX_PAGE}"))
                    })?;
            }
            "cursor" => {
                cursor = Some(crate::management::audit::decode_cursor_text(
                    &value, "cursor",
                )?);
            }
            other => {
                return Err(Error::invalid(
                    other,
                    "unknown parameter (expected limit, cursor)",
                ));
            }
        }
    }
    Ok((limit, cursor))
}

/// Adds `Link: <…>; rel="next"` (RFC 8288) for a page with a successor.
fn link_next(
    resp: &mut Response,
    call: &Call,
    next: Option<&str>,
    mut pairs: Vec<(String, String)>,
) {
    let Some(next) = next else { return };
    pairs.retain(|(k, _)| k != "cursor");
    pairs.push(("cursor".into(), next.to_owned()));
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    if let Ok(v) = HeaderValue::from_str(&format!("<{}?{query}>; rel=\"next\"", call.url)) {
        resp.headers_mut().insert(header::LINK, v);
    }
}

async fn keys(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let keys = state.management().keys(&call.tenant).await?;
    Ok(ok(
        auth,
        StatusCode::OK,
        &serde_json::json!({ "keys": keys }),
    ))
}

/// The body of `POST /jwks/rotate`; empty means `force`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// `force` (default): new keys are published now and sign after the promotion delay;
    /// `now`: an emergency, they sign at once and the previous keys leave the JWKS.
    #[serde(default)]
    mode: Option<RotateMode>,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum RotateMode {
    Force,
    Now,
}

/// A JSON body of at most [`MAX_BODY`] bytes, unknown fields refused (the field named);
/// `None` when the body is empty.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<Option<T>, Error> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| Error::invalid("body", format!("must be at most {MAX_BODY} bytes")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            Error::invalid(field, e.into_inner().to_string())
        })
        .map(Some)
}

async fn rotate_keys(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    body: Body,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let body: RotateBody = json_body(body).await?.unwrap_or_default();
    let mode = match body.mode {
        None | Some(RotateMode::Force) => RotationMode::Force,
        Some(RotateMode::Now) => RotationMode::Now,
    };
    let created = state
        .management()
        .rotate_keys(&call.tenant, &auth.caller, mode)
        .await?;
    Ok(ok(
        auth,
        StatusCode::OK,
        &serde_json::json!({ "created": created }),
    ))
}

async fn clients(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, _) = req.into_parts();
    let Ctx { call, auth } = &*cx;
    let (limit, after) = page_params(&parts)?;
    let page = state
        .management()
        .clients(&call.tenant, after.as_deref(), limit)
        .await?;
    let mut resp = ok(auth, StatusCode::OK, &page);
    link_next(&mut resp, call, page.next.as_deref(), query_pairs(&parts));
    Ok(resp)
}

async fn client(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(client_id): Path<String>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let client = state.management().client(&call.tenant, &client_id).await?;
    Ok(client_answer(auth, StatusCode::OK, &client))
}

/// Whether the caller asked for CSV by `Accept` (`text/csv` before any JSON type).
fn accepts_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|first| first.trim().to_ascii_lowercase().starts_with("text/csv"))
}

async fn audit(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, _) = req.into_parts();
    let Ctx { call, auth } = &*cx;
    let pairs = query_pairs(&parts);
    let mut query = AuditQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    query.csv |= accepts_csv(&parts.headers);
    let management = state.management();
    management
        .audit_read(&call.tenant, &auth.caller, &query)
        .await;
    if query.csv {
        return Ok(csv_export(&state, auth, call.tenant.clone(), query));
    }
    let page = management.audit_page(&call.tenant, &query).await?;
    let mut resp = ok(auth, StatusCode::OK, &page);
    link_next(&mut resp, call, page.next.as_deref(), pairs);
    Ok(resp)
}

/// The whole filtered trail as CSV, streamed a page at a time: memory stays that of one
/// page however many rows match. A failure mid-stream ends the body early (the status
/// is sent already), which a client sees as a truncated transfer.
fn csv_export(
    state: &AppState,
    auth: &Authorized,
    tenant: Arc<Tenant>,
    mut query: AuditQuery,
) -> Response {
    query.limit = MAX_PAGE;
    let state = state.clone();
    let pages = futures::stream::unfold(Some((state, tenant, query, true)), |cursor| async move {
        let (state, tenant, mut query, first) = cursor?;
        let (entries, next) = match state.management().audit_scan(&tenant, &query).await {
            Ok(scan) => scan,
            Err(e) => {
                tracing::warn!(error = %e, tenant = %tenant.id, "audit export ended early");
                return Some((Err(std::io::Error::other("audit export failed")), None));
            }
        };
        let mut chunk = if first {
            CSV_HEADER.to_owned()
        } else {
            String::new()
        };
        for entry in &entries {
            chunk.push_str(&entry.csv_record());
        }
        let rest = next.map(|position| {
            query.selection.before = Some(position);
            (state, tenant, query, false)
        });
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), rest))
    });
    let mut resp = Response::new(Body::from_stream(pages));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit.csv\""),
    );
    finish(auth, h);
    resp
}

async fn stats(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let figures = state.management().stats(&call.tenant).await?;
    Ok(ok(auth, StatusCode::OK, &figures))
}

async fn health(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let health = state.management().health(&call.tenant).await;
    let status = if health.database == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(ok(auth, status, &health))
}

/// An unknown path under the API: a problem, like every other answer of it.
pub async fn not_found() -> Response {
    let mut resp = problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "No such resource",
        "no operation at this path",
        None,
    );
    no_store(resp.headers_mut());
    resp
}

/// A client with its version in `ETag`.
fn client_answer(auth: &Authorized, status: StatusCode, client: &ClientView) -> Response {
    with_etag(ok(auth, status, client), &client.etag)
}

fn with_etag(mut resp: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// `If-Match`: one entity tag or `*` (a list is refused rather than half-honoured).
fn if_match(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.contains(','))
        .ok_or_else(|| Error::invalid("If-Match", "must be one entity tag from ETag, or *"))?;
    Ok(Some(value.to_owned()))
}

/// The request's JSON content type: `application/json`, or for `PATCH`
/// `application/merge-patch+json` too.
fn require_json(headers: &HeaderMap, merge_patch: bool) -> Result<(), Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if ct == "application/json" || (merge_patch && ct == "application/merge-patch+json") {
        Ok(())
    } else {
        Err(Error::invalid(
            "Content-Type",
            if merge_patch {
                "must be application/merge-patch+json (RFC 7396)"
            } else {
                "must be application/json"
            },
        ))
    }
}

async fn create_client(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, body) = req.into_parts();
    let Ctx { call, auth } = &*cx;
    require_json(&parts.headers, false)?;
    let spec: Option<crate::domain::client::ClientSpec> = json_body(body).await?;
    let spec = spec.ok_or_else(|| Error::invalid("body", "a client registration is required"))?;
    let created = state
        .management()
        .create_client(&call.tenant, &auth.caller, spec)
        .await?;
    let mut body = serde_json::to_value(&created.client).unwrap_or_default();
    if let (Some(secret), Some(map)) = (&created.secret, body.as_object_mut()) {
        use secrecy::ExposeSecret as _;
        map.insert("client_secret".into(), secret.expose_secret().into());
    }
    let mut resp = with_etag(ok(auth, StatusCode::CREATED, &body), &created.client.etag);
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", call.url, created.client.spec.client_id))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn patch_client(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(client_id): Path<String>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, body) = req.into_parts();
    let Ctx { call, auth } = &*cx;
    require_json(&parts.headers, true)?;
    let expected = if_match(&parts.headers)?;
    let patch: Option<serde_json::Value> = json_body(body).await?;
    let patch = patch
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| Error::invalid("body", "must be a JSON object (a merge patch)"))?;
    let client = state
        .management()
        .patch_client(
            &call.tenant,
            &auth.caller,
            &client_id,
            &patch,
            expected.as_deref(),
        )
        .await?;
    Ok(client_answer(auth, StatusCode::OK, &client))
}

async fn delete_client(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(client_id): Path<String>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, _) = req.into_parts();
    let Ctx { call, auth } = &*cx;
    let expected = if_match(&parts.headers)?;
    state
        .management()
        .delete_client(&call.tenant, &auth.caller, &client_id, expected.as_deref())
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    finish(auth, resp.headers_mut());
    Ok(resp)
}

/// The body of `POST /clients/{client_id}/secret`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RotateSecretBody {
    /// How long the previous secret stays valid (default one day, at most 30 days).
    overlap_seconds: Option<u64>,
}

async fn rotate_client_secret(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(client_id): Path<String>,
    body: Body,
) -> Result<Response, Error> {
    use secrecy::ExposeSecret as _;
    let Ctx { call, auth } = &*cx;
    let body: Option<RotateSecretBody> = json_body(body).await?;
    let overlap = body.unwrap_or_default().overlap_seconds.unwrap_or(86_400);
    if overlap > 30 * 86_400 {
        return Err(Error::invalid(
            "overlap_seconds",
            "must be at most 2592000 (30 days)",
        ));
    }
    let secret = state
        .management()
        .rotate_client_secret(&call.tenant, &auth.caller, &client_id, overlap)
        .await?;
    Ok(ok(
        auth,
        StatusCode::OK,
        &serde_json::json!({
            "client_id": client_id,
            "client_secret": secret.expose_secret(),
            "previous_secret_valid_for_seconds": overlap,
        }),
    ))
}
