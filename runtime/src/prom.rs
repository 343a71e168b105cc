//! A small writer for the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;

/// Accumulates metric families; call [`Prom::finish`] for the response body. Samples of one
/// family may be added in any order: each family is written once, with one `# HELP` and one
/// `# TYPE` line and all its samples together (the format requires it), families in the order
/// they were first added.
#[derive(Default)]
pub struct Prom {
    families: Vec<Family>,
}

struct Family {
    name: String,
    kind: &'static str,
    help: String,
    samples: String,
}

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Prom {
    /// An empty exposition.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a counter sample (`name` should end in `_total`), written as an exact integer.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: u64,
    ) -> &mut Self {
        self.sample(name, "counter", help, labels, &value.to_string())
    }

    /// Add a gauge sample.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> &mut Self {
        self.sample(name, "gauge", help, labels, &value.to_string())
    }

    fn sample(
        &mut self,
        name: &str,
        kind: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: &str,
    ) -> &mut Self {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_owned(),
                    kind,
                    help: help.replace('\\', "\\\\").replace('\n', "\\n"),
                    samples: String::new(),
                });
                self.families.len() - 1
            }
        };
        let f = &mut self.families[i];
        debug_assert_eq!(f.kind, kind, "metric {name} added as two types");
        f.samples.push_str(name);
        if !labels.is_empty() {
            f.samples.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    f.samples.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(f.samples, "{k}=\"{v}\"");
            }
            f.samples.push('}');
        }
        let _ = writeln!(f.samples, " {value}");
        self
    }

    /// The exposition text.
    #[must_use]
    pub fn finish(self) -> String {
        let mut out = String::new();
        for f in self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            out.push_str(&f.samples);
        }
        out
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
        // Interleaved families (one sample of each per site) are still written once each.
        p.gauge("z", "Z.", &[("site", "a")], 1.0);
        p.counter("x_total", "X.", &[("site", "e")], u64::MAX);
        p.gauge("z", "Z.", &[("site", "b")], 2.0);
        let t = p.finish();
        assert_eq!(t.matches("# TYPE x_total counter").count(), 1);
        assert_eq!(t.matches("# HELP z Z.").count(), 1);
        assert!(t.contains("x_total{site=\"e\"} 18446744073709551615\n"));
        let z = t.find("z{site=\"a\"}").unwrap();
        assert!(
            t[z..].starts_with("z{site=\"a\"} 1\nz{site=\"b\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("x_total{site=\"a\\\"b\"} 3\n"));
        assert!(t.contains("y 1.5\n"));
    }
}
