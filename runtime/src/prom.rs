//! A small writer for the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;

/// Accumulates metric families; call [`Prom::finish`] for the response body.
#[derive(Default)]
pub struct Prom {
    out: String,
    last: Option<String>,
}

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Prom {
    /// An empty exposition.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a counter sample (`name` should end in `_total`).
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: u64,
    ) -> &mut Self {
        self.sample(name, "counter", help, labels, value as f64)
    }

    /// Add a gauge sample.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> &mut Self {
        self.sample(name, "gauge", help, labels, value)
    }

    fn sample(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> &mut Self {
        if self.last.as_deref() != Some(name) {
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} {kind}");
            self.last = Some(name.to_owned());
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// The exposition text.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_once_and_escapes_labels() {
        let mut p = Prom::new();
        p.counter("x_total", "X.", &[("site", "a\"b")], 3);
        p.counter("x_total", "X.", &[("site", "c")], 4);
        p.gauge("y", "Y.", &[], 1.5);
        let t = p.finish();
        assert_eq!(t.matches("# TYPE x_total counter").count(), 1);
        assert!(t.contains("x_total{site=\"a\\\"b\"} 3\n"));
        assert!(t.contains("y 1.5\n"));
    }
}
