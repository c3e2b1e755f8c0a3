//! What every scenario prints: one JSON line per measured run, then a table of the runs, the
//! medians per device, and podbgp's medians over the best other device's.
//!
//! Every JSON line starts with the same keys, in this order: `scenario`, `device`, the
//! scenario's sizes (e.g. `injectors`, `prefixes`, `monitors`), `wall_s`, `cpu_s` (device CPU
//! seconds over the measured interval, `null` without a device), `peak_rss_kib` (the device's
//! VmHWM), `run`; then the scenario's own fields.

use serde_json::Value;

/// One number of a run shown in the table (and in the JSON line under `key`).
#[derive(Clone, Debug)]
pub struct Metric {
    /// JSON key, also the column head.
    pub key: &'static str,
    pub value: Option<f64>,
    /// Digits after the point in the table.
    pub prec: usize,
    /// Ratio podbgp / best other in the summary (false for throughput-like or harness values).
    pub ratio: Ratio,
}

/// How the summary compares a metric across devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ratio {
    /// Lower is better (time, CPU, memory): podbgp / the lowest other.
    Lower,
    /// Higher is better (throughput): podbgp / the highest other.
    Higher,
    /// Not compared.
    None,
}

impl Metric {
    pub fn lower(key: &'static str, value: Option<f64>, prec: usize) -> Metric {
        Metric {
            key,
            value,
            prec,
            ratio: Ratio::Lower,
        }
    }

    pub fn higher(key: &'static str, value: Option<f64>, prec: usize) -> Metric {
        Metric {
            key,
            value,
            prec,
            ratio: Ratio::Higher,
        }
    }

    pub fn info(key: &'static str, value: Option<f64>, prec: usize) -> Metric {
        Metric {
            key,
            value,
            prec,
            ratio: Ratio::None,
        }
    }
}

/// One measured run of one device.
#[derive(Clone, Debug)]
pub struct Record {
    pub scenario: &'static str,
    pub device: String,
    pub run: u32,
    /// The scenario's sizes, in JSON order.
    pub sizes: Vec<(&'static str, u64)>,
    pub wall_s: f64,
    pub cpu_s: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    /// Table columns after wall_s, cpu_s and peak RSS (also JSON fields, after `run`).
    pub metrics: Vec<Metric>,
    /// JSON-only fields, last.
    pub extra: Vec<(&'static str, Value)>,
    /// The device's command line (printed once per device under the table).
    pub command: String,
}

fn round(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

impl Record {
    /// The JSON line: keys in a fixed order (see the module documentation).
    pub fn json(&self) -> String {
        use serde_json::json;
        let mut fields: Vec<(&str, Value)> = vec![
            ("scenario", json!(self.scenario)),
            ("device", json!(self.device)),
        ];
        fields.extend(self.sizes.iter().map(|(k, v)| (*k, json!(v))));
        fields.push(("wall_s", json!(round(self.wall_s, 6))));
        fields.push(("cpu_s", json!(self.cpu_s.map(|c| round(c, 3)))));
        fields.push(("peak_rss_kib", json!(self.peak_rss_kib)));
        fields.push(("run", json!(self.run)));
        for m in &self.metrics {
            // Whole numbers (precision 0) as JSON integers.
            let v = match m.prec {
                0 => json!(m.value.map(|v| v.round().max(0.0) as u64)),
                p => json!(m.value.map(|v| round(v, (p as i32 + 3).min(6)))),
            };
            fields.push((m.key, v));
        }
        fields.extend(self.extra.iter().map(|(k, v)| (*k, v.clone())));
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Every column of the table: wall_s, cpu_s, peak_rss_MiB, then the metrics.
    fn columns(&self) -> Vec<Metric> {
        let mut v = vec![
            Metric::lower("wall_s", Some(self.wall_s), 4),
            Metric::lower("cpu_s", self.cpu_s, 2),
            Metric::lower(
                "peak_rss_MiB",
                self.peak_rss_kib.map(|k| k as f64 / 1024.0),
                1,
            ),
        ];
        v.extend(self.metrics.iter().cloned());
        v
    }
}

/// Median of `v` (mean of the middle two for an even count); `None` when empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The `q` quantile (0..=1) of weighted samples `(value, weight)`: the smallest value whose
/// cumulative weight reaches `q` of the total. `None` when there is no weight.
pub fn quantile(samples: &mut [(f64, u64)], q: f64) -> Option<f64> {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = samples.iter().map(|s| s.1).sum();
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil().max(1.0) as u64;
    let mut acc = 0;
    for &(v, w) in samples.iter() {
        acc += w;
        if acc >= want {
            return Some(v);
        }
    }
    samples.last().map(|s| s.0)
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cell(x: Option<f64>, prec: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.prec$}"))
}

/// Prints the table: `title`, a row per run, the commands, `notes`, then (with several runs or
/// devices) medians per device and the ratios podbgp / best other.
pub fn print_table(title: &str, records: &[Record], notes: &[String]) {
    let Some(first) = records.first() else {
        return;
    };
    let heads: Vec<&'static str> = first.columns().iter().map(|m| m.key).collect();
    let width = |k: &str| k.len().max(9);
    println!();
    println!("{title}");
    let mut head = format!("{:<4} {:<12}", "run", "device");
    for k in &heads {
        head += &format!(" {:>w$}", k, w = width(k));
    }
    println!("{head}");
    for r in records {
        let mut row = format!("{:<4} {:<12}", r.run, r.device);
        for m in r.columns() {
            row += &format!(" {:>w$}", cell(m.value, m.prec), w = width(m.key));
        }
        println!("{row}");
    }
    let mut names: Vec<&str> = Vec::new();
    for r in records {
        if !names.contains(&r.device.as_str()) {
            names.push(&r.device);
            if !r.command.is_empty() {
                println!("{}: {}", r.device, r.command);
            }
        }
    }
    for n in notes {
        println!("{n}");
    }
    if names.len() > 1 || records.len() > 1 {
        print_medians(records, &names);
    }
}

/// Per-device medians of every column, then podbgp's median over the best other median.
fn print_medians(records: &[Record], names: &[&str]) {
    let Some(first) = records.first() else {
        return;
    };
    let cols = first.columns();
    let width = |k: &str| k.len().max(9);
    let meds: Vec<(&str, usize, Vec<Option<f64>>)> = names
        .iter()
        .map(|name| {
            let rs: Vec<&Record> = records.iter().filter(|r| r.device == *name).collect();
            let m = (0..cols.len())
                .map(|c| median(rs.iter().filter_map(|r| r.columns()[c].value).collect()))
                .collect();
            (*name, rs.len(), m)
        })
        .collect();
    println!();
    println!("medians per device:");
    let mut head = format!("{:<12} {:>4}", "device", "runs");
    for m in &cols {
        head += &format!(" {:>w$}", m.key, w = width(m.key));
    }
    println!("{head}");
    for (name, runs, m) in &meds {
        let mut row = format!("{name:<12} {runs:>4}");
        for (c, col) in cols.iter().enumerate() {
            row += &format!(" {:>w$}", cell(m[c], col.prec), w = width(col.key));
        }
        println!("{row}");
    }
    let Some((_, _, ours)) = meds.iter().find(|(n, _, _)| *n == "podbgp") else {
        return;
    };
    if meds.len() < 2 {
        return;
    }
    let mut parts = Vec::new();
    for (c, col) in cols.iter().enumerate() {
        let others = meds
            .iter()
            .filter(|(n, _, _)| *n != "podbgp")
            .filter_map(|(n, _, m)| m[c].map(|v| (*n, v)));
        let best = match col.ratio {
            Ratio::Lower => others.min_by(|a, b| a.1.total_cmp(&b.1)),
            Ratio::Higher => others.max_by(|a, b| a.1.total_cmp(&b.1)),
            Ratio::None => continue,
        };
        let s = match (ours[c], best) {
            (Some(a), Some((n, b))) if b > 0.0 => format!("{} {:.2}x ({n})", col.key, a / b),
            _ => format!("{} -", col.key),
        };
        parts.push(s);
    }
    println!(
        "podbgp / best other (lower is better for times and sizes, higher for rates): {}",
        parts.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn weighted_quantiles() {
        let mut s = vec![(5.0, 1), (1.0, 98), (10.0, 1)];
        assert_eq!(quantile(&mut s, 0.5), Some(1.0));
        assert_eq!(quantile(&mut s, 0.98), Some(1.0));
        assert_eq!(quantile(&mut s, 0.99), Some(5.0));
        assert_eq!(quantile(&mut s, 1.0), Some(10.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn json_keys_in_order() {
        let r = Record {
            scenario: "churn",
            device: "podbgp".into(),
            run: 2,
            sizes: vec![("injectors", 4), ("prefixes", 10)],
            wall_s: 1.5,
            cpu_s: Some(0.25),
            peak_rss_kib: Some(1000),
            metrics: vec![Metric::lower("p99_ms", Some(3.25), 2)],
            extra: vec![("anomalies", serde_json::json!(0))],
            command: String::new(),
        };
        assert_eq!(
            r.json(),
            r#"{"scenario":"churn","device":"podbgp","injectors":4,"prefixes":10,"wall_s":1.5,"cpu_s":0.25,"peak_rss_kib":1000,"run":2,"p99_ms":3.25,"anomalies":0}"#
        );
    }
}
