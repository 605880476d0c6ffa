//! Protobuf ⇄ domain conversion. Requests are validated into domain types here, so every
//! bad argument becomes INVALID_ARGUMENT naming its field.

use tonic::Status;

use super::proto;
use crate::domain::client::{
    AuthMethod, ClientSpec, ClientType, DEFAULT_ACCESS_TOKEN_LIFETIME,
    DEFAULT_REFRESH_TOKEN_LIFETIME, FieldError, GrantType, SubjectType,
};
use crate::domain::signing_key::{Algorithm, KeyMeta, KeyPolicy, KeyState};
use crate::domain::user::NewUser;
use crate::store::clients::StoredClient;
use crate::store::users::StoredUser;

pub fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

/// Registration problems named as the request spells the field: the registration's
/// fields live under `spec.`, a caller-supplied secret is the request's `supplied_secret`.
pub fn field_errors(errors: &[FieldError]) -> Status {
    Status::invalid_argument(
        errors
            .iter()
            .map(|e| match e.field {
                "client_secret" => format!("supplied_secret: {}", e.message),
                field => format!("spec.{field}: {}", e.message),
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// User problems named as the request spells the field (`profile` is `profile_json`).
pub fn user_field_errors(errors: &[FieldError]) -> Status {
    Status::invalid_argument(
        errors
            .iter()
            .map(|e| match e.field {
                "profile" => format!("profile_json: {}", e.message),
                field => format!("{field}: {}", e.message),
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// The tenant and the validated-shape user of a create request (the domain rules run
/// in the user service, which reports every field at once).
pub fn new_user(r: proto::CreateUserRequest) -> Result<(String, NewUser), Status> {
    let profile = if r.profile_json.trim().is_empty() {
        serde_json::Map::new()
    } else {
        match serde_json::from_str::<serde_json::Value>(&r.profile_json) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => return Err(invalid("profile_json", "must be a JSON object")),
            Err(e) => return Err(invalid("profile_json", format!("not JSON: {e}"))),
        }
    };
    Ok((
        r.tenant_id,
        NewUser {
            username: r.username,
            email: r.email.filter(|e| !e.is_empty()),
            email_verified: r.email_verified,
            profile,
        },
    ))
}

pub fn user_to_proto(u: &StoredUser) -> proto::User {
    proto::User {
        tenant_id: u.tenant_id.clone(),
        user_id: u.user_id.clone(),
        username: u.username.clone(),
        email: u.email.clone(),
        email_verified: u.email_verified,
        profile_json: serde_json::Value::Object(u.profile.clone()).to_string(),
        has_password: u.password_hash.is_some(),
        created_at: u.created_at,
        updated_at: u.updated_at,
    }
}

pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(invalid(field, "is required"))
    } else {
        Ok(value)
    }
}

pub fn algorithm(field: &str, s: &str) -> Result<Algorithm, Status> {
    s.parse::<Algorithm>().map_err(|()| {
        invalid(
            field,
            format!("unknown algorithm {s:?} (expected RS256, ES256 or EdDSA)"),
        )
    })
}

pub fn client_spec(p: proto::ClientSpec) -> Result<ClientSpec, Status> {
    let client_type = match p.client_type.as_str() {
        "" | "confidential" => ClientType::Confidential,
        "public" => ClientType::Public,
        other => {
            return Err(invalid(
                "spec.client_type",
                format!("unknown client type {other:?} (expected confidential or public)"),
            ));
        }
    };
    let grant_types = p
        .grant_types
        .iter()
        .map(|g| g.parse::<GrantType>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("spec.grant_types", e))?;
    let auth_method = match p.token_endpoint_auth_method.as_str() {
        "" if client_type == ClientType::Public => AuthMethod::None,
        "" => AuthMethod::ClientSecretBasic,
        m => m
            .parse::<AuthMethod>()
            .map_err(|e| invalid("spec.token_endpoint_auth_method", e))?,
    };
    let subject_type = match p.subject_type.as_str() {
        "" | "public" => SubjectType::Public,
        "pairwise" => SubjectType::Pairwise,
        other => {
            return Err(invalid(
                "spec.subject_type",
                format!("unknown subject type {other:?} (expected public or pairwise)"),
            ));
        }
    };
    let jwks = p
        .jwks_json
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| invalid("spec.jwks_json", format!("not JSON: {e}")))?;
    let access_token_alg = match p.access_token_alg.as_str() {
        "" => None,
        a => Some(algorithm("spec.access_token_alg", a)?),
    };
    let id_token_alg = match p.id_token_alg.as_str() {
        "" => None,
        a => Some(algorithm("spec.id_token_alg", a)?),
    };
    let or_default = |v: u64, d: u64| if v == 0 { d } else { v };
    Ok(ClientSpec {
        client_id: p.client_id,
        client_type,
        grant_types,
        redirect_uris: p.redirect_uris,
        post_logout_redirect_uris: p.post_logout_redirect_uris,
        scopes: p.scopes,
        audiences: p.audiences,
        auth_method,
        jwks_uri: p.jwks_uri.filter(|u| !u.is_empty()),
        jwks,
        access_token_lifetime_seconds: or_default(
            p.access_token_lifetime_seconds,
            DEFAULT_ACCESS_TOKEN_LIFETIME,
        ),
        refresh_token_lifetime_seconds: or_default(
            p.refresh_token_lifetime_seconds,
            DEFAULT_REFRESH_TOKEN_LIFETIME,
        ),
        subject_type,
        dpop_bound_access_tokens: p.dpop_bound_access_tokens,
        allowed_cors_origins: p.allowed_cors_origins,
        first_party: p.first_party,
        access_token_alg,
        id_token_alg,
        refresh_without_offline_access: p.refresh_without_offline_access,
        sector_identifier_uri: p.sector_identifier_uri.filter(|u| !u.is_empty()),
        require_pushed_authorization_requests: p.require_pushed_authorization_requests,
        introspect_any_token: p.introspect_any_token,
    })
}

pub fn client_spec_to_proto(s: &ClientSpec) -> proto::ClientSpec {
    proto::ClientSpec {
        client_id: s.client_id.clone(),
        client_type: match s.client_type {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
        .to_owned(),
        grant_types: s
            .grant_types
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        redirect_uris: s.redirect_uris.clone(),
        post_logout_redirect_uris: s.post_logout_redirect_uris.clone(),
        scopes: s.scopes.clone(),
        audiences: s.audiences.clone(),
        token_endpoint_auth_method: s.auth_method.as_str().to_owned(),
        jwks_uri: s.jwks_uri.clone(),
        jwks_json: s.jwks.as_ref().map(ToString::to_string),
        access_token_lifetime_seconds: s.access_token_lifetime_seconds,
        refresh_token_lifetime_seconds: s.refresh_token_lifetime_seconds,
        subject_type: match s.subject_type {
            SubjectType::Public => "public",
            SubjectType::Pairwise => "pairwise",
        }
        .to_owned(),
        dpop_bound_access_tokens: s.dpop_bound_access_tokens,
        allowed_cors_origins: s.allowed_cors_origins.clone(),
        first_party: s.first_party,
        access_token_alg: s
            .access_token_alg
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        id_token_alg: s
            .id_token_alg
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        refresh_without_offline_access: s.refresh_without_offline_access,
        sector_identifier_uri: s.sector_identifier_uri.clone(),
        require_pushed_authorization_requests: s.require_pushed_authorization_requests,
        introspect_any_token: s.introspect_any_token,
    }
}

pub fn client_to_proto(c: &StoredClient, now: i64) -> proto::Client {
    proto::Client {
        tenant_id: c.tenant_id.clone(),
        spec: Some(client_spec_to_proto(&c.spec)),
        valid_secrets: u32::try_from(c.secrets.iter().filter(|s| s.valid_at(now)).count())
            .unwrap_or(u32::MAX),
        created_at: c.created_at,
        updated_at: c.updated_at,
        secret_fingerprint: c
            .current_secret()
            .map(|s| crate::crypto::secret::fingerprint(&s.digest))
            .unwrap_or_default(),
    }
}

/// A request's key policy over the server default; zero/empty/unset fields keep the
/// default. The promotion delay must outlast the JWKS max-age the server sends.
pub fn key_policy(p: Option<proto::KeyPolicy>, default: &KeyPolicy) -> Result<KeyPolicy, Status> {
    let Some(p) = p else {
        return Ok(default.clone());
    };
    let mut out = default.clone();
    if !p.algorithms.is_empty() {
        out.algorithms = crate::config::parse_algorithms(&p.algorithms)
            .map_err(|e| invalid("policy.algorithms", e))?;
    }
    if p.rsa_bits != 0 {
        if ![2048, 3072, 4096].contains(&p.rsa_bits) {
            return Err(invalid("policy.rsa_bits", "must be 2048, 3072 or 4096"));
        }
        out.rsa_bits = p.rsa_bits;
    }
    if p.rotation_interval_seconds != 0 {
        out.rotation_interval_seconds = p.rotation_interval_seconds;
    }
    if let Some(v) = p.overlap_window_seconds {
        out.overlap_window_seconds = v;
    }
    out.promotion_delay_seconds = p
        .promotion_delay_seconds
        .unwrap_or(default.promotion_delay_seconds);
    if out.overlap_window_seconds > out.rotation_interval_seconds {
        return Err(invalid(
            "policy.overlap_window_seconds",
            "must not exceed the rotation interval",
        ));
    }
    // The JWKS is served with the server's max-age, whatever this tenant's overlap.
    out.check_promotion_delay(default.jwks_max_age())
        .map_err(|e| invalid("policy.promotion_delay_seconds", e))?;
    Ok(out)
}

pub fn key_to_proto(k: &KeyMeta, source: &str, now: i64) -> proto::SigningKey {
    proto::SigningKey {
        kid: k.kid.clone(),
        alg: k.alg.as_str().to_owned(),
        state: KeyState::as_str(k.state(now)).to_owned(),
        key_state: match k.state(now) {
            KeyState::Pending => proto::KeyState::Pending,
            KeyState::Active => proto::KeyState::Active,
            KeyState::Retiring => proto::KeyState::Retiring,
            KeyState::Retired => proto::KeyState::Retired,
        }
        .into(),
        created_at: k.created_at,
        activates_at: k.activates_at,
        superseded_at: k.superseded_at,
        retires_at: k.retires_at,
        source: source.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_user_client_fields_round_trip_and_default() {
        let p = proto::ClientSpec {
            client_id: "web".into(),
            grant_types: vec!["authorization_code".into()],
            redirect_uris: vec!["https://app.example.com/cb".into()],
            subject_type: "pairwise".into(),
            id_token_alg: "ES256".into(),
            refresh_without_offline_access: true,
            sector_identifier_uri: Some("https://sector.example.com/x.json".into()),
            ..proto::ClientSpec::default()
        };
        let spec = client_spec(p).unwrap();
        assert_eq!(spec.id_token_alg, Some(Algorithm::Es256));
        assert!(spec.refresh_without_offline_access);
        assert_eq!(spec.sector(), "sector.example.com");
        let back = client_spec_to_proto(&spec);
        assert_eq!(back.id_token_alg, "ES256");
        assert!(back.refresh_without_offline_access);
        let plain = client_spec(proto::ClientSpec {
            client_id: "m".into(),
            sector_identifier_uri: Some(String::new()),
            ..proto::ClientSpec::default()
        })
        .unwrap();
        assert_eq!(plain.id_token_alg, None);
        assert!(!plain.refresh_without_offline_access);
        assert_eq!(plain.sector_identifier_uri, None);
        let bad = client_spec(proto::ClientSpec {
            id_token_alg: "HS256".into(),
            ..proto::ClientSpec::default()
        })
        .unwrap_err();
        assert!(bad.message().contains("spec.id_token_alg"), "{bad:?}");
    }

    fn policy(overlap: Option<u64>) -> proto::KeyPolicy {
        proto::KeyPolicy {
            algorithms: vec!["ES256".into()],
            rsa_bits: 0,
            rotation_interval_seconds: 86_400,
            overlap_window_seconds: overlap,
            promotion_delay_seconds: None,
        }
    }

    #[test]
    fn an_explicit_zero_overlap_is_kept_and_unset_means_the_default() {
        let default = KeyPolicy::default();
        assert_eq!(
            key_policy(Some(policy(Some(0))), &default)
                .unwrap()
                .overlap_window_seconds,
            0
        );
        assert_eq!(
            key_policy(Some(policy(None)), &default)
                .unwrap()
                .overlap_window_seconds,
            default.overlap_window_seconds
        );
    }

    #[test]
    fn bad_policies_name_the_field() {
        let mut p = policy(Some(10));
        p.rsa_bits = 1024;
        let err = key_policy(Some(p), &KeyPolicy::default()).unwrap_err();
        assert!(
            err.message().starts_with("policy.rsa_bits:"),
            "{}",
            err.message()
        );
        let err = key_policy(Some(policy(Some(90_000))), &KeyPolicy::default()).unwrap_err();
        assert!(err.message().starts_with("policy.overlap_window_seconds:"));
    }

    #[test]
    fn the_promotion_delay_defaults_to_the_servers_and_must_outlast_its_jwks_max_age() {
        let server = KeyPolicy::default();
        // Unset (and an old client's 0, which is not on the wire): the server's.
        let p = key_policy(Some(policy(None)), &server).unwrap();
        assert_eq!(p.promotion_delay_seconds, 960);
        let explicit = |delay| {
            key_policy(
                Some(proto::KeyPolicy {
                    promotion_delay_seconds: Some(delay),
                    ..policy(None)
                }),
                &server,
            )
        };
        assert_eq!(explicit(900).unwrap().promotion_delay_seconds, 900);
        let err = explicit(0).unwrap_err();
        assert!(
            err.message().starts_with(
                "policy.promotion_delay_seconds: 0 s is shorter than the JWKS max-age of 900 s"
            ),
            "{}",
            err.message()
        );
        // The tenant's own short overlap does not shorten the max-age the server sends.
        let err = key_policy(
            Some(proto::KeyPolicy {
                promotion_delay_seconds: Some(100),
                ..policy(Some(800))
            }),
            &server,
        )
        .unwrap_err();
        assert!(
            err.message().contains("max-age of 900 s"),
            "{}",
            err.message()
        );
    }
}
