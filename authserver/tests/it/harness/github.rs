//! A stand-in for GitHub's OAuth app flow and user API (OAuth 2.0 without OpenID
//! Connect), for the federation tests.
//!
//! Modelled as GitHub documents it ("Authorizing OAuth apps", REST "Users", "Emails",
//! "Organizations"):
//! - `GET /login/oauth/authorize`: the signed-in user (set with
//!   [`GitHubStub::sign_in_as`]) approves at once; redirect to the registered
//!   `redirect_uri` with `code` and `state`. An unknown client or another redirect URI is
//!   refused (GitHub shows an error page and redirects nowhere).
//! - `POST /login/oauth/access_token`: `client_id`, `client_secret`, `code`,
//!   `redirect_uri`, `code_verifier` in the form. Codes are single use and, when the
//!   authorization request had a PKCE challenge, need the matching verifier. The answer
//!   is form-encoded unless `Accept: application/json`; a bad code or client is **HTTP
//!   200** with an `error` member (`bad_verification_code`,
//!   `incorrect_client_credentials`), as GitHub does.
//! - `GET /user`, `/user/emails`, `/user/orgs`, `/user/teams` with `Authorization:
//!   Bearer <token>`: 401 `Bad credentials` without a valid token, 403 without a
//!   `User-Agent` (GitHub refuses those). The lists are paged as GitHub pages them:
//!   `per_page` (default 30, at most 100) and `page`, with a `Link` header naming the
//!   `next` and `last` pages while there are more.
//!
//! Not modelled: code expiry (10 minutes), scopes (every token sees everything), rate
//! limits, GitHub Apps, device flow, `login` and `allow_signup`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

/// A GitHub account of the stub.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: u64,
    pub login: String,
    pub name: String,
    /// `(address, primary, verified)`.
    pub emails: Vec<(String, bool, bool)>,
    pub orgs: Vec<String>,
    /// `(organisation, team slug)`.
    pub teams: Vec<(String, String)>,
}

#[derive(Default)]
struct Stub {
    /// Where the stub listens, for the `Link` headers.
    url: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    signed_in: Option<String>,
    accounts: HashMap<String, Account>,
    /// code → (login, PKCE challenge).
    codes: HashMap<String, (String, Option<String>)>,
    /// access token → login.
    tokens: HashMap<String, String>,
}

type Shared = Arc<Mutex<Stub>>;

/// The running stub.
pub struct GitHubStub {
    pub url: String,
    state: Shared,
}

impl GitHubStub {
    /// Starts the stub for one OAuth app.
    pub async fn start(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let state: Shared = Arc::new(Mutex::new(Stub {
            url: url.clone(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            ..Stub::default()
        }));
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/user", get(user))
            .route("/user/emails", get(emails))
            .route("/user/orgs", get(orgs))
            .route("/user/teams", get(teams))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub fn add(&self, account: Account) {
        let mut s = self.state.lock().unwrap();
        s.accounts.insert(account.login.clone(), account);
    }

    /// Who approves the next authorization requests.
    pub fn sign_in_as(&self, login: &str) {
        self.state.lock().unwrap().signed_in = Some(login.to_owned());
    }
}

fn random() -> String {
    testkit::random_hex(20)
}

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut s = s.lock().unwrap();
    if q.get("client_id") != Some(&s.client_id) || q.get("redirect_uri") != Some(&s.redirect_uri) {
        return (
            StatusCode::NOT_FOUND,
            "The redirect_uri is not associated with this application.",
        )
            .into_response();
    }
    let Some(login) = s.signed_in.clone() else {
        return (StatusCode::UNAUTHORIZED, "Sign in to GitHub").into_response();
    };
    let code = random();
    let challenge = q.get("code_challenge").cloned();
    s.codes.insert(code.clone(), (login, challenge));
    let back = url::Url::parse_with_params(
        &s.redirect_uri,
        &[
            ("code", code.as_str()),
            ("state", q.get("state").map_or("", String::as_str)),
        ],
    )
    .unwrap();
    // GitHub answers 302 Found.
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

async fn access_token(
    State(s): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let mut s = s.lock().unwrap();
    let answer = if f.get("client_id") != Some(&s.client_id)
        || f.get("client_secret") != Some(&s.client_secret)
    {
        vec![("error", "incorrect_client_credentials".to_owned())]
    } else {
        let code = f.get("code").cloned().unwrap_or_default();
        match s.codes.remove(&code) {
            Some((login, challenge)) if pkce_ok(challenge.as_deref(), f.get("code_verifier")) => {
                let token = format!("gho_{}", random());
                s.tokens.insert(token.clone(), login);
                vec![
                    ("access_token", token),
                    ("scope", "read:user,user:email,read:org".to_owned()),
                    ("token_type", "bearer".to_owned()),
                ]
            }
            _ => vec![("error", "bad_verification_code".to_owned())],
        }
    };
    let json_wanted = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if json_wanted {
        let map: serde_json::Map<String, Value> = answer
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        Json(Value::Object(map)).into_response()
    } else {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(answer)
            .finish();
        (
            [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
            body,
        )
            .into_response()
    }
}

fn pkce_ok(challenge: Option<&str>, verifier: Option<&String>) -> bool {
    let Some(challenge) = challenge else {
        return true;
    };
    verifier.is_some_and(|v| {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref()) == challenge
    })
}

/// The account the request's token belongs to, or GitHub's refusal.
fn account(s: &Shared, headers: &HeaderMap) -> Result<Account, Box<Response>> {
    if !headers.contains_key(header::USER_AGENT) {
        return Err(Box::new((StatusCode::FORBIDDEN, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.").into_response()));
    }
    let s = s.lock().unwrap();
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .and_then(|t| s.tokens.get(t))
        .and_then(|login| s.accounts.get(login))
        .cloned()
        .ok_or_else(|| {
            Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"message": "Bad credentials", "status": "401"})),
                )
                    .into_response(),
            )
        })
}

async fn user(State(s): State<Shared>, headers: HeaderMap) -> Response {
    match account(&s, &headers) {
        Ok(a) => Json(json!({
            "login": a.login, "id": a.id, "name": a.name, "type": "User",
            // GitHub shows the public address here, verified or not.
            "email": a.emails.first().map(|e| e.0.clone()),
        }))
        .into_response(),
        Err(r) => *r,
    }
}

async fn emails(State(s): State<Shared>, headers: HeaderMap) -> Response {
    match account(&s, &headers) {
        Ok(a) => Json(json!(
            a.emails
                .iter()
                .map(|(e, primary, verified)| json!({"email": e, "primary": primary, "verified": verified, "visibility": null}))
                .collect::<Vec<_>>()
        ))
        .into_response(),
        Err(r) => *r,
    }
}

/// One page of `items` at `path`, as GitHub pages its lists.
fn paged(s: &Shared, path: &str, q: &HashMap<String, String>, items: Vec<Value>) -> Response {
    let number = |k: &str| q.get(k).and_then(|v| v.parse::<usize>().ok());
    let per_page = number("per_page").unwrap_or(30).clamp(1, 100);
    let page = number("page").unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut resp = Json(Value::Array(slice)).into_response();
    if page < last {
        let base = format!("{}{path}?per_page={per_page}", s.lock().unwrap().url);
        let link = format!(
            "<{base}&page={}>; rel=\"next\", <{base}&page={last}>; rel=\"last\"",
            page + 1
        );
        resp.headers_mut()
            .insert(header::LINK, link.parse().unwrap());
    }
    resp
}

async fn orgs(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match account(&s, &headers) {
        Ok(a) => {
            let items = a
                .orgs
                .iter()
                .map(|o| json!({"login": o, "id": 1}))
                .collect();
            paged(&s, "/user/orgs", &q, items)
        }
        Err(r) => *r,
    }
}

async fn teams(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match account(&s, &headers) {
        Ok(a) => {
            let items = a
                .teams
                .iter()
                .map(|(org, slug)| json!({"slug": slug, "name": slug, "organization": {"login": org}}))
                .collect();
            paged(&s, "/user/teams", &q, items)
        }
        Err(r) => *r,
    }
}
