//! End users: the rules for usernames, email addresses, profile claims and passwords.

use serde_json::{Map, Value};

use super::client::{FieldError, Invalid};

/// Longest username, in characters.
pub const MAX_USERNAME_LEN: usize = 64;

/// OpenID Connect standard claims (Core §5.1) a user's profile may carry. `sub`,
/// `email`, `email_verified` and `updated_at` come from the user row itself.
pub const PROFILE_CLAIMS: &[&str] = &[
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
];

/// What a caller asks for when creating a user (the password travels separately).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewUser {
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Profile claims as a JSON object (keys from [`PROFILE_CLAIMS`]).
    pub profile: Map<String, Value>,
}

/// The case-folded form that uniqueness is checked on: `Alice` and `alice` are one user.
pub fn normalize_username(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// Usernames are ASCII letters, digits and `. _ - @ +` (so an email address works), 1 to
/// 64 characters: no look-alike Unicode, nothing that needs escaping in a URL or a log.
pub fn validate_username(username: &str) -> Result<(), String> {
    if username.is_empty() || username.len() > MAX_USERNAME_LEN {
        return Err(format!(
            "must be 1 to {MAX_USERNAME_LEN} characters, got {}",
            username.chars().count()
        ));
    }
    if let Some(c) = username
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+')))
    {
        return Err(format!(
            "may contain only letters, digits and . _ - @ + (found {c:?})"
        ));
    }
    Ok(())
}

/// A pragmatic address check (one `@`, a dotted domain, no spaces or controls, at most
/// 254 characters): mail delivery is what finally verifies it (`email_verified`).
pub fn validate_email(email: &str) -> Result<(), String> {
    let bad = || Err(format!("{email:?} is not a valid email address"));
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad();
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return bad();
    };
    if local.is_empty()
        || local.len() > 64
        || local.contains('@')
        || domain.len() < 3
        || !domain.contains('.')
        || domain.starts_with(['.', '-'])
        || domain.ends_with(['.', '-'])
        || domain.contains("..")
        || !domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-'))
    {
        return bad();
    }
    Ok(())
}

/// Profile claims must be known OIDC claims with JSON types that claim allows.
pub fn validate_profile(profile: &Map<String, Value>) -> Result<(), String> {
    for (k, v) in profile {
        if !PROFILE_CLAIMS.contains(&k.as_str()) {
            return Err(format!(
                "unknown claim {k:?} (expected one of {})",
                PROFILE_CLAIMS.join(", ")
            ));
        }
        let ok = match k.as_str() {
            "phone_number_verified" => v.is_boolean(),
            "address" => v.is_object(),
            _ => v.as_str().is_some_and(|s| s.len() <= 1024),
        };
        if !ok {
            return Err(format!("claim {k:?} has the wrong type or is too long"));
        }
    }
    Ok(())
}

impl NewUser {
    /// Every problem, each naming its field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(message) = validate_username(&self.username) {
            errors.push(FieldError::new("username", message));
        }
        if let Some(e) = &self.email
            && let Err(message) = validate_email(e)
        {
            errors.push(FieldError::new("email", message));
        }
        if let Err(message) = validate_profile(&self.profile) {
            errors.push(FieldError::new("profile", message));
        }
        errors
    }
}

/// Length limits, counted in characters (Unicode scalar values), as NIST SP 800-63B
/// asks. The maximum bounds the hashing work a single request can cause.
pub fn check_password_length(password: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let n = password.chars().count();
    if n < min {
        Err(
            FieldError::new("password", format!("must be at least {min} characters"))
                .with_kind(Invalid::TooShort { min }),
        )
    } else if n > max {
        Err(
            FieldError::new("password", format!("must be at most {max} characters"))
                .with_kind(Invalid::TooLong { max }),
        )
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_and_folded() {
        for ok in [
            "alice",
            "Bob.Smith",
            "a_b-c",
            "alice@example.com",
            "x+y",
            "a",
        ] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "ålice", "a/b", "a:b", &"x".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_username("Alice@Example.COM"), "alice@example.com");
    }

    #[test]
    fn emails_are_checked_pragmatically() {
        for ok in ["a@example.com", "first.last+tag@sub.example.co.uk"] {
            assert!(validate_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@exa mple.com",
            "a@.example.com",
            "a@example..com",
            "a@b@example.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_standard_profile_claims_with_their_types_are_accepted() {
        let ok = serde_json::json!({"name": "Alice", "given_name": "A", "phone_number_verified": false, "address": {"country": "NZ"}});
        assert!(validate_profile(ok.as_object().unwrap()).is_ok());
        let unknown = serde_json::json!({"is_admin": true});
        assert!(validate_profile(unknown.as_object().unwrap()).is_err());
        let wrong_type = serde_json::json!({"name": 3});
        assert!(validate_profile(wrong_type.as_object().unwrap()).is_err());
    }

    #[test]
    fn password_length_limits_count_characters() {
        assert!(check_password_length("1234567", 8, 128).is_err());
        assert!(check_password_length("12345678", 8, 128).is_ok());
        // Eight characters, sixteen bytes.
        assert!(check_password_length("éééééééé", 8, 128).is_ok());
        assert!(check_password_length(&"x".repeat(128), 8, 128).is_ok());
        let long = check_password_length(&"x".repeat(129), 8, 128).unwrap_err();
        assert_eq!(long.to_string(), "password: must be at most 128 characters");
        assert_eq!(long.kind, Invalid::TooLong { max: 128 });
        let short = check_password_length("1234567", 8, 128).unwrap_err();
        assert_eq!(short.kind, Invalid::TooShort { min: 8 });
    }
}
