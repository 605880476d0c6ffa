//! Speaking OAuth to a running server by hand: clients registered through the CLI, raw
//! requests to the token, introspection and revocation endpoints, RFC 6749 §5.2 error
//! checks, and access token verification with an independent library (jsonwebtoken)
//! against the published JWKS.

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;

use super::{Server, TestDb};

/// A response: status, headers and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics unless the status is 200 and the response is not cacheable; returns the body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
        &self.body
    }

    /// Panics unless this is an RFC 6749 §5.2 error with `status` and `code`, JSON, and
    /// `Cache-Control: no-store`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.body["error"], code, "{self:?}");
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{self:?}"
        );
        if let Some(d) = self.body.get("error_description") {
            assert!(d.is_string(), "{self:?}");
        }
        self
    }

    /// [`Reply::assert_error`] for 401 `invalid_client`, which must carry a Basic challenge
    /// naming the error (RFC 6750 §3 style), next to the JSON body.
    #[track_caller]
    pub fn assert_invalid_client(&self) -> &Self {
        self.assert_error(401, "invalid_client");
        assert!(
            self.header("www-authenticate")
                .is_some_and(|c| c.starts_with("Basic realm=\"gatehouse\"")
                    && c.contains("error=\"invalid_client\"")),
            "{self:?}"
        );
        self
    }
}

/// The string member `k` of a JSON reply (a token, a code); panics naming it when absent.
pub fn field(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_owned()
}

/// Sends a request and reads the reply.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let r = request.send().await.expect("request reaches the server");
    let (status, headers) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// An `application/x-www-form-urlencoded` body (parameters may repeat, on purpose).
pub fn form(params: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `POST path` with a form body.
pub fn post_form(server: &Server, path: &str, params: &[(&str, &str)]) -> reqwest::RequestBuilder {
    server
        .post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(params))
}

/// A registered client's credentials.
#[derive(Debug, Clone)]
pub struct Creds {
    pub id: String,
    pub secret: Option<String>,
}

impl Creds {
    pub fn secret(&self) -> &str {
        self.secret.as_deref().expect("a confidential client")
    }

    /// `Authorization: Basic …` (RFC 6749 §2.3.1: form-encoded, then base64).
    pub fn basic(&self) -> String {
        basic(&self.id, self.secret())
    }

    /// The same client with another secret.
    pub fn with_secret(&self, secret: &str) -> Self {
        Self {
            id: self.id.clone(),
            secret: Some(secret.to_owned()),
        }
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form(&[("x", s)])[2..].to_owned();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// `authserver clients create --id ID ARGS…`, run in-process through the library
/// ([`TestDb::commands`]: the same flags and services, no child process); panics unless
/// it succeeds.
pub async fn create_client(db: &TestDb, id: &str, args: &[&str]) -> Creds {
    let mut all = vec!["--id", id];
    all.extend_from_slice(args);
    let v = db
        .commands()
        .await
        .create_client(&all)
        .await
        .unwrap_or_else(|e| panic!("clients create --id {id} {args:?}: {e:#}"));
    assert_eq!(v["client_id"], id, "{v}");
    Creds {
        id: id.to_owned(),
        secret: v["client_secret"].as_str().map(str::to_owned),
    }
}

/// A client_credentials request with Basic authentication and extra parameters.
pub async fn token(server: &Server, creds: &Creds, params: &[(&str, &str)]) -> Reply {
    let mut all = vec![("grant_type", "client_credentials")];
    all.extend_from_slice(params);
    send(post_form(server, "/token", &all).header(header::AUTHORIZATION, creds.basic())).await
}

/// An access token for `creds` (Basic auth), asserting success.
pub async fn access_token(server: &Server, creds: &Creds) -> String {
    let r = token(server, creds, &[]).await;
    r.ok()["access_token"].as_str().unwrap().to_owned()
}

/// Introspects `token` as `caller` (Basic auth).
pub async fn introspect(server: &Server, caller: &Creds, token: &str) -> Reply {
    send(
        post_form(server, "/introspect", &[("token", token)])
            .header(header::AUTHORIZATION, caller.basic()),
    )
    .await
}

/// Whether introspection (as `caller`) says `token` is active.
pub async fn is_active(server: &Server, caller: &Creds, token: &str) -> bool {
    let r = introspect(server, caller, token).await;
    r.ok()["active"].as_bool().expect("active is a boolean")
}

/// Revokes `token` as `caller` (Basic auth) with extra parameters.
pub async fn revoke(
    server: &Server,
    caller: &Creds,
    token: &str,
    params: &[(&str, &str)],
) -> Reply {
    let mut all = vec![("token", token)];
    all.extend_from_slice(params);
    send(post_form(server, "/revoke", &all).header(header::AUTHORIZATION, caller.basic())).await
}

/// Verifies an access token with jsonwebtoken against the server's JWKS: signature by
/// the key its `kid` names under `alg`, `typ: at+jwt`, `iss`, `aud`, `exp`. Returns the
/// claims.
pub async fn verify_access_token(
    server: &Server,
    token: &str,
    alg: Algorithm,
    issuer: &str,
    audience: &str,
) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, alg, "{header:?}");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "{header:?}");
    let kid = header.kid.expect("access tokens name their key");
    let (status, _, jwks) = server.get_json("/jwks").await;
    assert_eq!(status, StatusCode::OK);
    let set: JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS"));
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("access token does not verify: {e}"))
        .claims
}
