//! How a log line looks: text for people, JSON for programs, and what the systemd journal
//! wants when stderr goes to it.

use std::io::{self, Write};

use env_logger::fmt::Formatter;
use log::kv::{Key, Value, VisitSource};
use log::{Level, Record};
use serde_json::{Map, Value as Json};

use crate::cli::LogFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `[2026-11-24T12:00:00.000Z INFO ] message`
    Text,
    /// One object a line: time, level, message and the record's fields (`conn`, `peer`, …).
    Json,
    /// `<6>message`: the journal adds its own timestamp and maps `<N>` to a priority, so
    /// `journalctl -p warning` finds the warnings.
    Journal,
}

impl Style {
    /// The style for `format`; text becomes the journal's when systemd connected stderr to
    /// the journal (it says so in `JOURNAL_STREAM`).
    pub fn new(format: LogFormat) -> Style {
        match format {
            LogFormat::Json => Style::Json,
            LogFormat::Text if std::env::var_os("JOURNAL_STREAM").is_some() => Style::Journal,
            LogFormat::Text => Style::Text,
        }
    }
}

pub fn write(buf: &mut Formatter, record: &Record, style: Style) -> io::Result<()> {
    match style {
        Style::Text => {
            let level = buf.default_level_style(record.level());
            writeln!(
                buf,
                "[{} {level}{:<5}{level:#}] {}",
                buf.timestamp_millis(),
                record.level(),
                record.args()
            )
        }
        Style::Journal => writeln!(buf, "<{}>{}", priority(record.level()), record.args()),
        Style::Json => {
            let mut object = Map::new();
            object.insert("time".into(), buf.timestamp_millis().to_string().into());
            object.insert("level".into(), record.level().as_str().into());
            object.insert("message".into(), record.args().to_string().into());
            let mut fields = Fields(&mut object);
            let _ = record.key_values().visit(&mut fields);
            writeln!(buf, "{}", Json::Object(object))
        }
    }
}

/// syslog's priorities, as the journal reads them.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// A record's key-value fields into a JSON object: numbers as numbers, the rest as text.
struct Fields<'a>(&'a mut Map<String, Json>);

/// Whether a field's value is absent (`None`).
struct IsNull(bool);

impl<'v> log::kv::VisitValue<'v> for IsNull {
    fn visit_any(&mut self, _: Value) -> Result<(), log::kv::Error> {
        Ok(())
    }
    fn visit_null(&mut self) -> Result<(), log::kv::Error> {
        self.0 = true;
        Ok(())
    }
}

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let mut null = IsNull(false);
        let _ = value.visit(&mut null);
        // An absent field (`via` without a proxy) is left out.
        if null.0 {
            return Ok(());
        }
        let json = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_string(), json);
        Ok(())
    }
}
