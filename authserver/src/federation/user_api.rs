//! An OAuth 2.0 provider without OpenID Connect (GitHub-style): the access token reads
//! the user API, and optionally the user's addresses, organisations and teams, into
//! claims for the provider's claim mapping. There is no signed statement here: the user
//! API's answer over TLS, with the access token we just got from the token endpoint, is
//! the provider's word.
//!
//! - user: a JSON object; the subject is the mapped claim (`claims.subject`, GitHub:
//!   `id`, an integer) as a string.
//! - emails: `[{email, primary, verified}]`; the primary verified address (else any
//!   verified one) becomes `email` with `email_verified: true`. Without one, the user
//!   object's address is kept, unverified.
//! - orgs: `[{login}]`, as the claim `orgs` (a list of logins).
//! - teams: `[{slug, organization: {login}}]`, as the claim `teams` (`org/slug`).
//!
//! With `allowedOrgs` or `allowedTeams`, only members of one of those organisations or
//! teams sign in (case-insensitive). Lists are read page by page (`per_page=100`, then
//! the `Link: rel="next"` pages GitHub sends, on the list's own origin only, at most
//! [`MAX_PAGES`]), so membership beyond the first page still counts.

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value};

use super::{FederationError, MAX_RESPONSE_BYTES, Result};
use crate::domain::federation::UpstreamProvider;
use crate::outbound::Fetcher;

/// Pages read of one list: 1000 entries at GitHub's largest page size.
const MAX_PAGES: usize = 10;
/// Entries asked for per page (GitHub's largest).
const PER_PAGE: &str = "100";

/// The account's subject and claims.
pub(super) async fn claims(
    fetcher: &Fetcher,
    p: &UpstreamProvider,
    access_token: &str,
) -> Result<(String, Map<String, Value>)> {
    let Some(o) = &p.oauth2 else {
        return Err(FederationError::Config(
            "kind oauth2 without endpoints".into(),
        ));
    };
    let bearer = SecretString::from(format!("Bearer {access_token}"));
    let Value::Object(mut claims) = get(fetcher, &o.user_url, &bearer, "user API").await?.0 else {
        return Err(FederationError::Upstream(
            "the user API answered no JSON object".into(),
        ));
    };
    let subject = match claims.get(&p.claims.subject) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => {
            return Err(FederationError::Upstream(format!(
                "the user API has no usable {:?}",
                p.claims.subject
            )));
        }
    };
    // Only the emails API vouches for an address; the user object's is unverified.
    claims.insert("email_verified".into(), Value::Bool(false));
    if let Some(url) = &o.emails_url {
        let listed = get(fetcher, url, &bearer, "emails API").await?.0;
        if let Some(email) = verified_email(&listed) {
            claims.insert(p.claims.email.clone(), Value::String(email));
            claims.insert("email_verified".into(), Value::Bool(true));
        }
    }
    let orgs = match &o.orgs_url {
        Some(url) => Some(list(fetcher, url, &bearer, "orgs API", org_login).await?),
        None => None,
    };
    let teams = match &o.teams_url {
        Some(url) => Some(list(fetcher, url, &bearer, "teams API", team_name).await?),
        None => None,
    };
    let member = |names: &Option<Vec<String>>, allowed: &[String]| {
        names
            .iter()
            .flatten()
            .any(|n| allowed.iter().any(|a| a.eq_ignore_ascii_case(n)))
    };
    let restricted = !o.allowed_orgs.is_empty() || !o.allowed_teams.is_empty();
    if restricted && !member(&orgs, &o.allowed_orgs) && !member(&teams, &o.allowed_teams) {
        return Err(FederationError::Denied(
            "not a member of an allowed organisation or team".into(),
        ));
    }
    for (claim, names) in [("orgs", orgs), ("teams", teams)] {
        if let Some(names) = names {
            claims.insert(
                claim.into(),
                Value::Array(names.into_iter().map(Value::String).collect()),
            );
        }
    }
    Ok((subject, claims))
}

/// GETs `url` with the bearer token: its JSON and its `Link` header.
async fn get(
    fetcher: &Fetcher,
    url: &str,
    bearer: &SecretString,
    what: &str,
) -> Result<(Value, Option<String>)> {
    let answer = fetcher
        .get(
            url,
            &[
                ("authorization", bearer.expose_secret()),
                ("accept", "application/json"),
            ],
            MAX_RESPONSE_BYTES,
            None,
        )
        .await
        .map_err(|e| FederationError::Upstream(format!("{what}: {e}")))?;
    let json = serde_json::from_slice(&answer.body)
        .map_err(|_| FederationError::Upstream(format!("{what}: not JSON")))?;
    Ok((json, answer.link))
}

/// Every page of the list at `url`, each entry named by `name` (entries without one
/// are skipped).
async fn list(
    fetcher: &Fetcher,
    url: &str,
    bearer: &SecretString,
    what: &str,
    name: fn(&Value) -> Option<String>,
) -> Result<Vec<String>> {
    let mut page =
        first_page(url).ok_or_else(|| FederationError::Config(format!("{what}: not a URL")))?;
    let mut names = Vec::new();
    for _ in 0..MAX_PAGES {
        let (listed, link) = get(fetcher, page.as_str(), bearer, what).await?;
        names.extend(listed.as_array().into_iter().flatten().filter_map(name));
        match link.as_deref().and_then(|l| next_page(l, &page)) {
            Some(next) => page = next,
            None => break,
        }
    }
    Ok(names)
}

/// `url` asking for the largest pages, unless it names its own page size.
fn first_page(url: &str) -> Option<url::Url> {
    let mut u = url::Url::parse(url).ok()?;
    if !u.query_pairs().any(|(k, _)| k == "per_page") {
        u.query_pairs_mut().append_pair("per_page", PER_PAGE);
    }
    Some(u)
}

/// RFC 8288 `Link`'s `rel="next"` target, if it is on `current`'s origin: the bearer
/// token is sent to every page, so a link elsewhere is never followed.
fn next_page(link: &str, current: &url::Url) -> Option<url::Url> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = current.join(target).ok()?;
        (is_next && next.origin() == current.origin() && &next != current).then_some(next)
    })
}

/// The primary verified address, else the first verified one.
fn verified_email(listed: &Value) -> Option<String> {
    let verified: Vec<&Map<String, Value>> = listed
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .filter(|e| e.get("verified") == Some(&Value::Bool(true)))
        .collect();
    let pick = verified
        .iter()
        .find(|e| e.get("primary") == Some(&Value::Bool(true)))
        .or_else(|| verified.first())?;
    pick.get("email").and_then(Value::as_str).map(str::to_owned)
}

/// A name of at most 100 characters.
fn short(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= 100).then(|| s.to_owned())
}

/// An organisation's `login`.
fn org_login(org: &Value) -> Option<String> {
    org.get("login").and_then(Value::as_str).and_then(short)
}

/// A team as `org/slug`.
fn team_name(team: &Value) -> Option<String> {
    let slug = team.get("slug").and_then(Value::as_str).and_then(short)?;
    let org = team
        .get("organization")
        .and_then(|o| o.get("login"))
        .and_then(Value::as_str)
        .and_then(short)?;
    Some(format!("{org}/{slug}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_primary_verified_address_wins_and_unverified_ones_never_count() {
        let listed = json!([
            {"email": "old@example.com", "primary": false, "verified": true},
            {"email": "main@example.com", "primary": true, "verified": true},
        ]);
        assert_eq!(verified_email(&listed).as_deref(), Some("main@example.com"));
        let unverified_primary = json!([
            {"email": "main@example.com", "primary": true, "verified": false},
            {"email": "alt@example.com", "primary": false, "verified": true},
        ]);
        assert_eq!(
            verified_email(&unverified_primary).as_deref(),
            Some("alt@example.com")
        );
        let none = json!([{"email": "main@example.com", "primary": true, "verified": "true"}]);
        assert_eq!(verified_email(&none), None);
        assert_eq!(verified_email(&json!({"message": "Bad credentials"})), None);
    }

    #[test]
    fn org_logins_and_team_names_are_read_from_the_entries() {
        let orgs: Vec<_> = [
            json!({"login": "acme"}),
            json!({"id": 1}),
            json!({"login": ""}),
        ]
        .iter()
        .filter_map(org_login)
        .collect();
        assert_eq!(orgs, ["acme"]);
        assert_eq!(
            team_name(&json!({"slug": "auditors", "organization": {"login": "partners"}})),
            Some("partners/auditors".into())
        );
        assert_eq!(team_name(&json!({"slug": "auditors"})), None);
    }

    #[test]
    fn the_next_page_is_followed_on_the_same_origin_only() {
        let here = first_page("https://api.github.com/user/orgs").unwrap();
        assert_eq!(
            here.as_str(),
            "https://api.github.com/user/orgs?per_page=100"
        );
        let link = r#"<https://api.github.com/user/orgs?per_page=100&page=2>; rel="next", <https://api.github.com/user/orgs?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_page(link, &here).unwrap().as_str(),
            "https://api.github.com/user/orgs?per_page=100&page=2"
        );
        let relative = r#"</user/orgs?page=3>; rel="next""#;
        assert_eq!(
            next_page(relative, &here).unwrap().as_str(),
            "https://api.github.com/user/orgs?page=3"
        );
        for elsewhere in [
            r#"<https://evil.example/steal>; rel="next""#,
            r#"<http://api.github.com/user/orgs?page=2>; rel="next""#,
            r#"<https://api.github.com/user/orgs?per_page=100&page=5>; rel="last""#,
            r#"<https://api.github.com/user/orgs?per_page=100>; rel="next""#,
            "garbage",
        ] {
            assert_eq!(next_page(elsewhere, &here), None, "{elsewhere}");
        }
        // A URL that names its own page size keeps it.
        assert_eq!(
            first_page("https://ghe.example/api/v3/user/teams?per_page=50")
                .unwrap()
                .as_str(),
            "https://ghe.example/api/v3/user/teams?per_page=50"
        );
    }
}
