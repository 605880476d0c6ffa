//! The JSON log line: the same bytes as `tracing_subscriber`'s JSON formatter (flattened
//! event, current span, no span list), written straight into one buffer.
//!
//! Every request writes an access-log line, so the formatter is on the hot path of every
//! endpoint. The stock one serialises through a `fmt::Write` adaptor a few bytes at a
//! time and, for the span, parses the span's stored JSON fields back into a map only to
//! serialise them again. Here the span's fields, which its field formatter
//! (`JsonFields`) stored as a JSON object, are copied as they are and the span's name is
//! appended. The unit tests below hold the output to the stock formatter's, byte for
//! byte, so log shippers and the tests that read logs see no difference.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of JSON logs (`LogFormat::Json`).
#[derive(Debug, Default)]
pub struct JsonLine<T = UtcMicros> {
    timer: T,
}

impl<T> JsonLine<T> {
    /// Timestamps from `timer` instead of the system clock (tests).
    #[cfg(test)]
    pub fn with_timer(timer: T) -> Self {
        Self { timer }
    }
}

thread_local! {
    /// The line being built, reused: a line costs no allocation once the buffer has grown.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, N, T> FormatEvent<S, N> for JsonLine<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                self.format(ctx, &mut writer, event, &mut buf)
            }
            // Only if formatting re-entered itself (a field's `Debug` that logs).
            Err(_) => self.format(ctx, &mut writer, event, &mut Vec::new()),
        })
    }
}

impl<T: FormatTime> JsonLine<T> {
    fn format<S, N>(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: &mut Writer<'_>,
        event: &Event<'_>,
        buf: &mut Vec<u8>,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'w> FormatFields<'w> + 'static,
    {
        // Events from the `log` crate carry their real target and level here.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());

        buf.extend_from_slice(b"{\"timestamp\":\"");
        let start = buf.len();
        self.timer.format_time(&mut Writer::new(&mut Utf8(buf)))?;
        if buf[start..]
            .iter()
            .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
        {
            // Not a timestamp as ours are: escaped like any string.
            let raw = buf.split_off(start);
            buf.pop();
            json(buf, std::str::from_utf8(&raw).map_err(|_| fmt::Error)?)?;
        } else {
            buf.push(b'"');
        }
        buf.extend_from_slice(b",\"level\":");
        json(buf, meta.level().as_str())?;
        let mut fields = Fields {
            buf,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        buf.extend_from_slice(b",\"target\":");
        json(buf, meta.target())?;

        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            let ext = span.extensions();
            let stored = ext.get::<FormattedFields<N>>().map(|f| f.fields.as_str());
            // `JsonFields` stores `{…}`: open it, add the name, close it again.
            if let Some(object) = stored.and_then(|s| s.strip_suffix('}')) {
                buf.extend_from_slice(b",\"span\":");
                buf.extend_from_slice(object.as_bytes());
                if object != "{" {
                    buf.push(b',');
                }
                buf.extend_from_slice(b"\"name\":");
                json(buf, span.name())?;
                buf.push(b'}');
            }
        }
        buf.extend_from_slice(b"}\n");
        let text = std::str::from_utf8(buf).map_err(|_| fmt::Error)?;
        writer.write_str(text)
    }
}

/// The span field formatter of JSON logs: the object `JsonFields` stores for a span
/// (fields sorted by name, a later field of the same name winning), written straight
/// into the span's string.
///
/// Every request opens a span, and `JsonFields` collects its fields into a map of
/// `serde_json::Value`s first, each `Debug` field through a `String` of its own: 2 800
/// of a JWKS request's 49 800 instructions for the one field a request span starts with
/// (docs/benchmarks.md, eighth round).
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut values = SpanValues {
            entries: Vec::new(),
            bytes: Vec::new(),
            result: Ok(()),
        };
        fields.record(&mut values);
        values.result?;
        let mut entries = values.entries;
        // Stable: of two fields with one name, the later stays last and is kept.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut object = Vec::with_capacity(values.bytes.len() + 16 * entries.len() + 2);
        object.push(b'{');
        for (i, &(name, start, end)) in entries.iter().enumerate() {
            if entries.get(i + 1).is_some_and(|next| next.0 == name) {
                continue;
            }
            if object.len() > 1 {
                object.push(b',');
            }
            json(&mut object, name)?;
            object.push(b':');
            object.extend_from_slice(&values.bytes[start..end]);
        }
        object.push(b'}');
        writer.write_str(std::str::from_utf8(&object).map_err(|_| fmt::Error)?)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        // Fields recorded after the span opened (only when traces are exported): merged
        // into the stored object as `JsonFields` merges them, by parsing it back.
        let mut stock = FormattedFields::<JsonFields>::new(std::mem::take(&mut current.fields));
        let merged = JsonFields::new().add_fields(&mut stock, fields);
        current.fields = stock.fields;
        merged
    }
}

/// A span's fields as `JsonFields` sees them: each value written as JSON into one
/// buffer, found again by its field's name.
struct SpanValues {
    entries: Vec<(&'static str, usize, usize)>,
    bytes: Vec<u8>,
    result: fmt::Result,
}

impl SpanValues {
    fn value(&mut self, name: &'static str, value: impl Serialize) {
        if self.result.is_ok() {
            let start = self.bytes.len();
            self.result = json(&mut self.bytes, value);
            self.entries.push((name, start, self.bytes.len()));
        }
    }
}

impl Visit for SpanValues {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // As `JsonFields`: what the `log` crate's records carry in `log.*` fields is
            // their metadata, shown elsewhere, and a raw identifier loses its `r#`.
            name if name.starts_with("log.") => {}
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                self.value(name, format_args!("{value:?}"));
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.value(field.name(), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field.name(), value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field.name(), value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.value(field.name(), value);
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.value(field.name(), value);
    }
}

/// `fmt::Write` into a byte buffer (what is written is UTF-8 by construction).
struct Utf8<'a>(&'a mut Vec<u8>);

impl fmt::Write for Utf8<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The log lines' timestamps: the bytes of `tracing_subscriber`'s `SystemTime`
/// (`2026-12-07T18:32:33.123456Z`, UTC, microseconds), with the date and time of day
/// worked out once per second and thread instead of through `fmt` for every line (a
/// sixteenth of a JWKS request's instructions).
#[derive(Debug, Default, Clone, Copy)]
pub struct UtcMicros;

thread_local! {
    /// The second last formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        // A clock before 1970 or past 9999 gets the stock formatter.
        match crate::clock::since_epoch().and_then(|d| timestamp(d.as_secs(), d.subsec_micros())) {
            Some(text) => w.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?),
            None => SystemTime.format_time(w),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of a Unix second and its microseconds.
fn timestamp(second: u64, micros: u32) -> Option<[u8; 27]> {
    let (cached, mut date) = SECOND.get();
    if cached != second {
        date = date_and_time(second)?;
        SECOND.set((second, date));
    }
    let mut out = [0u8; 27];
    out[..19].copy_from_slice(&date);
    out[19] = b'.';
    let mut rest = micros;
    for digit in out[20..26].iter_mut().rev() {
        // Below 10: the cast cannot truncate.
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out[26] = b'Z';
    Some(out)
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second, up to the last days of 9999 (jiff's range).
fn date_and_time(second: u64) -> Option<[u8; 19]> {
    let at = jiff::Timestamp::from_second(i64::try_from(second).ok()?).ok()?;
    let text = at.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    text.as_bytes().try_into().ok()
}

/// Appends `value` as JSON (strings escaped as serde_json escapes them).
fn json(buf: &mut Vec<u8>, value: impl Serialize) -> fmt::Result {
    serde_json::to_writer(buf, &value).map_err(|_| fmt::Error)
}

/// The event's fields as `,"name":value` entries, in the order they were recorded.
struct Fields<'a> {
    buf: &'a mut Vec<u8>,
    result: fmt::Result,
}

impl Fields<'_> {
    fn entry(&mut self, field: &Field, value: impl Serialize) {
        if self.result.is_ok() {
            self.buf.push(b',');
            self.result = json(self.buf, field.name()).and_then(|()| {
                self.buf.push(b':');
                json(self.buf, value)
            });
        }
    }
}

impl Visit for Fields<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, format_args!("{value:?}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[derive(Clone, Copy)]
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-12-06T20:00:00.123456Z")
        }
    }

    #[derive(Debug)]
    struct Failure;

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("failed to \"reach\" the database\n\tat once")
        }
    }

    impl std::error::Error for Failure {}

    /// Every kind of field, span and event the server logs, and awkward text.
    fn log_everything() {
        tracing::info!("no span, no fields");
        tracing::warn!(count = 3_u64, delta = -7_i64, ok = true, "numbers");
        tracing::error!(
            ratio = 0.125,
            latency_ms = 1.0 / 3.0,
            nan = f64::NAN,
            huge = 1e300,
            "floats"
        );
        tracing::info!(
            text = "quote \" backslash \\ newline \n tab \t bell \u{7} esc \u{1b} é ✓ 🦀",
            "strings"
        );
        let error = Failure;
        tracing::error!(error = &error as &dyn std::error::Error, "an error");
        tracing::info!(shown = %"display", debugged = ?vec!["a", "b"], "formats");
        tracing::info!(message = "explicit message field");
        tracing::info!(target: "some::other::target", "another target");
        let span = tracing::info_span!(
            "http_request",
            http.method = %"GET",
            http.route = tracing::field::Empty,
            tenant = tracing::field::Empty,
        );
        span.in_scope(|| {
            tracing::info!(
                method = %"GET",
                route = %"{issuer}/jwks",
                status = 200_u16,
                latency_ms = 0.04,
                tenant = "main",
                "request"
            );
        });
        span.record("http.route", "{issuer}/jwks");
        span.record("tenant", "ma\"in");
        span.in_scope(|| tracing::info!("after the span's fields were recorded"));
        let kinds = tracing::info_span!(
            "every_kind",
            z = 1_u64,
            a = -2_i64,
            m = true,
            f = 0.5,
            nan = f64::NAN,
            r#type = ?"raw",
            r#loop = 3_u64,
            log.target = ?"skipped",
            shown = %"display \" quoted",
            text = "tab \t é ✓",
            debugged = ?vec![1, 2],
            empty = tracing::field::Empty,
        );
        kinds.in_scope(|| tracing::info!("inside a span with every kind of field"));
        kinds.record("empty", "recorded later");
        kinds.in_scope(|| tracing::info!("and after a field was recorded"));
        let bare = tracing::info_span!("no_fields");
        bare.in_scope(|| {
            let inner = tracing::debug_span!("inner", n = 1_u64, name = "field named name");
            inner.in_scope(|| tracing::debug!("innermost span is the current one"));
            tracing::info!(parent: &span, "explicit parent");
            tracing::info!(parent: None, "explicitly no parent");
        });
        let answer = 42;
        span.in_scope(|| {
            tracing_log::format_trace(
                &log::Record::builder()
                    .args(format_args!("from the log crate: {answer}"))
                    .level(log::Level::Warn)
                    .target("a_log_crate::module")
                    .module_path(Some("a_log_crate::module"))
                    .file(Some("src/module.rs"))
                    .line(Some(7))
                    .build(),
            )
            .unwrap();
        });
    }

    fn text(t: Option<[u8; 27]>) -> String {
        String::from_utf8(t.expect("a year up to 9999").to_vec()).unwrap()
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        for (second, micros, expected) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
            (1_796_668_353, 999_999, "2026-12-07T18:32:33.999999Z"),
            (1_796_668_353, 120_000, "2026-12-07T18:32:33.120000Z"),
            (1_796_668_354, 5, "2026-12-07T18:32:34.000005Z"),
            (4_107_542_399, 1, "2100-02-28T23:59:59.000001Z"),
            (253_402_041_600, 0, "9999-12-29T00:00:00.000000Z"),
        ] {
            assert_eq!(text(timestamp(second, micros)), expected);
        }
        // Where jiff's range ends (the last day of 9999) the stock timer takes over.
        assert_eq!(timestamp(253_402_300_800, 0), None, "year 10000");
    }

    #[test]
    fn timestamps_are_those_of_the_stock_timer() {
        let format = |timer: &dyn FormatTime| {
            let mut s = String::new();
            timer.format_time(&mut Writer::new(&mut s)).unwrap();
            s
        };
        // Taken one after the other they agree but for the microseconds, unless a
        // second ended in between: then the next try.
        let agreed = (0..3).any(|_| {
            let (stock, ours) = (format(&SystemTime), format(&UtcMicros));
            assert_eq!(ours.len(), stock.len(), "{ours} {stock}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            ours[..19] == stock[..19]
        });
        assert!(agreed);
    }

    /// Both formatters' output of [`log_everything`] with `timer`.
    fn stock_and_ours<T: FormatTime + Copy + Send + Sync + 'static>(timer: T) -> (String, String) {
        let _turn = crate::testing::subscriber_turn();
        let stock = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(stock.clone())
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_timer(timer),
        );
        tracing::subscriber::with_default(subscriber, log_everything);

        let ours = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(ours.clone())
                .json()
                .fmt_fields(SpanFields)
                .event_format(JsonLine::with_timer(timer)),
        );
        tracing::subscriber::with_default(subscriber, log_everything);
        (stock.text(), ours.text())
    }

    #[test]
    fn lines_are_byte_for_byte_those_of_the_stock_json_formatter() {
        let (stock, ours) = stock_and_ours(Fixed);
        assert_eq!(stock.lines().count(), 16, "{stock}");
        for (s, o) in stock.lines().zip(ours.lines()) {
            assert_eq!(o, s);
            serde_json::from_str::<serde_json::Value>(o).unwrap();
        }
        assert_eq!(ours, stock);
    }

    /// A timer whose text needs escaping (none of ours) is escaped as the stock
    /// formatter escapes it.
    #[test]
    fn an_odd_timers_text_is_escaped() {
        #[derive(Clone, Copy)]
        struct Odd;
        impl FormatTime for Odd {
            fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
                w.write_str("a \"quoted\"\ttime\\")
            }
        }
        let (stock, ours) = stock_and_ours(Odd);
        assert!(
            ours.starts_with(r#"{"timestamp":"a \"quoted\"\ttime\\","#),
            "{ours}"
        );
        assert_eq!(ours, stock);
    }
}
