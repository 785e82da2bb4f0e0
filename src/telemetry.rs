//! What an operator reads besides the answers: the log's format (text, or one JSON object per
//! line for log shippers) and the metrics.
//!
//! Metrics go through the `metrics` facade into a Prometheus recorder
//! (`metrics-exporter-prometheus`). The recorder is the application's own, never installed as
//! the process's global one: tests run many applications in one process, and each `/metrics`
//! must show its own figures. The hot paths keep counting in the atomics their owners already
//! publish (one relaxed add); a scrape sets those figures into the recorder and renders it. The
//! two latency histograms are the exporter's, recorded through handles bound to this recorder.

use crate::config::LogSettings;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: from a fast local call to a hung provider.
const BUCKETS_S: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often the histograms' samples are folded into their buckets between scrapes, so that
/// they take no more memory when nobody scrapes.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// One application's metrics: its recorder (every sample labelled `node`) and the process's
/// own figures (resident memory, open descriptors, CPU seconds).
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A recorder whose every sample carries `node` (`NODE_NAME`), so that one scrape
    /// configuration serves a whole cluster.
    pub fn new(node: &str) -> Self {
        let recorder = PrometheusBuilder::new()
            .add_global_label("node", node)
            .set_buckets(&BUCKETS_S)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&recorder, || process.describe());
        Self {
            recorder,
            handle,
            process,
        }
    }

    /// A latency histogram (in seconds) of this recorder, to record into from any thread.
    pub fn histogram(&self, name: &'static str, help: &'static str) -> metrics::Histogram {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::describe_histogram!(name, metrics::Unit::Seconds, help);
            metrics::histogram!(name)
        })
    }

    /// The Prometheus text: `set` runs with this recorder as the current one, to describe and
    /// set the figures read from the actors (`gauge!`, `counter!(..).absolute(..)`).
    pub fn render(&self, set: impl FnOnce()) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            self.process.collect();
            set();
        });
        // Publishes the descriptions just given and folds the histograms' samples.
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Folds the histograms' samples into their buckets (run every `UPKEEP_EVERY`).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// A latency histogram that an owner keeps among the figures it publishes; it records into
/// the application's recorder once `attach`ed at start (before that, and in tests that build an
/// actor alone, observations go nowhere). One atomic load and one lock-free push per
/// observation.
#[derive(Debug, Default)]
pub struct Histogram(OnceLock<metrics::Histogram>);

impl Histogram {
    pub fn observe(&self, d: Duration) {
        if let Some(h) = self.0.get() {
            h.record(d);
        }
    }

    /// Binds this histogram to a recorder's; a second call keeps the first.
    pub fn attach(&self, h: metrics::Histogram) {
        let _ = self.0.set(h);
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
    fn observations_land_in_cumulative_buckets_labelled_with_the_node() {
        let m = Metrics::new("n1");
        let h = Histogram::default();
        h.attach(m.histogram("x_seconds", "test"));
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(60));
        let out = m.render(|| {});
        assert!(out.contains("# TYPE x_seconds histogram"), "{out}");
        assert!(
            out.contains("x_seconds_bucket{node=\"n1\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{node=\"n1\",le=\"0.05\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{node=\"n1\",le=\"30\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{node=\"n1\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{node=\"n1\"} 3\n"), "{out}");
    }

    #[test]
    fn two_applications_in_one_process_keep_their_own_figures() {
        let (a, b) = (Metrics::new("a"), Metrics::new("b"));
        let out_a = a.render(|| metrics::counter!("things_total").absolute(7));
        let out_b = b.render(|| {});
        assert!(out_a.contains("things_total{node=\"a\"} 7"), "{out_a}");
        assert!(!out_b.contains("things_total"), "{out_b}");
    }

    #[test]
    fn process_figures_are_there() {
        let out = Metrics::new("n").render(|| {});
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
        ] {
            assert!(
                out.contains(&format!("{name}{{node=\"n\"}}")),
                "{name}:\n{out}"
            );
        }
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
