//! Languages: the message catalogues (Project Fluent `.ftl` files: English and German
//! embedded, each overridable and new languages addable from `ui.locales_dir`), the
//! choice of a language for a page or a mail, and translation.
//!
//! The choice takes the first of these that names a language we have (OIDC Core §3.1.2.1
//! `ui_locales`, then the user's preference — the `locale` profile claim —, then the
//! browser's `Accept-Language`, then the tenant's `defaultLocale`), English otherwise.
//! A message missing from a language is taken from English, so a partial catalogue
//! (an operator's new language) never shows a page with holes.
//!
//! Right-to-left languages get `dir="rtl"` on the page, and their values (a username
//! inside a sentence) are wrapped in Unicode isolation marks so that a left-to-right
//! name cannot reorder the sentence around it. Left-to-right languages get no marks:
//! they would end up in plain-text mails and subjects for no benefit.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use serde_json::Value;
use unic_langid::{CharacterDirection, LanguageIdentifier};

/// The language every other one falls back to, and the one pages are in when nothing
/// else is known.
pub const DEFAULT: &str = "en";

/// The key under which a page context names a message to translate (see [`msg`]).
const MSG_KEY: &str = "$t";
const ARGS_KEY: &str = "$args";

/// A request names at most this many languages that we look at; the rest of an
/// oversized `Accept-Language` is ignored.
const MAX_REQUESTED: usize = 16;

/// The shipped catalogues, by language: each a list of `.ftl` sources.
const SHIPPED: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            include_str!("../../locales/en/pages.ftl"),
            include_str!("../../locales/en/account.ftl"),
            include_str!("../../locales/en/email.ftl"),
            include_str!("../../locales/en/messages.ftl"),
            include_str!("../../locales/en/federation.ftl"),
        ],
    ),
    (
        "de",
        &[
            include_str!("../../locales/de/pages.ftl"),
            include_str!("../../locales/de/account.ftl"),
            include_str!("../../locales/de/email.ftl"),
            include_str!("../../locales/de/messages.ftl"),
            include_str!("../../locales/de/federation.ftl"),
        ],
    ),
];

/// Why the catalogues could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read the locales directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the catalogue {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalogue {path}: {detail}")]
    Invalid { path: String, detail: String },
}

/// A language chosen for a page or a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lang {
    tag: Arc<str>,
    rtl: bool,
}

impl Default for Lang {
    fn default() -> Self {
        Self {
            tag: Arc::from(DEFAULT),
            rtl: false,
        }
    }
}

impl Lang {
    /// The BCP 47 tag (`lang` attribute, `Content-Language`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The `dir` attribute: `rtl` or `ltr`.
    pub fn dir(&self) -> &'static str {
        if self.rtl { "rtl" } else { "ltr" }
    }
}

/// Where a language preference comes from, most important first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wishes<'a> {
    /// `ui_locales`: space-separated tags, in order of preference.
    pub ui_locales: Option<&'a str>,
    /// The user's preference (the `locale` profile claim).
    pub user: Option<&'a str>,
    /// The browser's `Accept-Language` header.
    pub accept_language: Option<&'a str>,
    /// The tenant's `defaultLocale`.
    pub tenant_default: Option<&'a str>,
}

struct Catalogue {
    lang: Lang,
    id: LanguageIdentifier,
    bundle: FluentBundle<FluentResource>,
    /// The sources, for the tests that compare catalogues.
    #[cfg(test)]
    sources: Vec<String>,
}

/// The loaded catalogues; the first is English.
pub struct Catalogues {
    all: Vec<Catalogue>,
}

impl std::fmt::Debug for Catalogues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.all.iter().map(|c| c.lang.tag()))
            .finish()
    }
}

impl Catalogues {
    /// The shipped catalogues, with `dir/<tag>.ftl` files on top: a file for a shipped
    /// language replaces the messages it defines, a file for another language adds it
    /// (its missing messages come from English). A syntax error stops the start with the
    /// file and line.
    pub fn load(dir: Option<&Path>) -> Result<Self, Error> {
        let mut all = Vec::new();
        for (tag, sources) in SHIPPED {
            let mut catalogue = Catalogue::new(tag, &format!("(built-in {tag})"))?;
            for source in *sources {
                catalogue.add(source, &format!("(built-in {tag})"), false)?;
            }
            all.push(catalogue);
        }
        if let Some(dir) = dir {
            for (tag, path) in override_files(dir)? {
                let shown = path.display().to_string();
                let source = std::fs::read_to_string(&path).map_err(|e| Error::Read {
                    path: path.clone(),
                    source: e,
                })?;
                let index = if let Some(i) = all.iter().position(|c| c.lang.tag() == tag) {
                    i
                } else {
                    all.push(Catalogue::new(&tag, &shown)?);
                    all.len() - 1
                };
                all[index].add(&source, &shown, true)?;
                tracing::info!(catalogue = %shown, language = %tag, "using catalogue override");
            }
        }
        Ok(Self { all })
    }

    /// The tags of every language we have, English first (`ui_locales_supported`).
    pub fn languages(&self) -> Vec<String> {
        self.all.iter().map(|c| c.lang.tag().to_owned()).collect()
    }

    /// The language for these wishes: the first wished language we have (a regional
    /// tag matches its language: `de-CH` → `de`), English otherwise.
    pub fn choose(&self, wishes: &Wishes<'_>) -> Lang {
        let mut requested: Vec<LanguageIdentifier> = Vec::new();
        let sources = [
            wishes.ui_locales.map(plain_tags),
            wishes.user.map(plain_tags),
            wishes.accept_language.map(accept_language),
            wishes.tenant_default.map(plain_tags),
        ];
        for tags in sources.into_iter().flatten() {
            requested.extend(tags);
        }
        requested.truncate(MAX_REQUESTED * 4);
        let available: Vec<&LanguageIdentifier> = self.all.iter().map(|c| &c.id).collect();
        let chosen = fluent_langneg::negotiate_languages(
            &requested,
            &available,
            None,
            fluent_langneg::NegotiationStrategy::Lookup,
        );
        chosen
            .first()
            .and_then(|id| self.all.iter().find(|c| &&c.id == *id))
            .map(|c| c.lang.clone())
            .unwrap_or_default()
    }

    /// The language a tag names exactly (as put on a page by [`Lang::tag`]), English
    /// when we have no such language.
    pub fn by_tag(&self, tag: &str) -> Lang {
        self.find(tag).map(|c| c.lang.clone()).unwrap_or_default()
    }

    fn find(&self, tag: &str) -> Option<&Catalogue> {
        self.all.iter().find(|c| c.lang.tag() == tag)
    }

    /// Message `id` in the language `tag`, from English when that language lacks it,
    /// and the id itself (logged) when no catalogue has it.
    pub fn text(&self, tag: &str, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        let chosen = self.find(tag);
        let english = self.all.first();
        for catalogue in [chosen, english].into_iter().flatten() {
            if let Some(text) = catalogue.format(id, args) {
                return text.into_owned();
            }
        }
        tracing::warn!(message_id = %id, language = %tag, "no catalogue has this message");
        id.to_owned()
    }

    /// Replaces every message reference in `value` (see [`msg`]) with its text in `tag`.
    pub fn localize(&self, tag: &str, value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(id)) = map.get(MSG_KEY) {
                    let args = map.get(ARGS_KEY).and_then(Value::as_object).map(|a| {
                        let mut args = FluentArgs::new();
                        for (k, v) in a {
                            args.set(k.clone(), fluent_value(v));
                        }
                        args
                    });
                    *value = Value::String(self.text(tag, id, args.as_ref()));
                } else {
                    for v in map.values_mut() {
                        self.localize(tag, v);
                    }
                }
            }
            Value::Array(items) => {
                for v in items {
                    self.localize(tag, v);
                }
            }
            _ => {}
        }
    }

    /// Every message id of `tag` (its own, without the English fallback).
    #[cfg(test)]
    fn ids(&self, tag: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .find(tag)
            .map(|c| c.sources.clone())
            .unwrap_or_default()
            .iter()
            .flat_map(|s| message_ids(s))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

impl Catalogue {
    fn new(tag: &str, shown: &str) -> Result<Self, Error> {
        let id: LanguageIdentifier = tag.parse().map_err(|_| Error::Invalid {
            path: shown.to_owned(),
            detail: format!("{tag:?} is not a language tag"),
        })?;
        let rtl = matches!(id.character_direction(), CharacterDirection::RTL);
        let mut bundle = FluentBundle::new_concurrent(vec![id.clone()]);
        bundle.set_use_isolating(rtl);
        Ok(Self {
            lang: Lang {
                tag: Arc::from(id.to_string()),
                rtl,
            },
            id,
            bundle,
            #[cfg(test)]
            sources: Vec::new(),
        })
    }

    fn add(&mut self, source: &str, shown: &str, overriding: bool) -> Result<(), Error> {
        let resource = FluentResource::try_new(source.to_owned()).map_err(|(_, errors)| {
            let detail = errors
                .iter()
                .map(|e| format!("line {}: {e}", line_of(source, e.pos.start)))
                .collect::<Vec<_>>()
                .join("; ");
            Error::Invalid {
                path: shown.to_owned(),
                detail,
            }
        })?;
        #[cfg(test)]
        self.sources.push(source.to_owned());
        if overriding {
            self.bundle.add_resource_overriding(resource);
            Ok(())
        } else {
            self.bundle
                .add_resource(resource)
                .map_err(|errors| Error::Invalid {
                    path: shown.to_owned(),
                    detail: errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                })
        }
    }

    fn format(&self, id: &str, args: Option<&FluentArgs<'_>>) -> Option<Cow<'_, str>> {
        let pattern = self.bundle.get_message(id)?.value()?;
        let mut errors = Vec::new();
        let text = self.bundle.format_pattern(pattern, args, &mut errors);
        if !errors.is_empty() {
            tracing::warn!(message_id = %id, language = %self.lang.tag(), errors = ?errors,
                "a message did not format cleanly");
        }
        Some(text)
    }
}

/// A reference to message `id`, for a page context: replaced by its text in the page's
/// language when the page is rendered, so that a template (or an operator's override)
/// prints it as `{{ error }}` like any string.
pub fn msg(id: &str) -> Value {
    serde_json::json!({ MSG_KEY: id })
}

/// [`msg`] with arguments (`{ $name }` in the message).
#[allow(clippy::needless_pass_by_value)] // called with `json!(…)` temporaries
pub fn msg_with(id: &str, args: Value) -> Value {
    serde_json::json!({ MSG_KEY: id, ARGS_KEY: args })
}

/// A JSON value as a Fluent argument: numbers stay numbers (for plurals).
fn fluent_value(v: &Value) -> FluentValue<'static> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(FluentValue::from)
            .or_else(|| n.as_f64().map(FluentValue::from))
            .unwrap_or(FluentValue::None),
        Value::String(s) => FluentValue::from(s.clone()),
        Value::Null => FluentValue::None,
        other => FluentValue::from(other.to_string()),
    }
}

/// `<tag>.ftl` files of the overrides directory, sorted by name.
fn override_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let read_err = |e| Error::ReadDir {
        path: dir.to_owned(),
        source: e,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let tag = path
            .extension()
            .filter(|e| e.eq_ignore_ascii_case("ftl"))
            .and(path.file_stem())
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<LanguageIdentifier>().ok());
        match tag {
            Some(tag) => files.push((tag.to_string(), path)),
            None => {
                tracing::warn!(file = %path.display(), "ignoring a file that is not <language>.ftl");
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whitespace- or comma-separated tags (`ui_locales`, a preference, a default), in order;
/// what does not parse is skipped.
fn plain_tags(s: &str) -> Vec<LanguageIdentifier> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .take(MAX_REQUESTED)
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// An `Accept-Language` header (RFC 9110 §12.5.4), best first: `q=0` and `*` are
/// dropped, equal weights keep the header's order.
fn accept_language(header: &str) -> Vec<LanguageIdentifier> {
    let mut weighted: Vec<(u16, LanguageIdentifier)> = header
        .split(',')
        .take(MAX_REQUESTED)
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1000), parse_q)?;
            if q == 0 || tag == "*" {
                return None;
            }
            Some((q, tag.parse().ok()?))
        })
        .collect();
    weighted.sort_by_key(|w| std::cmp::Reverse(w.0));
    weighted.into_iter().map(|(_, id)| id).collect()
}

/// A quality value in thousandths (`0.8` → 800); `None` when malformed.
fn parse_q(s: &str) -> Option<u16> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let frac: u16 = format!("{frac:0<3}").parse().ok()?;
    let q = whole * 1000 + frac;
    (q <= 1000).then_some(q)
}

fn line_of(source: &str, byte: usize) -> usize {
    source
        .get(..byte.min(source.len()))
        .map_or(0, |s| s.matches('\n').count())
        + 1
}

/// The message ids a `.ftl` source defines (lines that start with an identifier and
/// `=`; terms (`-x`) and attributes are not messages).
#[cfg(test)]
fn message_ids(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| {
            let (id, _) = l.split_once('=')?;
            let id = id.trim_end();
            (l.starts_with(|c: char| c.is_ascii_alphabetic())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .then(|| id.to_owned())
        })
        .collect()
}

#[cfg(test)]
#[path = "i18n_tests.rs"]
mod tests;
