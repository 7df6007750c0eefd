//! The JSON log line exactly as tracing-subscriber's JSON format writes it
//! — `{"timestamp":…,"level":…,"fields":{…},"target":…}` — but written
//! straight into the line, where tracing-subscriber first turns every field
//! into a serde value and then serializes it through a UTF-8-checking
//! adaptor: about 20,000 instructions for a relay's transaction line, one
//! per message (docs/performance.md). An event inside a span is left to
//! tracing-subscriber's own formatter, which adds `span` and `spans`.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub struct JsonLines {
    /// tracing-subscriber's JSON format, for events inside a span.
    in_span: Format<Json>,
}

impl Default for JsonLines {
    fn default() -> Self {
        JsonLines {
            in_span: Format::default().json(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if span.is_some() {
            return self.in_span.format_event(ctx, w, event);
        }
        let meta = event.metadata();
        w.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut w)?;
        write!(w, "\",\"level\":\"{}\",\"fields\":{{", meta.level())?;
        let mut fields = Fields {
            w: &mut w,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_str("},\"target\":")?;
        string(&mut w, meta.target())?;
        w.write_str("}\n")
    }
}

/// The event's fields as JSON members, as tracing-serde records them.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let first = std::mem::replace(&mut self.first, false);
        self.result = (|| {
            if !first {
                self.w.write_char(',')?;
            }
            string(self.w, field.name())?;
            self.w.write_char(':')?;
            value(self.w)
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's own number format (and null for NaN and infinities).
        let number = serde_json::to_string(&value).map_err(|_| fmt::Error);
        self.member(field, |w| w.write_str(&number?));
    }
}

/// `s` as a JSON string.
fn string(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Writes what it is given with JSON's string escapes, as serde_json
/// writes them: `"` and `\`, and the control characters below 0x20
/// (`\b \t \n \f \r` by name, the others as `\u00xx`); the rest as it is.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut run = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                0x08 => "\\b",
                b'\t' => "\\t",
                b'\n' => "\\n",
                0x0c => "\\f",
                b'\r' => "\\r",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[run..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u00{b:02x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            run = i + 1;
        }
        self.0.write_str(&s[run..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn events() {
        let odd = "quote \" backslash \\ newline \n tab \t cr \r nul \u{0} bell \u{7} del \u{7f} é 😀 / <>";
        tracing::info!("plain message");
        tracing::info!(
            session = "1f",
            n = 42u64,
            neg = -7i64,
            ok = true,
            "transaction"
        );
        tracing::warn!(text = odd, shown = %odd, debugged = ?odd, "odd {}", odd);
        tracing::error!(
            ratio = 0.5f64,
            nan = f64::NAN,
            big = 1e21f64,
            none = Option::<&str>::None,
            some = Some("x")
        );
        let e = std::io::Error::other("disk \"full\"");
        tracing::warn!(error = &e as &dyn std::error::Error, "failed");
        let span = tracing::info_span!("reconciling", object = "ns/name");
        span.in_scope(|| tracing::info!(inside = 1u64, "in a span"));
    }

    /// The lines of `events` as `format` writes them, timestamps taken out
    /// (checked for their shape).
    fn lines<E>(format: E) -> Vec<String>
    where
        E: FormatEvent<tracing_subscriber::Registry, tracing_subscriber::fmt::format::JsonFields>
            + Send
            + Sync
            + 'static,
    {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(format)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| {
                let (head, rest) = l.split_once("{\"timestamp\":\"").expect("a timestamp");
                let (ts, tail) = rest.split_once('"').unwrap();
                assert!(
                    ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                    "{ts}"
                );
                format!("{head}{{\"timestamp\":\"T\"{tail}")
            })
            .collect()
    }

    #[test]
    fn the_same_lines_as_tracing_subscribers_json_format() {
        let ours = lines(JsonLines::default());
        let theirs = lines(Format::default().json());
        assert_eq!(ours.len(), 6);
        assert_eq!(ours, theirs);
        assert!(ours[2].contains(r#""text":"quote \" backslash \\ newline \n tab \t cr \r nul \u0000 bell \u0007 del"#), "{}", ours[2]);
        assert!(ours[5].contains(r#""span":{"#), "{}", ours[5]);
    }
}
