//! `GET {issuer}/account/activity`: the user's own recent security events, newest
//! first, in words, with time and address.

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::{ACTIVITY_PATH, account_context, show_page, sign_in, when};
use crate::http::AppState;
use crate::http::browser::page::{BrowserPage, PageError};
use crate::interaction::{ACTIVITY_EVENTS, ACTIVITY_LIMIT, AccountPage};
use crate::ui::i18n::msg;

/// The message that says an audit event in words: `event-<name>` with `.` and `_` as
/// `-` for the events the page shows, a generic one otherwise.
fn describe(event: &str) -> String {
    if ACTIVITY_EVENTS.contains(&event) {
        format!("event-{}", event.replace(['.', '_'], "-"))
    } else {
        "event-other".to_owned()
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
                    "what": msg(&describe(&e.event)),
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
    use crate::ui::i18n::Catalogues;

    #[test]
    fn every_shown_event_has_words_in_every_language() {
        let c = Catalogues::load(None).unwrap();
        for e in crate::interaction::ACTIVITY_EVENTS {
            let id = describe(e);
            assert_ne!(id, "event-other", "{e}");
            for tag in c.languages() {
                assert_ne!(c.text(&tag, &id, None), id, "{e} in {tag}");
            }
        }
        assert_eq!(describe("tenant.created"), "event-other");
    }
}
