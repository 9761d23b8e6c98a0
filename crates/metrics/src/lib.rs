//! Metrics of a Cascade node: each subsystem owns one struct of its counters and
//! gauges and says, in one place, how each is named and described
//! ([`Collect`], usually through [`counters!`]); [`Exposition`] renders any of them
//! in the Prometheus text exposition format 0.0.4.

use std::fmt::{Display, Write as _};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a metric family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A subsystem's metrics, written into an exposition.
pub trait Collect {
    /// Writes every family of this subsystem.
    fn collect(&self, out: &mut Exposition);
}

/// The text of one scrape, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition { out: String::with_capacity(4096) }
    }

    /// Adds everything `source` collects.
    pub fn add(&mut self, source: &dyn Collect) -> &mut Self {
        source.collect(self);
        self
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }

    /// Writes the `# HELP` and `# TYPE` lines of a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.trim().replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// Writes one sample line: `name{label="value",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with its single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one label: a sample per (label value, value).
    pub fn labelled<'a, V: Display>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, V)>,
    ) {
        self.family(name, kind, help);
        for (value_of_label, value) in samples {
            self.sample(name, &[(label, value_of_label)], value);
        }
    }
}

/// Upper bounds (seconds) of latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// A latency histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last slot is `+Inf` only.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Records one observation (a negative or non-finite one as 0).
    pub fn observe(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() && seconds > 0.0 { seconds } else { 0.0 };
        let slot =
            LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes its `_bucket`, `_sum` and `_count` samples of family `name` with
    /// `labels` (the family's header is the caller's).
    pub fn write(&self, out: &mut Exposition, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0;
        let bucket = format!("{name}_bucket");
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += count;
            let le = Float(*bound).to_string();
            out.sample(&bucket, &[labels, &[("le", &le)]].concat(), cumulative);
        }
        out.sample(&bucket, &[labels, &[("le", "+Inf")]].concat(), self.count);
        out.sample(&format!("{name}_sum"), labels, Float(self.sum));
        out.sample(&format!("{name}_count"), labels, self.count);
    }
}

/// Appends `value` escaped as the format requires inside a label value:
/// backslash, double quote and line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float written as the format spells it: `+Inf`, `-Inf`, `NaN`, or the
/// shortest decimal that reads back to the same value (`1`, `0.005`).
#[derive(Clone, Copy, Debug)]
pub struct Float(pub f64);

impl Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v.is_infinite() {
            f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            write!(f, "{v}")
        }
    }
}

/// Declares a struct of plain counters (or gauges) with each one's metric name and
/// help text next to its field, and its [`Collect`]: every metric is named in
/// exactly one place. The struct derives `serde::Serialize` and
/// `utoipa::ToSchema` (the admin API shows it), so the crate using the macro
/// depends on serde and utoipa.
///
/// ```
/// cascade_metrics::counters! {
///     /// Work done by a subsystem.
///     pub struct Work {
///         /// Jobs finished.
///         jobs => counter "demo_jobs_total",
///         /// Jobs waiting now.
///         queued => gauge "demo_jobs_queued",
///     }
/// }
/// let mut out = cascade_metrics::Exposition::new();
/// out.add(&Work { jobs: 3, queued: 1 });
/// assert!(out.finish().contains("demo_jobs_total 3\n"));
/// ```
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[doc = $help:literal])+ $field:ident => $kind:ident $metric:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            $($(#[doc = $help])+ pub $field: u64,)*
        }

        impl $crate::Collect for $name {
            fn collect(&self, out: &mut $crate::Exposition) {
                $(out.single($metric, $crate::counters!(@kind $kind), concat!($($help),+), self.$field);)*
            }
        }
    };
    (@kind counter) => { $crate::Kind::Counter };
    (@kind gauge) => { $crate::Kind::Gauge };
}

#[cfg(test)]
mod tests {
    use super::*;

    counters! {
        /// Test counters.
        pub struct Demo {
            /// Things done.
            done => counter "demo_done_total",
            /// Things "waiting"
            /// now.
            waiting => gauge "demo_waiting",
        }
    }

    #[test]
    fn renders_families_that_parse_and_escapes_labels() {
        let mut out = Exposition::new();
        out.add(&Demo { done: 7, waiting: 2 });
        out.labelled("demo_by_reason_total", Kind::Counter, "By reason.", "reason", [("a\"b\\c\nd", 1u64)]);
        out.single("demo_ratio", Kind::Gauge, "A float.", Float(0.5));
        let text = out.finish();
        assert!(text.contains("# HELP demo_waiting Things \"waiting\" now.\n"), "{text}");
        assert!(text.contains("demo_by_reason_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"), "{text}");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let value = |name: &str| {
            scrape.samples.iter().find(|s| s.metric == name).map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            })
        };
        assert_eq!(value("demo_done_total"), Some(7.0));
        assert_eq!(value("demo_waiting"), Some(2.0));
        assert_eq!(value("demo_ratio"), Some(0.5));
        assert_eq!(Float(f64::INFINITY).to_string(), "+Inf");
    }
}
