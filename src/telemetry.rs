//! A latency histogram cheap enough for hot paths (one atomic add per observation), and its
//! Prometheus text rendering. Owners keep one inside the figures they already publish. And the
//! log's format: text, or one JSON object per line for log shippers.

use crate::config::LogSettings;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in milliseconds: from a fast local call to a hung provider.
const BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];

#[derive(Debug)]
pub struct Histogram {
    /// Observations at or under each bound, not cumulative; the last counts the rest.
    counts: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = BOUNDS_MS
            .iter()
            .position(|b| ms <= *b as f64)
            .unwrap_or(BOUNDS_MS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Appends `name` as a Prometheus histogram in seconds.
    pub fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in BOUNDS_MS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1000.0
            );
        }
        cumulative += self.counts[BOUNDS_MS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Starts `log` with env_logger: the filter `RUST_LOG` (or `--rust-log`), and with
/// `LOG_FORMAT=json` one JSON object per line for every line (not only requests).
pub fn init_logging(settings: &LogSettings) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::new().write_style("RUST_LOG_STYLE"));
    builder.parse_filters(&settings.filter);
    if settings.json {
        builder.format(|buf, record| {
            serde_json::to_writer(&mut *buf, &json_line(record))?;
            writeln!(buf)
        });
    }
    builder.init();
}

/// `{"ts", "level", "target", "msg", ...}`, the record's key-values as members (numbers as
/// numbers).
pub fn json_line(record: &log::Record<'_>) -> serde_json::Value {
    use serde_json::Value;
    let mut line = serde_json::Map::new();
    line.insert(
        "ts".into(),
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    line.insert("level".into(), Value::String(record.level().to_string()));
    line.insert("target".into(), Value::String(record.target().to_string()));
    line.insert("msg".into(), Value::String(record.args().to_string()));
    struct Members<'a>(&'a mut serde_json::Map<String, Value>);
    impl<'kvs> log::kv::VisitSource<'kvs> for Members<'_> {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            let v = if let Some(n) = value.to_u64() {
                Value::from(n)
            } else if let Some(n) = value.to_i64() {
                Value::from(n)
            } else if let Some(x) = value.to_f64() {
                Value::from(x)
            } else if let Some(b) = value.to_bool() {
                Value::from(b)
            } else {
                Value::String(value.to_string())
            };
            self.0.insert(key.as_str().to_string(), v);
            Ok(())
        }
    }
    let _ = record.key_values().visit(&mut Members(&mut line));
    Value::Object(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render("x_seconds", "test", &mut out);
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn a_json_line_carries_the_message_and_the_fields() {
        let kvs: [(&str, log::kv::Value<'_>); 2] = [
            ("status", log::kv::Value::from(201u64)),
            ("route", log::kv::Value::from("/api/v1/bookings")),
        ];
        let args = format_args!("request");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("t")
            .key_values(&kvs)
            .build();
        let v = json_line(&record);
        assert_eq!(v["msg"], "request");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["status"], 201);
        assert_eq!(v["route"], "/api/v1/bookings");
    }
}
