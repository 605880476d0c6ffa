use super::*;

fn shipped() -> Catalogues {
    Catalogues::load(None).unwrap()
}

fn wishes<'a>(
    ui: Option<&'a str>,
    user: Option<&'a str>,
    accept: Option<&'a str>,
    tenant: Option<&'a str>,
) -> Wishes<'a> {
    Wishes {
        ui_locales: ui,
        user,
        accept_language: accept,
        tenant_default: tenant,
    }
}

#[test]
fn the_choice_follows_ui_locales_then_user_then_browser_then_tenant() {
    let c = shipped();
    let pick = |w: Wishes<'_>| c.choose(&w).tag().to_owned();
    assert_eq!(
        pick(wishes(Some("de"), Some("en"), Some("en"), Some("en"))),
        "de"
    );
    assert_eq!(
        pick(wishes(Some("en"), Some("de"), Some("de"), Some("de"))),
        "en"
    );
    assert_eq!(pick(wishes(None, Some("de"), Some("en"), None)), "de");
    assert_eq!(pick(wishes(None, None, Some("de-DE,en;q=0.5"), None)), "de");
    assert_eq!(pick(wishes(None, None, None, Some("de"))), "de");
    assert_eq!(pick(wishes(None, None, None, None)), "en");
    // A wish we cannot serve passes to the next source, never to an error.
    assert_eq!(
        pick(wishes(Some("fr ja"), None, Some("de"), Some("en"))),
        "de"
    );
    assert_eq!(
        pick(wishes(Some("fr"), Some("xx-!!"), Some("*"), Some("de"))),
        "de"
    );
    // A regional tag matches its language.
    assert_eq!(pick(wishes(Some("de-CH"), None, None, None)), "de");
    assert_eq!(pick(wishes(Some("en-GB"), None, Some("de"), None)), "en");
}

#[test]
fn accept_language_is_ordered_by_weight_and_drops_refusals() {
    let tags = |h: &str| {
        accept_language(h)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(tags("en;q=0.5, de;q=0.9, fr"), ["fr", "de", "en"]);
    assert_eq!(tags("de;q=0, en"), ["en"]);
    assert_eq!(tags("*;q=0.1, de-AT"), ["de-AT"]);
    assert_eq!(tags("de;q=2, en;q=abc, fr;q=0.123, ja;q=0.1234"), ["fr"]);
    assert!(tags("").is_empty());
    // An oversized header is cut, not parsed to the end.
    let huge = vec!["fr"; 10_000].join(",") + ",de";
    assert_eq!(tags(&huge).len(), MAX_REQUESTED);
    let c = shipped();
    assert_eq!(
        c.choose(&wishes(None, None, Some(&huge), None)).tag(),
        "en",
        "a language beyond the cut does not count"
    );
}

#[test]
fn quality_values_parse_as_rfc_9110_says() {
    assert_eq!(parse_q("1"), Some(1000));
    assert_eq!(parse_q("1.000"), Some(1000));
    assert_eq!(parse_q("0.8"), Some(800));
    assert_eq!(parse_q("0"), Some(0));
    assert_eq!(parse_q("1.5"), None);
    assert_eq!(parse_q("2"), None);
    assert_eq!(parse_q("0.1234"), None);
    assert_eq!(parse_q("-1"), None);
}

#[test]
fn english_and_german_have_the_same_messages_with_the_same_variables() {
    let c = shipped();
    let en = c.ids("en");
    let de = c.ids("de");
    assert!(en.len() > 50, "{en:?}");
    let missing: Vec<_> = en.iter().filter(|id| !de.contains(id)).collect();
    let extra: Vec<_> = de.iter().filter(|id| !en.contains(id)).collect();
    assert!(missing.is_empty(), "German lacks {missing:?}");
    assert!(extra.is_empty(), "German has unknown {extra:?}");
    let variables = |tag: &str, id: &str| {
        let source = c.find(tag).unwrap().sources.join("\n");
        let line = source
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{id} =")))
            .take_while(|l| l.starts_with(&format!("{id} =")) || l.starts_with(' '))
            .collect::<Vec<_>>()
            .join("\n");
        let mut vars: Vec<String> = line
            .split('$')
            .skip(1)
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .collect()
            })
            .collect();
        vars.sort();
        vars.dedup();
        vars
    };
    for id in &en {
        assert_eq!(
            variables("en", id),
            variables("de", id),
            "variables of {id}"
        );
    }
}

#[test]
fn a_missing_message_falls_back_to_english_then_to_its_id() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fr.ftl"), "login-title = Se connecter\n").unwrap();
    let c = Catalogues::load(Some(dir.path())).unwrap();
    assert_eq!(c.languages(), ["en", "de", "fr"]);
    assert_eq!(c.text("fr", "login-title", None), "Se connecter");
    assert_eq!(c.text("fr", "login-password", None), "Password");
    assert_eq!(c.text("fr", "no-such-message", None), "no-such-message");
    assert_eq!(c.text("zz", "login-title", None), "Sign in");
}

#[test]
fn an_override_replaces_single_messages_of_a_shipped_language() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("de.ftl"), "login-title = Einloggen\n").unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a catalogue").unwrap();
    let c = Catalogues::load(Some(dir.path())).unwrap();
    assert_eq!(c.languages(), ["en", "de"]);
    assert_eq!(c.text("de", "login-title", None), "Einloggen");
    assert_eq!(c.text("de", "login-password", None), "Passwort");
}

#[test]
fn a_broken_catalogue_stops_the_start_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fr.ftl"), "ok = fine\n\nbroken = { $\n").unwrap();
    let e = Catalogues::load(Some(dir.path())).unwrap_err().to_string();
    assert!(e.contains("fr.ftl") && e.contains("line 3"), "{e}");
}

#[test]
fn right_to_left_languages_get_rtl_and_isolate_their_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ar.ftl"),
        "logout-question-user = هل تريد تسجيل خروج { $username }؟\n",
    )
    .unwrap();
    let c = Catalogues::load(Some(dir.path())).unwrap();
    let ar = c.choose(&wishes(Some("ar"), None, None, None));
    assert_eq!((ar.tag(), ar.dir()), ("ar", "rtl"));
    let mut args = FluentArgs::new();
    args.set("username", "bob");
    let text = c.text("ar", "logout-question-user", Some(&args));
    assert!(text.contains("\u{2068}bob\u{2069}"), "{text:?}");
    // Left-to-right text gets no invisible marks (they would end up in mail subjects).
    let en = c.text("en", "logout-question-user", Some(&args));
    assert_eq!(en, "Do you want to sign out bob?");
    assert_eq!(c.by_tag("de").dir(), "ltr");
}

#[test]
fn message_references_in_a_context_are_translated_in_place() {
    let c = shipped();
    let mut ctx = serde_json::json!({
        "error": msg("login-title"),
        "list": [msg("consent-allow"), "plain"],
        "nested": {"q": msg_with("logout-question-user", serde_json::json!({"username": "eve"}))},
        "untouched": {"$other": "x"},
    });
    c.localize("de", &mut ctx);
    assert_eq!(ctx["error"], "Anmelden");
    assert_eq!(ctx["list"][0], "Erlauben");
    assert_eq!(ctx["list"][1], "plain");
    assert_eq!(ctx["nested"]["q"], "Möchten Sie eve abmelden?");
    assert_eq!(ctx["untouched"]["$other"], "x");
}

#[test]
fn every_message_a_template_uses_exists_in_english() {
    let c = shipped();
    let en = c.ids("en");
    let mut used = Vec::new();
    for (name, source) in crate::ui::all_defaults() {
        let parts: Vec<&str> = source.split("t(\"").collect();
        for (before, part) in parts.iter().zip(parts.iter().skip(1)) {
            // `t(` itself, not the end of another name (`default("…")`).
            if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let id: String = part.chars().take_while(|ch| *ch != '"').collect();
            // `t("prefix-" ~ name)`: a family of ids the template lists itself.
            if id.ends_with('-') {
                continue;
            }
            used.push((name, id));
        }
    }
    assert!(used.len() > 40, "{used:?}");
    let unknown: Vec<_> = used.iter().filter(|(_, id)| !en.contains(id)).collect();
    assert!(
        unknown.is_empty(),
        "templates use unknown messages: {unknown:?}"
    );
}

#[test]
fn every_upstream_problem_has_its_message_and_is_listed_by_the_page() {
    use crate::interaction::UpstreamProblem as P;
    let c = shipped();
    let source = crate::ui::all_defaults()
        .find(|(n, _)| *n == "upstream_problem.html")
        .unwrap()
        .1;
    let listed = source
        .split("problem in [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap();
    for p in [
        P::Cancelled,
        P::UpstreamError,
        P::InvalidResponse,
        P::Stale,
        P::UnknownProvider,
        P::NotProvisioned,
        P::UnverifiedEmail,
        P::CannotLink,
        P::EmailUnverified,
        P::NotAllowed,
    ] {
        let name = p.as_str();
        assert!(listed.contains(&format!("\"{name}\"")), "{name} not listed");
        for tag in ["en", "de"] {
            assert!(
                c.ids(tag).contains(&format!("upstream-problem-{name}")),
                "{tag} lacks {name}"
            );
        }
    }
}
