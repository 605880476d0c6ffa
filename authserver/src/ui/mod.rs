//! Server-rendered pages: the HTML templates (embedded defaults, each overridable by a
//! file of the same name in `ui.templates_dir`), the stylesheet, and the
//! Content-Security-Policy they are written for. Templates are compiled once at
//! start-up, so a syntax error in an override stops the server with the file name
//! instead of failing a login. The responses that carry them are built at the edge
//! (`http::browser::html`).

mod email;
pub mod i18n;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

/// The default templates, by the name an override file must have.
const DEFAULTS: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("login.html", include_str!("../../templates/login.html")),
    (
        "upstream_buttons.html",
        include_str!("../../templates/upstream_buttons.html"),
    ),
    (
        "upstream_problem.html",
        include_str!("../../templates/upstream_problem.html"),
    ),
    (
        "upstream_link.html",
        include_str!("../../templates/upstream_link.html"),
    ),
    (
        "account_links.html",
        include_str!("../../templates/account_links.html"),
    ),
    ("mfa.html", include_str!("../../templates/mfa.html")),
    (
        "mfa_enroll.html",
        include_str!("../../templates/mfa_enroll.html"),
    ),
    (
        "recovery_codes.html",
        include_str!("../../templates/recovery_codes.html"),
    ),
    (
        "signed_in.html",
        include_str!("../../templates/signed_in.html"),
    ),
    (
        "select_account.html",
        include_str!("../../templates/select_account.html"),
    ),
    ("consent.html", include_str!("../../templates/consent.html")),
    (
        "account_consents.html",
        include_str!("../../templates/account_consents.html"),
    ),
    (
        "account_passkeys.html",
        include_str!("../../templates/account_passkeys.html"),
    ),
    ("passkey.html", include_str!("../../templates/passkey.html")),
    (
        "passkeys_section.html",
        include_str!("../../templates/passkeys_section.html"),
    ),
    (
        "account_nav.html",
        include_str!("../../templates/account_nav.html"),
    ),
    ("account.html", include_str!("../../templates/account.html")),
    (
        "account_profile.html",
        include_str!("../../templates/account_profile.html"),
    ),
    (
        "account_password.html",
        include_str!("../../templates/account_password.html"),
    ),
    (
        "account_security.html",
        include_str!("../../templates/account_security.html"),
    ),
    (
        "account_recovery_codes.html",
        include_str!("../../templates/account_recovery_codes.html"),
    ),
    (
        "account_sessions.html",
        include_str!("../../templates/account_sessions.html"),
    ),
    (
        "account_activity.html",
        include_str!("../../templates/account_activity.html"),
    ),
    ("logout.html", include_str!("../../templates/logout.html")),
    (
        "signed_out.html",
        include_str!("../../templates/signed_out.html"),
    ),
];

/// Every default template, pages and mails: name and source.
#[cfg(test)]
pub(crate) fn all_defaults() -> impl Iterator<Item = (&'static str, &'static str)> {
    DEFAULTS.iter().chain(email::DEFAULTS).copied()
}

/// The one stylesheet, served from `{issuer}/assets/gatehouse.css`.
pub const STYLESHEET: &str = include_str!("../../templates/gatehouse.css");

/// The one script, served from `{issuer}/assets/passkey.js`: the WebAuthn ceremony of
/// the passkey buttons.
pub const PASSKEY_SCRIPT: &str = include_str!("../../templates/passkey.js");

/// Content-Security-Policy of every page. No `form-action`: Chrome applies it to the
/// redirect after a form POST and would block the way back to the client.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                       style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                       base-uri 'none'";

/// Why the templates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read template directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read template {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to compile template {name}: {source}")]
    Compile {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("failed to render template {name}: {source}")]
    Render {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error(transparent)]
    Catalogue(#[from] i18n::Error),
}

/// A rendered mail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailParts {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The compiled templates and the catalogues they are translated with.
#[derive(Debug)]
pub struct Templates {
    env: minijinja::Environment<'static>,
    catalogues: Arc<i18n::Catalogues>,
}

impl Templates {
    /// The embedded defaults, each replaced by `dir/<name>` when that file exists, and
    /// the message catalogues with the overrides in `locales_dir` (see
    /// [`i18n::Catalogues::load`]). Files in `dir` that match no default are ignored
    /// (a typo would otherwise go unnoticed, so they are logged).
    pub fn load(dir: Option<&Path>, locales_dir: Option<&Path>) -> Result<Self, Error> {
        let catalogues = Arc::new(i18n::Catalogues::load(locales_dir)?);
        let mut env = minijinja::Environment::new();
        env.add_function("t", translate_fn(catalogues.clone()));
        // Every template is HTML, whatever its override file is called, except the
        // plain-text parts of mails (`.txt`), which no browser renders.
        env.set_auto_escape_callback(|name| {
            if std::path::Path::new(name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
            {
                minijinja::AutoEscape::None
            } else {
                minijinja::AutoEscape::Html
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        let mut sources: Vec<(String, String)> = DEFAULTS
            .iter()
            .chain(email::DEFAULTS)
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| Error::ReadDir {
                path: dir.to_owned(),
                source: e,
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::ReadDir {
                    path: dir.to_owned(),
                    source: e,
                })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(slot) = sources.iter_mut().find(|(n, _)| *n == name) else {
                    tracing::warn!(file = %entry.path().display(), "ignoring a file that overrides no template");
                    continue;
                };
                slot.1 = std::fs::read_to_string(entry.path()).map_err(|e| Error::Read {
                    path: entry.path(),
                    source: e,
                })?;
                tracing::info!(template = %name, "using template override");
            }
        }
        for (name, source) in sources {
            let shown = dir.map_or_else(|| name.clone(), |d| d.join(&name).display().to_string());
            env.add_template_owned(name, source)
                .map_err(|e| Error::Compile {
                    name: shown,
                    source: e,
                })?;
        }
        // Rendering checks what compiling cannot (e.g. an `extends` of a missing name).
        for (name, _) in DEFAULTS.iter().chain(email::DEFAULTS) {
            env.get_template(name).map_err(|e| Error::Compile {
                name: (*name).to_owned(),
                source: e,
            })?;
        }
        Ok(Self { env, catalogues })
    }

    /// The catalogues: the languages we have, and the choice among them.
    pub fn catalogues(&self) -> &i18n::Catalogues {
        &self.catalogues
    }

    /// Renders a mail: the `subject` and `body` blocks of `{name}.txt` and all of
    /// `{name}.html`, with `ctx`.
    pub fn render_mail(&self, name: &str, ctx: &impl Serialize) -> Result<MailParts, Error> {
        let text_name = format!("{name}.txt");
        let render_err = |e| Error::Render {
            name: text_name.clone(),
            source: e,
        };
        let template = self.env.get_template(&text_name).map_err(render_err)?;
        let localized = self.localized(ctx).map_err(render_err)?;
        let mut captured = template
            .render_captured(minijinja::value::Serde(&localized))
            .map_err(render_err)?;
        let (subject, text) = captured
            .with_state_mut(|state| {
                Ok::<_, minijinja::Error>((
                    state.render_block("subject")?,
                    state.render_block("body")?,
                ))
            })
            .map_err(render_err)?;
        // A subject is one line: line breaks in it would start new headers.
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let html = self.render(&format!("{name}.html"), &localized)?;
        Ok(MailParts {
            subject,
            text: text.trim().to_owned() + "\n",
            html,
        })
    }

    /// Renders `name` with `ctx`, in the language `ctx.lang` names (English without
    /// one): message references in `ctx` ([`i18n::msg`]) become their text, and `lang`
    /// and `dir` are set for the page.
    pub fn render(&self, name: &str, ctx: &impl Serialize) -> Result<String, Error> {
        let render_err = |e| Error::Render {
            name: name.to_owned(),
            source: e,
        };
        let ctx = self.localized(ctx).map_err(render_err)?;
        self.env
            .get_template(name)
            .map_err(render_err)?
            .render(minijinja::value::Serde(ctx))
            .map_err(render_err)
    }

    /// `ctx` as JSON with its messages translated and `lang`/`dir` set.
    fn localized(&self, ctx: &impl Serialize) -> Result<serde_json::Value, minijinja::Error> {
        let mut ctx = serde_json::to_value(ctx).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
        })?;
        if let serde_json::Value::Object(map) = &mut ctx {
            let lang = self.catalogues.by_tag(
                map.get("lang")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or(i18n::DEFAULT),
            );
            map.insert("lang".into(), lang.tag().into());
            map.insert("dir".into(), lang.dir().into());
            self.catalogues.localize(lang.tag(), &mut ctx);
        }
        Ok(ctx)
    }
}

/// The templates' `t(id, name=value, …)`: message `id` in the page's language (its
/// `lang` variable), the keyword arguments as the message's variables.
fn translate_fn(
    catalogues: Arc<i18n::Catalogues>,
) -> impl Fn(&minijinja::State, &str, minijinja::value::Kwargs) -> Result<String, minijinja::Error>
+ Send
+ Sync
+ 'static {
    move |state, id, kwargs| {
        let lang = state.lookup("lang");
        let tag = lang
            .as_ref()
            .and_then(minijinja::Value::as_str)
            .unwrap_or(i18n::DEFAULT);
        let mut args = fluent_bundle::FluentArgs::new();
        for key in kwargs.args() {
            let value: minijinja::Value = kwargs.get(key)?;
            let value = match value.as_i64() {
                Some(n) if value.kind() == minijinja::value::ValueKind::Number => {
                    fluent_bundle::FluentValue::from(n)
                }
                _ => fluent_bundle::FluentValue::from(value.to_string()),
            };
            args.set(key.to_owned(), value);
        }
        Ok(catalogues.text(tag, id, kwargs.args().next().is_some().then_some(&args)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_compile_and_escape_html() {
        let t = Templates::load(None, None).unwrap();
        let body = t
            .render(
                "error.html",
                &json!({"tenant_name": "<b>Acme</b>", "message": "x<script>", "issuer": "http://i"}),
            )
            .unwrap();
        assert!(body.contains("&lt;b&gt;Acme"), "{body}");
        assert!(!body.contains("<b>Acme"));
        assert!(!body.contains("<script>"));
        assert!(body.contains("lang=\"en\""));
        assert!(body.contains("role=\"alert\""));
    }

    #[test]
    fn mails_have_a_one_line_subject_an_unescaped_text_part_and_an_escaped_html_part() {
        let t = Templates::load(None, None).unwrap();
        let ctx = json!({
            "tenant_name": "Acme <R&D>\nBcc: x@y",
            "username": "<b>bob</b>",
            "email": "bob@example.com",
            "link": "https://id.example.com/email/verify?token=a&b",
            "valid_hours": 24,
        });
        let m = t.render_mail("mail_verify_email", &ctx).unwrap();
        assert_eq!(
            m.subject,
            "Confirm your e-mail address for Acme <R&D> Bcc: x@y"
        );
        assert!(m.text.contains("Hello <b>bob</b>,"), "{}", m.text);
        assert!(
            m.text
                .contains("https://id.example.com/email/verify?token=a&b"),
            "{}",
            m.text
        );
        assert!(
            !m.text.contains("Confirm your e-mail address for"),
            "{}",
            m.text
        );
        assert!(m.html.contains("&lt;b&gt;bob&lt;&#x2f;b&gt;"), "{}", m.html);
        assert!(m.html.contains("token=a&amp;b"), "{}", m.html);
        for name in ["mail_password_reset", "mail_new_device", "mail_device_code"] {
            let m = t.render_mail(name, &ctx).unwrap();
            assert!(!m.subject.is_empty() && !m.text.is_empty() && !m.html.is_empty());
        }
    }

    #[test]
    fn mails_are_in_the_language_their_context_names() {
        let t = Templates::load(None, None).unwrap();
        let ctx = |lang: &str| {
            json!({
                "lang": lang,
                "tenant_name": "Acme",
                "username": "bob",
                "email": "bob@example.com",
                "link": "https://id.example.com/x?token=t",
                "forgot_url": "https://id.example.com/password/forgot",
                "valid_hours": 24,
                "valid_minutes": 30,
                "time": "2026-12-06T10:30:00Z",
                "ip": null,
                "code": "123456",
                "minutes": 5,
            })
        };
        let de = t.render_mail("mail_verify_email", &ctx("de")).unwrap();
        assert_eq!(de.subject, "Bestätigen Sie Ihre E-Mail-Adresse für Acme");
        assert!(de.text.starts_with("Hallo bob,"), "{}", de.text);
        assert!(de.text.contains("in 24 Stunden ab"), "{}", de.text);
        assert!(
            de.html.contains("<html lang=\"de\" dir=\"ltr\">"),
            "{}",
            de.html
        );
        let de = t.render_mail("mail_password_reset", &ctx("de")).unwrap();
        assert_eq!(de.subject, "Passwort zurücksetzen für Acme");
        assert!(de.text.contains("in 30 Minuten ab"), "{}", de.text);
        let de = t.render_mail("mail_new_device", &ctx("de")).unwrap();
        assert_eq!(de.subject, "Neue Anmeldung bei Ihrem Konto für Acme");
        // A missing value is said in the mail's language, not as `none`.
        assert!(de.text.contains("Adresse: unbekannt"), "{}", de.text);
        assert!(de.text.contains("Browser: unbekannt"), "{}", de.text);
        let de = t.render_mail("mail_device_code", &ctx("de")).unwrap();
        assert_eq!(de.subject, "Ihr Anmeldecode für Acme");
        assert!(
            de.text.contains("123456") && de.text.contains("in 5 Minuten ab"),
            "{}",
            de.text
        );
        for name in [
            "mail_verify_email",
            "mail_password_reset",
            "mail_new_device",
            "mail_device_code",
        ] {
            let de = t.render_mail(name, &ctx("de")).unwrap();
            for english in ["Hello", "The link", "If this was you", "none"] {
                assert!(!de.text.contains(english), "{name}: {english}: {}", de.text);
                assert!(!de.html.contains(english), "{name}: {english}: {}", de.html);
            }
            let en = t.render_mail(name, &ctx("en")).unwrap();
            assert!(en.text.starts_with("Hello bob,"), "{name}: {}", en.text);
        }
    }

    #[test]
    fn a_mail_template_is_overridable_like_a_page() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mail_password_reset.txt"),
            "{% block subject %}Reset {{ username }}{% endblock %}{% block body %}Go: {{ link }}{% endblock %}",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path()), None).unwrap();
        let m = t
            .render_mail(
                "mail_password_reset",
                &json!({"username": "<a>", "link": "https://x/?a&b"}),
            )
            .unwrap();
        assert_eq!(m.subject, "Reset <a>");
        assert_eq!(m.text, "Go: https://x/?a&b\n");
    }

    #[test]
    fn an_override_replaces_the_default_and_a_syntax_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("error.html"),
            "{% extends \"base.html\" %}{% block content %}CUSTOM {{ message }}{% endblock %}",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path()), None).unwrap();
        let body = t.render("error.html", &json!({"message": "m"})).unwrap();
        assert!(body.contains("CUSTOM m"), "{body}");

        // An override written before translations existed shows its own words and the
        // server's messages in the page's language; one that calls `t()` is translated.
        std::fs::write(
            dir.path().join("consent.html"),
            "{% extends \"base.html\" %}{% block content %}OLD {{ error }} | {{ t(\"consent-allow\") }} | {{ t(\"logout-question-user\", username=who) }}{% endblock %}",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path()), None).unwrap();
        let body = t
            .render(
                "consent.html",
                &json!({"lang": "de", "error": i18n::msg("login-failed"), "who": "<b>"}),
            )
            .unwrap();
        assert!(
            body.contains("OLD Benutzername oder Passwort ist falsch. | Erlauben | Möchten Sie &lt;b&gt; abmelden?"),
            "{body}"
        );
        assert!(body.contains("<html lang=\"de\" dir=\"ltr\">"), "{body}");

        std::fs::write(dir.path().join("login.html"), "{% if %}").unwrap();
        let e = Templates::load(Some(dir.path()), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("login.html"), "{e}");
    }
}
