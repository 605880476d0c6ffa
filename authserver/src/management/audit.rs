//! `GET /audit`: the tenant's audit trail, filtered, newest first, a page at a time or as
//! one CSV export. The database selects by event, user, client, time and position; the
//! address range and outcome are checked here, so one page may scan more rows than it
//! returns — at most [`MAX_SCAN`] per call, after which the page ends early with a
//! cursor that goes on from where the scan stopped.

use base64::Engine as _;
use serde::Serialize;

use super::{Caller, DEFAULT_PAGE, Error, MAX_PAGE, Management, Page, rfc3339};
use crate::config::IpNet;
use crate::domain::tenant::Tenant;
use crate::store::audit::{AuditEvent, AuditSelection, outcome_of};

/// Rows one call reads at most, whatever the filters: bounds the work of a request.
pub const MAX_SCAN: usize = 20_000;
/// Rows read per database round trip.
const BATCH: usize = 500;

/// The filters of an audit search, as the query string gives them.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub selection: AuditSelection,
    /// `ip`: an address or a CIDR range.
    pub ip: Option<IpNet>,
    /// `outcome`: `success` or `failure`.
    pub outcome: Option<&'static str>,
    pub limit: usize,
    /// `format=csv` (or `Accept: text/csv`, decided by the caller).
    pub csv: bool,
}

impl AuditQuery {
    /// Parses the query string's pairs. An unknown parameter, a bad value or a
    /// repeated single-valued parameter is an [`Error::Invalid`] naming it.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, Error> {
        let mut q = AuditQuery {
            limit: DEFAULT_PAGE,
            ..AuditQuery::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in pairs {
            if name != "type" && !seen.insert(name.to_owned()) {
                return Err(Error::invalid(name, "may be given once"));
            }
            match name {
                "type" => {
                    if value.is_empty() || value.len() > 100 {
                        return Err(Error::invalid("type", "must be an event name"));
                    }
                    q.selection.events.push(value.to_owned());
                }
                "user" => q.selection.subject = Some(nonempty(name, value)?),
                "client" => q.selection.party = Some(nonempty(name, value)?),
                "ip" => {
                    q.ip = Some(IpNet::parse(value).ok_or_else(|| {
                        Error::invalid("ip", "must be an IP address or a CIDR range")
                    })?);
                }
                "from" => q.selection.from = Some(timestamp(name, value)?),
                "to" => q.selection.to = Some(timestamp(name, value)?),
                "outcome" => {
                    q.outcome = Some(match value {
                        "success" => "success",
                        "failure" => "failure",
                        _ => return Err(Error::invalid("outcome", "must be success or failure")),
                    });
                }
                "limit" => {
                    q.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            Error::invalid(
                                "limit",
                                format!("must be a number from 1 to {MAX_PAGE}"),
                            )
                        })?;
                }
                "cursor" => q.selection.before = Some(decode_cursor(value)?),
                "format" => {
                    q.csv = match value {
                        "csv" => true,
                        "json" => false,
                        _ => return Err(Error::invalid("format", "must be json or csv")),
                    };
                }
                other => {
                    return Err(Error::invalid(
                        other,
                        "unknown parameter (expected type, user, client, ip, from, to, outcome, \
                         limit, cursor, format)",
                    ));
                }
            }
        }
        if q.selection.events.len() > 50 {
            return Err(Error::invalid("type", "at most 50 event types"));
        }
        if let (Some(from), Some(to)) = (q.selection.from, q.selection.to)
            && from >= to
        {
            return Err(Error::invalid("to", "must be later than from"));
        }
        Ok(q)
    }
}

fn nonempty(name: &str, value: &str) -> Result<String, Error> {
    if value.is_empty() || value.len() > 256 {
        return Err(Error::invalid(name, "must be 1 to 256 characters"));
    }
    Ok(value.to_owned())
}

fn timestamp(name: &str, value: &str) -> Result<i64, Error> {
    value
        .parse::<jiff::Timestamp>()
        .map(jiff::Timestamp::as_second)
        .map_err(|_| {
            Error::invalid(
                name,
                "must be an RFC 3339 date-time, e.g. 2026-12-01T00:00:00Z",
            )
        })
}

/// A cursor is opaque to callers: the position of the last row read, encoded.
fn encode_cursor(position: i64) -> String {
    encode_cursor_text(&format!("a{position}"))
}

pub(super) fn encode_cursor_text(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The text inside a cursor (see [`encode_cursor_text`]), or `Invalid` naming `field`.
pub fn decode_cursor_text(value: &str, field: &str) -> Result<String, Error> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::invalid(field, "is not a cursor this API returned"))
}

fn decode_cursor(value: &str) -> Result<i64, Error> {
    decode_cursor_text(value, "cursor")?
        .strip_prefix('a')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API returned"))
}

/// One audit event as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub at: String,
    pub event: String,
    /// `success` or `failure`.
    pub outcome: &'static str,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub ip: Option<String>,
    pub details: serde_json::Value,
}

impl From<AuditEvent> for AuditEntry {
    fn from(e: AuditEvent) -> Self {
        Self {
            at: rfc3339(e.at),
            outcome: outcome_of(&e.event),
            event: e.event,
            actor: e.actor,
            subject: e.subject,
            ip: e.ip,
            details: e.details,
        }
    }
}

/// The CSV header row (RFC 4180, CRLF line ends).
pub const CSV_HEADER: &str = "at,event,outcome,actor,subject,ip,details\r\n";

impl AuditEntry {
    /// The entry as one CSV record, CRLF-terminated.
    pub fn csv_record(&self) -> String {
        let details = self.details.to_string();
        let fields = [
            self.at.as_str(),
            self.event.as_str(),
            self.outcome,
            self.actor.as_deref().unwrap_or_default(),
            self.subject.as_deref().unwrap_or_default(),
            self.ip.as_deref().unwrap_or_default(),
            details.as_str(),
        ];
        let mut line = fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        line.push_str("\r\n");
        line
    }
}

/// One CSV field: a text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
/// CR first) gets a leading `'` (OWASP's CSV injection advice), then a field holding a
/// comma, quote or line break is quoted with its quotes doubled (RFC 4180 §2).
pub fn csv_field(value: &str) -> String {
    let neutral = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if neutral.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

impl Management<'_> {
    /// Up to `query.limit` matching events older than the query's cursor, and the
    /// cursor of the next page (absent when the trail is exhausted).
    pub async fn audit_page(
        &self,
        tenant: &Tenant,
        query: &AuditQuery,
    ) -> Result<Page<AuditEntry>, Error> {
        let (items, next) = self.audit_scan(tenant, query).await?;
        Ok(Page {
            items,
            next: next.map(encode_cursor),
        })
    }

    /// [`Self::audit_page`] with the next position as it is (the CSV export goes on from
    /// it without a round trip through the cursor text).
    pub async fn audit_scan(
        &self,
        tenant: &Tenant,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditEntry>, Option<i64>), Error> {
        let mut selection = query.selection.clone();
        let mut items = Vec::new();
        let mut scanned = 0;
        loop {
            let want = BATCH.max(query.limit - items.len());
            let rows = self
                .store
                .search_audit(
                    &tenant.id,
                    &selection,
                    i64::try_from(want).unwrap_or(i64::MAX),
                )
                .await?;
            let exhausted = rows.len() < want;
            for (position, event) in rows {
                scanned += 1;
                selection.before = Some(position);
                if matches(query, &event) {
                    items.push(AuditEntry::from(event));
                    if items.len() == query.limit {
                        // Whether more follow is for the next page to find out.
                        return Ok((items, Some(position)));
                    }
                }
            }
            if exhausted {
                return Ok((items, None));
            }
            if scanned >= MAX_SCAN {
                return Ok((items, selection.before));
            }
        }
    }

    /// Records that `caller` read the audit trail (with the filters, never the results).
    pub async fn audit_read(&self, tenant: &Tenant, caller: &Caller, query: &AuditQuery) {
        let filters = serde_json::json!({
            "type": query.selection.events,
            "user": query.selection.subject,
            "client": query.selection.party,
            "ip": query.ip.map(|n| format!("{}/{}", n.addr, n.prefix)),
            "from": query.selection.from.map(rfc3339),
            "to": query.selection.to.map(rfc3339),
            "outcome": query.outcome,
            "format": if query.csv { "csv" } else { "json" },
        });
        self.store
            .audit(
                caller
                    .event(tenant, self.now(), "audit.read")
                    .details(caller.details(serde_json::json!({ "filters": filters }))),
            )
            .await;
    }
}

fn matches(query: &AuditQuery, event: &AuditEvent) -> bool {
    let ip_ok = query.ip.is_none_or(|net| {
        event
            .ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .is_some_and(|ip| net.contains(ip))
    });
    ip_ok && query.outcome.is_none_or(|o| outcome_of(&event.event) == o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<AuditQuery, Error> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect();
        AuditQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn filters_parse_and_bad_ones_name_their_parameter() {
        let q = parse(
            "type=client.created&type=client.deleted&user=u1&client=web&ip=10.0.0.0/8\
             &from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z&outcome=failure&limit=5",
        )
        .unwrap();
        assert_eq!(q.selection.events, ["client.created", "client.deleted"]);
        assert_eq!(q.selection.subject.as_deref(), Some("u1"));
        assert_eq!(q.selection.party.as_deref(), Some("web"));
        assert_eq!(q.selection.to.unwrap() - q.selection.from.unwrap(), 86_400);
        assert_eq!((q.limit, q.outcome, q.csv), (5, Some("failure"), false));
        for (bad, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("ip=10.0.0.0/33", "ip"),
            ("from=yesterday", "from"),
            ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "to"),
            ("outcome=maybe", "outcome"),
            ("cursor=!!", "cursor"),
            ("cursor=eDE", "cursor"),
            ("sort=at", "sort"),
            ("user=a&user=b", "user"),
            ("format=xml", "format"),
        ] {
            assert_eq!(field_of(parse(bad).unwrap_err()), field, "{bad}");
        }
        let q = parse(&format!("cursor={}", encode_cursor(42))).unwrap();
        assert_eq!(q.selection.before, Some(42));
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("=a,b"), "\"'=a,b\"");
        let entry = AuditEntry {
            at: "2026-12-01T00:00:00Z".into(),
            event: "client.created".into(),
            outcome: "success",
            actor: Some("ci".into()),
            subject: None,
            ip: None,
            details: serde_json::json!({"note": "a,\"b\""}),
        };
        assert_eq!(
            entry.csv_record(),
            "2026-12-01T00:00:00Z,client.created,success,ci,,,\"{\"\"note\"\":\"\"a,\\\"\"b\\\"\"\"\"}\"\r\n"
        );
    }

    #[test]
    fn outcome_follows_the_event_name() {
        assert_eq!(outcome_of("client.auth_failed"), "failure");
        assert_eq!(outcome_of("consent.denied"), "failure");
        assert_eq!(outcome_of("mfa.failed"), "failure");
        assert_eq!(outcome_of("refresh_token.reuse_detected"), "failure");
        assert_eq!(outcome_of("client.created"), "success");
    }
}
