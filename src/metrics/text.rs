//! The Prometheus text exposition format, version 0.0.4: a writer that keeps the rules in one
//! place (one `# HELP` and one `# TYPE` line per family, before its samples; label values
//! and help text escaped).
//!
//! Escaping (Prometheus "Exposition formats"): in label values `\` → `\\`, `"` → `\"` and a
//! line feed → `\n`; in help text `\` → `\\` and a line feed → `\n`. Metric and label names
//! are fixed identifiers in our code and are not escaped (debug-checked instead).

use std::fmt::{Display, Write};

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Builds one exposition. Call [`Exposition::family`], then [`Exposition::sample`] for each of
/// its samples, then the next family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    /// The family whose samples may follow.
    current: Option<&'static str>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(valid_name(name), "bad metric name {name:?}");
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self.current = Some(name);
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, labels: &[(&'static str, &str)], value: impl Display) -> &mut Self {
        let Some(name) = self.current else {
            debug_assert!(false, "sample before family");
            return self;
        };
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(valid_name(k), "bad label name {k:?}");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(
        &mut self,
        name: &'static str,
        kind: Kind,
        help: &str,
        value: impl Display,
    ) -> &mut Self {
        self.family(name, kind, help).sample(&[], value)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label value inside double quotes.
pub fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Help text (no quotes; `"` stays as is).
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family(
            "podbgp_x_total",
            Kind::Counter,
            "Things,\nwith a \\ in help.",
        )
        .sample(&[("peer", "10.0.0.2")], 3u64)
        .sample(&[("peer", "a\"b\\c\nd"), ("family", "ipv4-unicast")], 4u64);
        e.single("podbgp_up", Kind::Gauge, "Up.", 1);
        assert_eq!(
            e.finish(),
            "# HELP podbgp_x_total Things,\\nwith a \\\\ in help.\n\
             # TYPE podbgp_x_total counter\n\
             podbgp_x_total{peer=\"10.0.0.2\"} 3\n\
             podbgp_x_total{peer=\"a\\\"b\\\\c\\nd\",family=\"ipv4-unicast\"} 4\n\
             # HELP podbgp_up Up.\n\
             # TYPE podbgp_up gauge\n\
             podbgp_up 1\n"
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("podbgp_sessions"));
        assert!(valid_name("a:b_c9"));
        assert!(!valid_name("9a"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }
}
