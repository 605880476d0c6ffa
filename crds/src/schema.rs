//! Schema pieces the derives cannot express on their own: CEL rules shared by several
//! fields, rules on list items, and schemars transforms.
//!
//! URL rules use `matches()` rather than the Kubernetes URL library (`url(self)`):
//! a regex means the same thing in the API server (RE2) and in client-side evaluators,
//! whereas URL parsers disagree on edge cases (kube-cel 0.8 reports an empty scheme for
//! every `http://localhost` URL, for one).

use schemars::Schema;
use serde_json::{Value, json};

/// CEL: `self` is an https URL (scheme, authority, optional path and query; no fragment,
/// userinfo or whitespace), or the same over plain http on a loopback host of RFC 8252
/// §7.3 (`localhost`, `127.0.0.1`, `[::1]`, any port).
pub(crate) const HTTPS_OR_LOOPBACK_URL: &str = r"self.matches('^https://[^/?#@\\s]+([/?][^#\\s]*)?$') || self.matches('^http://(localhost|127[.]0[.]0[.]1|\\[::1\\])(:[0-9]{1,5})?([/?][^#\\s]*)?$')";

/// CEL: `self` is an https URL, with the same form as [`HTTPS_OR_LOOPBACK_URL`] but
/// without the loopback http exception.
pub(crate) const HTTPS_URL: &str = r"self.matches('^https://[^/?#@\\s]+([/?][^#\\s]*)?$')";
/// Message for [`HTTPS_URL`].
pub(crate) const HTTPS_URL_MESSAGE: &str =
    "must be an https URL (https://host/path), without userinfo or fragment";

/// A CronJob schedule as Kubernetes' parser accepts it, field by field, so a schedule the
/// CronJob API would reject with a 422 (`99 * * * *`) is rejected by the CRD already:
/// five fields (lists, ranges, `*`, steps 1–99; month and weekday names; `?` for the
/// day fields) or a `@hourly`-style macro. Generated from per-field number patterns.
pub const CRON_SCHEDULE_PATTERN: &str = concat!(
    r"^(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)|",
    // minute
    r"(?:\*|(?:[0-9]|[1-5][0-9])(?:-(?:[0-9]|[1-5][0-9]))?)(?:/[1-9][0-9]?)?(?:,(?:\*|(?:[0-9]|[1-5][0-9])(?:-(?:[0-9]|[1-5][0-9]))?)(?:/[1-9][0-9]?)?)*",
    r" +",
    // hour
    r"(?:\*|(?:[0-9]|1[0-9]|2[0-3])(?:-(?:[0-9]|1[0-9]|2[0-3]))?)(?:/[1-9][0-9]?)?(?:,(?:\*|(?:[0-9]|1[0-9]|2[0-3])(?:-(?:[0-9]|1[0-9]|2[0-3]))?)(?:/[1-9][0-9]?)?)*",
    r" +",
    // day of month
    r"(?:\?|(?:\*|(?:[1-9]|[12][0-9]|3[01])(?:-(?:[1-9]|[12][0-9]|3[01]))?)(?:/[1-9][0-9]?)?)(?:,(?:\?|(?:\*|(?:[1-9]|[12][0-9]|3[01])(?:-(?:[1-9]|[12][0-9]|3[01]))?)(?:/[1-9][0-9]?)?))*",
    r" +",
    // month
    r"(?:\*|(?:(?:[1-9]|1[0-2])|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(?:-(?:(?:[1-9]|1[0-2])|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(?:/[1-9][0-9]?)?(?:,(?:\*|(?:(?:[1-9]|1[0-2])|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(?:-(?:(?:[1-9]|1[0-2])|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))?)(?:/[1-9][0-9]?)?)*",
    r" +",
    // day of week
    r"(?:\?|(?:\*|(?:[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT|sun|mon|tue|wed|thu|fri|sat)(?:-(?:[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT|sun|mon|tue|wed|thu|fri|sat))?)(?:/[1-9][0-9]?)?)(?:,(?:\?|(?:\*|(?:[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT|sun|mon|tue|wed|thu|fri|sat)(?:-(?:[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT|sun|mon|tue|wed|thu|fri|sat))?)(?:/[1-9][0-9]?)?))*",
    r")$"
);

/// CEL on an OidcClient spec: a pairwise client has a sector (OpenID Connect Core §8.1):
/// sectorIdentifierUri, or redirect URIs that all share one host, compared as the auth
/// server does (case-insensitively, ignoring scheme and port; an IPv6 host keeps its
/// brackets). Each redirect URI must also match [`HTTPS_OR_LOOPBACK_URL`], so an
/// accepted one has `://` followed by its host. The auth server re-checks on register.
pub(crate) const PAIRWISE_SINGLE_SECTOR: &str = r"self.subjectType != 'pairwise' || has(self.sectorIdentifierUri) || self.redirectUris.all(u, u.find('://(\\[[^\\]]*\\]|[^/?#:]+)').lowerAscii() == self.redirectUris[0].find('://(\\[[^\\]]*\\]|[^/?#:]+)').lowerAscii())";

/// CEL: `self` is an issuer identifier — https (or loopback http), no query, no
/// fragment, no trailing slash (OpenID Connect Discovery §3; the discovery document
/// lives at `<issuer>/.well-known/openid-configuration`).
pub(crate) const ISSUER_RULE: &str = r"(self.matches('^https://[^/?#@\\s]+(/[^?#\\s]*)?$') || self.matches('^http://(localhost|127[.]0[.]0[.]1|\\[::1\\])(:[0-9]{1,5})?(/[^?#\\s]*)?$')) && !self.endsWith('/')";
/// Message for [`ISSUER_RULE`].
pub(crate) const ISSUER_MESSAGE: &str = "issuer must be an https URL (http only on localhost, 127.0.0.1 or [::1]) without query, fragment or trailing slash";

/// Message for redirect-like URLs checked with [`HTTPS_OR_LOOPBACK_URL`].
pub(crate) const REDIRECT_URI_MESSAGE: &str =
    "must be an https URL, or http on localhost, 127.0.0.1 or [::1], without a fragment";

/// CEL: `self` is a Web origin (`scheme://host[:port]`, RFC 6454), https or loopback http.
const ORIGIN_RULE: &str = r"self.matches('^https://[^/?#@\\s]+$') || self.matches('^http://(localhost|127[.]0[.]0[.]1|\\[::1\\])(:[0-9]{1,5})?$')";
const ORIGIN_MESSAGE: &str = "must be an origin (scheme://host[:port], no path): https, or http on localhost, 127.0.0.1 or [::1]";

/// Pattern of a DNS label (RFC 1123): the names of cluster-scoped Gatehouse objects that
/// are tenant ids, and of namespaces.
pub(crate) const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Pattern of a DNS subdomain (RFC 1123): names of Secrets and most Kubernetes objects.
pub(crate) const DNS_SUBDOMAIN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Adds a CEL rule to the schema of every item of a list field.
fn validate_items(schema: &mut Schema, rule: &str, message: &str) {
    let rule = json!({ "rule": rule, "message": message });
    if let Some(Value::Object(items)) = schema.get_mut("items") {
        match items.get_mut("x-kubernetes-validations") {
            Some(Value::Array(rules)) => rules.push(rule),
            _ => {
                items.insert("x-kubernetes-validations".into(), json!([rule]));
            }
        }
    }
}

/// schemars transform for lists of redirect URIs: each item is checked on its own, so
/// the API server names the offending index (`spec.redirectUris[1]`).
pub(crate) fn redirect_uri_items(schema: &mut Schema) {
    validate_items(schema, HTTPS_OR_LOOPBACK_URL, REDIRECT_URI_MESSAGE);
}

/// schemars transform for lists of Web origins.
pub(crate) fn origin_items(schema: &mut Schema) {
    validate_items(schema, ORIGIN_RULE, ORIGIN_MESSAGE);
}

/// schemars transform for enums used as `Option<Enum>` fields: kube hoists the enum's
/// own schema over the field's when it rewrites `Option`, so an enum description would
/// replace the field's `kubectl explain` text. The field documents the values instead.
pub(crate) fn without_description(schema: &mut Schema) {
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("description");
    }
}

#[cfg(test)]
mod cron_tests {
    #[test]
    fn cron_schedules_are_checked_field_by_field() {
        let re = regex::Regex::new(super::CRON_SCHEDULE_PATTERN).unwrap();
        for good in [
            "17 * * * *",
            "*/15 2-5 1,15 JAN-MAR MON-FRI",
            "0 0 * * 0",
            "@hourly",
            "59 23 31 12 7",
            "0 0 ? * *",
            "5 4 * * sun",
            "0 */2 * * *",
        ] {
            assert!(re.is_match(good), "{good}");
        }
        for bad in [
            "99 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "17 * * *",
            "@every 5m",
            "x * * * *",
            "1-60 * * * *",
        ] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
