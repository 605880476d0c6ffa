//! `GET {issuer}/account/activity`: the user's own recent security events, newest
//! first, in words, with time and address.

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::{ACTIVITY_PATH, account_context, show_page, sign_in, when};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError};
use crate::interaction::{ACTIVITY_LIMIT, AccountPage};

/// An audit event name in words.
fn describe(event: &str) -> &'static str {
    match event {
        "login.succeeded" => "Signed in",
        "login.failed" => "Failed sign-in attempt",
        "mfa.verified" => "Two-step verification code accepted",
        "mfa.failed" => "Wrong two-step verification code",
        "mfa.enrolled" => "Authenticator app set up",
        "mfa.removed" => "Authenticator app removed",
        "mfa.recovery_code_used" => "Recovery code used",
        "mfa.recovery_codes_regenerated" => "New recovery codes created",
        "mfa.required_changed" => "Two-step verification requirement changed",
        "user.password_changed" => "Password changed",
        "user.password_set" => "Password set by an administrator",
        "user.reauthentication_failed" => "Wrong current password entered",
        "user.email_changed" => "E-mail address changed",
        "user.profile_updated" => "Profile updated",
        "session.revoked" => "Session signed out",
        "session.evicted" => "Session ended (too many sessions)",
        "consent.revoked" => "App access removed",
        _ => "Account event",
    }
}

pub async fn show(State(state): State<AppState>, p: BrowserPage) -> Result<Response, PageError> {
    let BrowserPage { req, visit } = p;
    let events = match state.interaction().account_activity(&visit).await? {
        AccountPage::SignIn => return Ok(sign_in(&req.tenant)),
        AccountPage::Show(e) => e,
    };
    let mut ctx = account_context(&req, &visit, ACTIVITY_PATH, "nav-activity");
    ctx.insert("limit".into(), json!(ACTIVITY_LIMIT));
    ctx.insert(
        "events".into(),
        json!(
            events
                .iter()
                .map(|e| json!({
                    "what": describe(&e.event),
                    "event": e.event,
                    "at": when(e.at),
                    "ip": e.ip,
                }))
                .collect::<Vec<_>>()
        ),
    );
    Ok(show_page(&state, &visit, "account_activity.html", &ctx))
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn every_shown_event_has_words() {
        for e in crate::interaction::ACTIVITY_EVENTS {
            assert_ne!(describe(e), "Account event", "{e}");
        }
    }
}
