//! The Management API's operations, once: [`OPERATIONS`] builds the router (so nothing is
//! served that is not described) and the OpenAPI 3.1 document at `GET /openapi.json`
//! (so nothing is described that is not served). Body schemas come from the Rust types
//! the handlers (de)serialise, through `schemars`: a changed type changes the document.

use axum::routing::{MethodRouter, delete, get, patch, post};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::users;
use super::{
    AppState, RotateBody, RotateSecretBody, audit, client, clients, create_client, delete_client,
    health, keys, patch_client, rotate_client_secret, rotate_keys, stats,
};
use crate::management::audit::AuditEntry;
use crate::management::users::{ConsentView, NewUserBody, PasswordBody, SessionView, UserView};
use crate::management::{ClientView, Health, KeyView, Page, Permission, Stats, Tier};

/// Writes a body's schema into the generator's definitions; answers its `$ref`.
type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

/// One operation: its route, what it needs, and what it takes and gives.
pub struct Operation {
    pub method: &'static str,
    /// Relative to `{issuer}/api/v1`, in OpenAPI's `{param}` syntax (axum's too).
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    pub permission: Permission,
    pub tier: Tier,
    pub handler: fn() -> MethodRouter<AppState>,
    /// The request body's content type and schema.
    pub request: Option<(&'static str, SchemaOf)>,
    /// The success status and its JSON schema (`None`: no body).
    pub response: (u16, Option<SchemaOf>),
    /// Query parameters: name, description, repeatable.
    pub query: &'static [(&'static str, &'static str, bool)],
    /// Whether `If-Match` is honoured.
    pub if_match: bool,
    /// Refusals beyond those of every operation (401, 403, 429, 500, 503).
    pub errors: &'static [u16],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

const PAGE: &[(&str, &str, bool)] = &[
    ("limit", "Items per page, 1–1000 (default 100).", false),
    ("cursor", "The `next` of the previous page.", false),
];

const USER_SEARCH: &[(&str, &str, bool)] = &[
    ("prefix", "Username or e-mail prefix, any case.", false),
    ("limit", "Users per page, 1–1000 (default 100).", false),
    ("cursor", "The `next` of the previous page.", false),
];

const AUDIT_QUERY: &[(&str, &str, bool)] = &[
    ("type", "Event name; repeat for any of several.", true),
    ("user", "The user the event concerns (its subject).", false),
    ("client", "A client id that acted or was acted on.", false),
    ("ip", "An IP address or CIDR range.", false),
    ("from", "RFC 3339 date-time, inclusive.", false),
    ("to", "RFC 3339 date-time, exclusive.", false),
    ("outcome", "`success` or `failure`.", false),
    ("limit", "Events per page, 1–1000 (default 100).", false),
    ("cursor", "The `next` of the previous page.", false),
    (
        "format",
        "`json` (default) or `csv` (the whole filtered trail).",
        false,
    ),
];

/// Every operation of the API.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/jwks",
        id: "listKeys",
        summary: "Every signing key of the tenant with its state and times",
        permission: Permission::KeysRead,
        tier: Tier::Read,
        handler: || get(keys),
        request: None,
        response: (200, Some(schema::<KeyList>)),
        query: &[],
        if_match: false,
        errors: &[],
    },
    Operation {
        method: "post",
        path: "/jwks/rotate",
        id: "rotateKeys",
        summary: "New keys for every algorithm (force: sign after the promotion delay; now: at once)",
        permission: Permission::KeysRotate,
        tier: Tier::Sensitive,
        handler: || post(rotate_keys),
        request: Some(("application/json", schema::<RotateBody>)),
        response: (200, Some(schema::<CreatedKeys>)),
        query: &[],
        if_match: false,
        errors: &[400],
    },
    Operation {
        method: "get",
        path: "/clients",
        id: "listClients",
        summary: "The registered clients, by client id",
        permission: Permission::ClientsRead,
        tier: Tier::Read,
        handler: || get(clients),
        request: None,
        response: (200, Some(schema::<Page<ClientView>>)),
        query: PAGE,
        if_match: false,
        errors: &[400],
    },
    Operation {
        method: "post",
        path: "/clients",
        id: "createClient",
        summary: "Register a client; a generated secret is in the answer, once",
        permission: Permission::ClientsWrite,
        tier: Tier::Write,
        handler: || post(create_client),
        request: Some((
            "application/json",
            schema::<crate::domain::client::ClientSpec>,
        )),
        response: (201, Some(schema::<CreatedClient>)),
        query: &[],
        if_match: false,
        errors: &[400, 409, 422],
    },
    Operation {
        method: "get",
        path: "/clients/{client_id}",
        id: "getClient",
        summary: "One client's registration; ETag is its version",
        permission: Permission::ClientsRead,
        tier: Tier::Read,
        handler: || get(client),
        request: None,
        response: (200, Some(schema::<ClientView>)),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "patch",
        path: "/clients/{client_id}",
        id: "patchClient",
        summary: "Change a client's registration (JSON Merge Patch, RFC 7396)",
        permission: Permission::ClientsWrite,
        tier: Tier::Write,
        handler: || patch(patch_client),
        request: Some(("application/merge-patch+json", schema::<Map<String, Value>>)),
        response: (200, Some(schema::<ClientView>)),
        query: &[],
        if_match: true,
        errors: &[400, 404, 409, 412, 422],
    },
    Operation {
        method: "delete",
        path: "/clients/{client_id}",
        id: "deleteClient",
        summary: "Delete a client, revoke everything issued to it, retire its id",
        permission: Permission::ClientsWrite,
        tier: Tier::Delete,
        handler: || delete(delete_client),
        request: None,
        response: (204, None),
        query: &[],
        if_match: true,
        errors: &[400, 404, 409, 412],
    },
    Operation {
        method: "post",
        path: "/clients/{client_id}/secret",
        id: "rotateClientSecret",
        summary: "A new client secret, shown once; the previous one stays valid for the overlap",
        permission: Permission::ClientsWrite,
        tier: Tier::Sensitive,
        handler: || post(rotate_client_secret),
        request: Some(("application/json", schema::<RotateSecretBody>)),
        response: (200, Some(schema::<RotatedSecret>)),
        query: &[],
        if_match: false,
        errors: &[400, 404, 409, 422],
    },
    Operation {
        method: "get",
        path: "/users",
        id: "searchUsers",
        summary: "Users whose username or e-mail starts with a prefix, by username",
        permission: Permission::UsersRead,
        tier: Tier::Read,
        handler: || get(users::list_users),
        request: None,
        response: (200, Some(schema::<Page<UserView>>)),
        query: USER_SEARCH,
        if_match: false,
        errors: &[400],
    },
    Operation {
        method: "post",
        path: "/users",
        id: "createUser",
        summary: "Create a user with a password under the tenant's policy",
        permission: Permission::UsersWrite,
        tier: Tier::Write,
        handler: || post(users::create_user),
        request: Some(("application/json", schema::<NewUserBody>)),
        response: (201, Some(schema::<UserView>)),
        query: &[],
        if_match: false,
        errors: &[400, 409, 422],
    },
    Operation {
        method: "get",
        path: "/users/{user_id}",
        id: "getUser",
        summary: "One user",
        permission: Permission::UsersRead,
        tier: Tier::Read,
        handler: || get(users::get_user),
        request: None,
        response: (200, Some(schema::<UserView>)),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "patch",
        path: "/users/{user_id}",
        id: "patchUser",
        summary: "Change a user's e-mail, its verification or profile (JSON Merge Patch)",
        permission: Permission::UsersWrite,
        tier: Tier::Write,
        handler: || patch(users::patch_user),
        request: Some(("application/merge-patch+json", schema::<Map<String, Value>>)),
        response: (200, Some(schema::<UserView>)),
        query: &[],
        if_match: true,
        errors: &[400, 404, 412, 422],
    },
    Operation {
        method: "delete",
        path: "/users/{user_id}",
        id: "deleteUser",
        summary: "Delete a user and everything of theirs",
        permission: Permission::UsersWrite,
        tier: Tier::Delete,
        handler: || delete(users::delete_user),
        request: None,
        response: (204, None),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "post",
        path: "/users/{user_id}/password",
        id: "setUserPassword",
        summary: "Set a user's password; their sessions end and grants are revoked",
        permission: Permission::UsersWrite,
        tier: Tier::Sensitive,
        handler: || post(users::set_password),
        request: Some(("application/json", schema::<PasswordBody>)),
        response: (200, Some(schema::<UserView>)),
        query: &[],
        if_match: false,
        errors: &[400, 404, 422],
    },
    Operation {
        method: "delete",
        path: "/users/{user_id}/mfa",
        id: "resetUserMfa",
        summary: "Remove a user's second factor (TOTP and recovery codes)",
        permission: Permission::UsersWrite,
        tier: Tier::Sensitive,
        handler: || delete(users::reset_mfa),
        request: None,
        response: (200, Some(schema::<MfaRemoved>)),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "get",
        path: "/users/{user_id}/sessions",
        id: "listUserSessions",
        summary: "A user's valid sessions in every browser, newest first",
        permission: Permission::SessionsRead,
        tier: Tier::Read,
        handler: || get(users::sessions),
        request: None,
        response: (200, Some(schema::<SessionList>)),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "delete",
        path: "/users/{user_id}/sessions",
        id: "endUserSessions",
        summary: "Sign a user out of every browser",
        permission: Permission::SessionsWrite,
        tier: Tier::Delete,
        handler: || delete(users::end_sessions),
        request: None,
        response: (200, Some(schema::<SessionsEnded>)),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "delete",
        path: "/users/{user_id}/sessions/{session_id}",
        id: "endUserSession",
        summary: "End one of a user's sessions",
        permission: Permission::SessionsWrite,
        tier: Tier::Delete,
        handler: || delete(users::end_session),
        request: None,
        response: (204, None),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "get",
        path: "/users/{user_id}/consents",
        id: "listUserConsents",
        summary: "The clients a user consented to, with the scopes",
        permission: Permission::UsersRead,
        tier: Tier::Read,
        handler: || get(users::consents),
        request: None,
        response: (200, Some(schema::<ConsentList>)),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "delete",
        path: "/users/{user_id}/consents/{client_id}",
        id: "revokeUserConsent",
        summary: "Revoke a user's consent to a client and their grants for it",
        permission: Permission::UsersWrite,
        tier: Tier::Delete,
        handler: || delete(users::revoke_consent),
        request: None,
        response: (204, None),
        query: &[],
        if_match: false,
        errors: &[404],
    },
    Operation {
        method: "get",
        path: "/audit",
        id: "searchAudit",
        summary: "The audit trail, filtered, newest first; CSV with format=csv or Accept: text/csv",
        permission: Permission::AuditRead,
        tier: Tier::Read,
        handler: || get(audit),
        request: None,
        response: (200, Some(schema::<Page<AuditEntry>>)),
        query: AUDIT_QUERY,
        if_match: false,
        errors: &[400],
    },
    Operation {
        method: "get",
        path: "/stats",
        id: "stats",
        summary: "Counts of clients, users, live sessions and tokens issued per grant type",
        permission: Permission::StatsRead,
        tier: Tier::Read,
        handler: || get(stats),
        request: None,
        response: (200, Some(schema::<Stats>)),
        query: &[],
        if_match: false,
        errors: &[],
    },
    Operation {
        method: "get",
        path: "/stats/health",
        id: "health",
        summary: "The health of the database, schema, keys and Redis",
        permission: Permission::StatsRead,
        tier: Tier::Read,
        handler: || get(health),
        request: None,
        response: (200, Some(schema::<Health>)),
        query: &[],
        if_match: false,
        errors: &[],
    },
];

/// `{"keys": [...]}`.
#[derive(JsonSchema)]
#[allow(dead_code)] // a schema only: the handler writes the same shape with json!
struct KeyList {
    keys: Vec<KeyView>,
}

/// `{"created": [...]}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct CreatedKeys {
    created: Vec<KeyView>,
}

/// `{"removed": …}`: whether there was a second factor to remove.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct MfaRemoved {
    removed: bool,
}

/// `{"sessions": [...]}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct SessionList {
    sessions: Vec<SessionView>,
}

/// `{"ended": n}`: how many sessions ended.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct SessionsEnded {
    ended: u64,
}

/// `{"consents": [...]}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ConsentList {
    consents: Vec<ConsentView>,
}

/// A created client: the registration and, for a confidential client, its secret.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct CreatedClient {
    #[serde(flatten)]
    client: ClientView,
    /// Shown once; only its digest is stored.
    client_secret: Option<String>,
}

/// A rotated client secret.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct RotatedSecret {
    client_id: String,
    /// Shown once.
    client_secret: String,
    previous_secret_valid_for_seconds: u64,
}

/// An RFC 9457 problem.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Problem {
    /// `https://gatehouse.dev/problems/<name>`, stable per kind of refusal.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// The offending parameter, header or body field.
    field: Option<String>,
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "A parameter, header or body field is malformed or unknown",
        401 => "No valid access token for this API",
        403 => "The token lacks the operation's scope",
        404 => "No such object",
        409 => "Conflicts with the object's state (exists, retired, managed by the operator)",
        412 => "If-Match names another version",
        422 => "The body breaks a rule",
        429 => "Over the caller's rate limit for the tier",
        500 => "A failure on our side",
        503 => "The database is unavailable",
        _ => "",
    }
}

/// The OpenAPI 3.1 document of the API under `issuer`.
pub fn document(issuer: &str) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas/".into())
        .into_generator();
    let problem = generator.subschema_for::<Problem>();
    let rate_headers = json!({
        "X-RateLimit-Limit": {"description": "Calls per window of the operation's tier", "schema": {"type": "integer"}},
        "X-RateLimit-Remaining": {"description": "Calls left in this window", "schema": {"type": "integer"}},
        "X-RateLimit-Reset": {"description": "Seconds until the window ends", "schema": {"type": "integer"}},
    });
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut responses = Map::new();
        let (status, body) = op.response;
        let mut ok = json!({"description": status_text(status), "headers": rate_headers});
        if let Some(body) = body {
            ok["content"] = json!({"application/json": {"schema": body(&mut generator)}});
        }
        if op.id == "searchAudit" {
            ok["content"]["text/csv"] = json!({"schema": {"type": "string"}});
        }
        if matches!(
            op.id,
            "getClient" | "patchClient" | "createClient" | "getUser" | "patchUser"
        ) {
            ok["headers"]["ETag"] =
                json!({"description": "The client's version", "schema": {"type": "string"}});
        }
        responses.insert(status.to_string(), ok);
        for error in op.errors.iter().chain(&[401, 403, 429, 500, 503]) {
            responses.insert(
                error.to_string(),
                json!({
                    "description": status_text(*error),
                    "content": {"application/problem+json": {"schema": problem}},
                }),
            );
        }
        let mut parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        for (name, description, repeat) in op.query {
            let schema = if *repeat {
                json!({"type": "array", "items": {"type": "string"}})
            } else {
                json!({"type": "string"})
            };
            parameters.push(json!({"name": name, "in": "query", "description": description, "schema": schema, "explode": true}));
        }
        if op.if_match {
            parameters.push(json!({"name": "If-Match", "in": "header", "description": "The ETag the change is based on", "schema": {"type": "string"}}));
        }
        let mut operation = json!({
            "operationId": op.id,
            "summary": op.summary,
            "description": format!("Scope `{}`; rate-limit tier `{}`.", op.permission.scope(), op.tier.as_str()),
            "security": [{"oauth2": [op.permission.scope()]}, {"bearer": []}],
            "parameters": parameters,
            "responses": responses,
        });
        if let Some((content_type, body)) = op.request {
            operation["requestBody"] = json!({
                "required": matches!(op.id, "createClient" | "patchClient" | "createUser" | "patchUser" | "setUserPassword"),
                "content": {content_type: {"schema": body(&mut generator)}},
            });
        }
        let item = paths
            .entry(op.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = operation;
    }
    let scopes: Map<String, Value> = Permission::ALL
        .iter()
        .map(|p| (p.scope().to_owned(), Value::String(format!("{p:?}"))))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gatehouse Management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Manage a Gatehouse tenant over HTTP/JSON. Callers present access tokens of the tenant with the audience {issuer}/api/v1 and the operation's scope. See docs/management-api.md.",
        },
        "servers": [{"url": format!("{issuer}{}", crate::management::API_PATH)}],
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {
                "oauth2": {"type": "oauth2", "flows": {"clientCredentials": {
                    "tokenUrl": format!("{issuer}/token"),
                    "scopes": scopes,
                }}},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    })
}

/// The API's router, from [`OPERATIONS`], under `API_PATH`: each operation behind the
/// layer `gate` makes for it (the token, scope and rate-tier check).
pub fn router<L>(gate: impl Fn(&Operation) -> L) -> axum::Router<AppState>
where
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<axum::extract::Request, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Response:
        axum::response::IntoResponse + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
{
    let mut by_path: Vec<(&str, MethodRouter<AppState>)> = Vec::new();
    for op in OPERATIONS {
        let methods = (op.handler)().route_layer(gate(op));
        match by_path.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, all)) => *all = std::mem::take(all).merge(methods),
            None => by_path.push((op.path, methods)),
        }
    }
    by_path
        .into_iter()
        .fold(axum::Router::new(), |r, (path, methods)| {
            r.route(&format!("{}{path}", crate::management::API_PATH), methods)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_operation_with_resolvable_schemas() {
        let doc = document("https://id.example.com/t/acme");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["servers"][0]["url"],
            "https://id.example.com/t/acme/api/v1"
        );
        let paths = doc["paths"].as_object().unwrap();
        for op in OPERATIONS {
            let o = &paths[op.path][op.method];
            assert_eq!(o["operationId"], op.id);
            assert_eq!(o["security"][0]["oauth2"][0], op.permission.scope());
            for status in ["401", "403", "429"] {
                assert!(o["responses"][status].is_object(), "{} {status}", op.id);
            }
        }
        // Every $ref points into components.schemas.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        assert!(schemas.contains_key("ClientSpec"), "{:?}", schemas.keys());
        // The registration schema refuses unknown members, as the handler does.
        assert_eq!(schemas["ClientSpec"]["additionalProperties"], false);
    }
}
