//! `podbgp bench rr-fanin` against every device it knows (podbgp, BIRD 2, FRR's bgpd, GoBGP),
//! interleaved in one run, as the built binary.
//!
//! No timing is asserted: only that every device converges (each reflects every injector's
//! prefixes to every other client, which the benchmark waits for before it prints a run's JSON
//! line) with no withdrawn, unexpected, wrong-attribute or duplicate prefix at the monitors.
//! Outside CI a device whose program is missing is skipped with the reason printed; with `CI`
//! set every device is required (.ci/test.sh installs frr, bird2 and gobgpd).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// An executable named `name` on `PATH`, else at `fallback`.
fn find(name: &str, fallback: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from(fallback)).filter(|p| p.is_file()))
}

/// The devices this machine can run, and why the others are left out.
fn devices() -> (Vec<&'static str>, Vec<String>) {
    let others: [(&str, Option<PathBuf>, &str); 3] = [
        ("bird", find("bird", "/usr/sbin/bird"), "bird2"),
        (
            "frr",
            Some(PathBuf::from("/usr/lib/frr/bgpd")).filter(|p| Path::new(p).is_file()),
            "frr",
        ),
        ("gobgp", find("gobgpd", "/usr/bin/gobgpd"), "gobgpd"),
    ];
    let mut run = vec!["podbgp"];
    let mut skipped = Vec::new();
    for (name, program, package) in others {
        match program {
            Some(_) => run.push(name),
            None => skipped.push(format!(
                "{name}: program not found (apt-get install {package}, or run bash .ci/test.sh)"
            )),
        }
    }
    (run, skipped)
}

#[test]
fn rr_fanin_converges_on_every_device() {
    rr_fanin(2, 2000, 2);
}

/// Calico-shaped: few injectors, many clients (200, as `--injectors 4 --prefixes 2500
/// --monitors 200` in the README, with fewer prefixes to stay quick on GoBGP).
#[test]
fn rr_fanin_reaches_two_hundred_clients_on_every_device() {
    rr_fanin(4, 50, 200);
}

fn rr_fanin(injectors: u64, prefixes: u64, monitors: u64) {
    let (run, skipped) = devices();
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    if !skipped.is_empty() {
        assert!(
            !ci,
            "CI is set, so every device is required: {}",
            skipped.join("; ")
        );
        for why in &skipped {
            eprintln!("SKIPPED device {why}");
        }
    }
    let list = run.join(",");
    let out = Command::new(env!("CARGO_BIN_EXE_podbgp"))
        .args([
            "bench",
            "rr-fanin",
            "--device",
            &list,
            "--injectors",
            &injectors.to_string(),
            "--prefixes",
            &prefixes.to_string(),
            "--monitors",
            &monitors.to_string(),
            "--runs",
            "1",
            "--timeout",
            "60",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("start podbgp bench rr-fanin");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "podbgp bench rr-fanin --device {list} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    let seen: Vec<&str> = lines
        .iter()
        .map(|v| v["device"].as_str().expect("device"))
        .collect();
    assert_eq!(
        seen, run,
        "one JSON line per device, in --device order:\n{stdout}"
    );
    for v in &lines {
        assert_eq!(v["scenario"], "rr-fanin", "{v}");
        assert_eq!(v["run"], 1, "{v}");
        assert_eq!(v["injectors"], injectors, "{v}");
        assert_eq!(v["prefixes"], prefixes, "{v}");
        assert_eq!(v["monitors"], monitors, "{v}");
        assert_eq!(v["anomalies"], 0, "{v}\n--- stderr ---\n{stderr}");
        let wall = v["wall_s"].as_f64().expect("wall_s");
        let converged = v["converged_s"].as_f64().expect("converged_s");
        assert!(wall.is_finite() && wall > 0.0, "{v}");
        assert!(converged >= wall, "{v}");
        assert!(v["prefixes_per_s"].as_u64().is_some(), "{v}");
        assert!(v["cpu_s"].as_f64().is_some(), "device CPU missing: {v}");
        assert!(
            v["peak_rss_kib"].as_u64().is_some_and(|k| k > 0),
            "device peak RSS missing: {v}"
        );
    }
}
