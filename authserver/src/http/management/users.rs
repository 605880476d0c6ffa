//! The Management API's user operations (see `crate::management::users`).

use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use super::{
    AppState, Ctx, finish, if_match, json_body, link_next, ok, query_pairs, require_json, with_etag,
};
use crate::management::users::{NewUserBody, PasswordBody};
use crate::management::{DEFAULT_PAGE, Error, MAX_PAGE};

/// `prefix`, `limit` and `cursor` of `GET /users`.
fn search_params(
    pairs: &[(String, String)],
) -> Result<(Option<String>, usize, Option<String>), Error> {
    let (mut prefix, mut limit, mut cursor) = (None, DEFAULT_PAGE, None);
    for (name, value) in pairs {
        match name.as_str() {
            "prefix" if value.len() <= 256 => prefix = Some(value.clone()),
            "prefix" => return Err(Error::invalid("prefix", "must be at most 256 characters")),
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
                    value, "cursor",
                )?);
            }
            other => {
                return Err(Error::invalid(
                    other,
                    "unknown parameter (expected prefix, limit, cursor)",
                ));
            }
        }
    }
    Ok((prefix, limit, cursor))
}

fn no_content(auth: &crate::management::Authorized) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    finish(auth, resp.headers_mut());
    resp
}

pub(super) async fn list_users(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, _) = req.into_parts();
    let Ctx { call, auth } = &*cx;
    let pairs = query_pairs(&parts);
    let (prefix, limit, after) = search_params(&pairs)?;
    let page = state
        .management()
        .users(&call.tenant, prefix.as_deref(), after.as_deref(), limit)
        .await?;
    let mut resp = ok(auth, StatusCode::OK, &page);
    link_next(&mut resp, call, page.next.as_deref(), pairs);
    Ok(resp)
}

pub(super) async fn create_user(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, body) = req.into_parts();
    let Ctx { call, auth } = &*cx;
    require_json(&parts.headers, false)?;
    let body: NewUserBody = json_body(body)
        .await?
        .ok_or_else(|| Error::invalid("body", "a user is required"))?;
    let user = state
        .management()
        .create_user(&call.tenant, &auth.caller, body)
        .await?;
    Ok(ok(auth, StatusCode::CREATED, &user))
}

pub(super) async fn get_user(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(user_id): Path<String>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let user = state.management().user(&call.tenant, &user_id).await?;
    Ok(with_etag(ok(auth, StatusCode::OK, &user), &user.etag))
}

pub(super) async fn delete_user(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(user_id): Path<String>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    state
        .management()
        .delete_user(&call.tenant, &auth.caller, &user_id)
        .await?;
    Ok(no_content(auth))
}

pub(super) async fn set_password(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(user_id): Path<String>,
    req: Request,
) -> Result<Response, Error> {
    let (parts, body) = req.into_parts();
    let Ctx { call, auth } = &*cx;
    require_json(&parts.headers, false)?;
    let body: PasswordBody = json_body(body)
        .await?
        .ok_or_else(|| Error::invalid("body", "a password is required"))?;
    let user = state
        .management()
        .set_user_password(&call.tenant, &auth.caller, &user_id, body.password)
        .await?;
    Ok(ok(auth, StatusCode::OK, &user))
}

pub(super) async fn reset_mfa(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(user_id): Path<String>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let removed = state
        .management()
        .reset_user_mfa(&call.tenant, &auth.caller, &user_id)
        .await?;
    Ok(ok(
        auth,
        StatusCode::OK,
        &serde_json::json!({ "removed": removed }),
    ))
}

pub(super) async fn consents(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(user_id): Path<String>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let consents = state
        .management()
        .user_consents(&call.tenant, &user_id)
        .await?;
    Ok(ok(
        auth,
        StatusCode::OK,
        &serde_json::json!({ "consents": consents }),
    ))
}

pub(super) async fn revoke_consent(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path((user_id, client_id)): Path<(String, String)>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    state
        .management()
        .revoke_user_consent(&call.tenant, &auth.caller, &user_id, &client_id)
        .await?;
    Ok(no_content(auth))
}

pub(super) async fn sessions(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(user_id): Path<String>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let sessions = state
        .management()
        .user_sessions(&call.tenant, &user_id)
        .await?;
    Ok(ok(
        auth,
        StatusCode::OK,
        &serde_json::json!({ "sessions": sessions }),
    ))
}

pub(super) async fn end_sessions(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(user_id): Path<String>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    let ended = state
        .management()
        .end_user_sessions(&call.tenant, &auth.caller, &user_id, None)
        .await?;
    Ok(ok(
        auth,
        StatusCode::OK,
        &serde_json::json!({ "ended": ended }),
    ))
}

pub(super) async fn end_session(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path((user_id, session_id)): Path<(String, String)>,
) -> Result<Response, Error> {
    let Ctx { call, auth } = &*cx;
    state
        .management()
        .end_user_sessions(&call.tenant, &auth.caller, &user_id, Some(&session_id))
        .await?;
    Ok(no_content(auth))
}

pub(super) async fn patch_user(
    State(state): State<AppState>,
    Extension(cx): Extension<Arc<Ctx>>,
    Path(user_id): Path<String>,
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
    let user = state
        .management()
        .patch_user(
            &call.tenant,
            &auth.caller,
            &user_id,
            &patch,
            expected.as_deref(),
        )
        .await?;
    Ok(with_etag(ok(auth, StatusCode::OK, &user), &user.etag))
}
