//! `podbgp bench` scenarios (rr-fanin, churn, mesh, memory) against every device they know
//! (podbgp, BIRD 2, FRR's bgpd, GoBGP), interleaved in one run, as the built binary, at small
//! sizes.
//!
//! No timing is asserted: only that every device converges (the benchmark prints a run's JSON
//! line only once it did) with no anomaly (withdrawn, unexpected, wrong-attribute or
//! duplicate prefixes; for mesh, a node's route reflected to another node), and that the JSON
//! fields every scenario shares are sane. Outside CI a device whose program is missing is
//! skipped with the reason printed; with `CI` set every device is required (.ci/test.sh
//! installs frr, bird2 and gobgpd). Each benchmark stops its devices by PID when it ends, fails
//! or is killed (PR_SET_PDEATHSIG), and removes its scratch directories.

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

/// The devices this machine can run (comma-separated for `--device`), after printing why the
/// others are left out. `tools`: the scenario also needs birdc and gobgp (it reads the
/// device's table; FRR's is read on bgpd's own socket).
fn devices(tools: bool) -> String {
    let bird =
        find("bird", "/usr/sbin/bird").filter(|_| !tools || Path::new("/usr/sbin/birdc").is_file());
    let frr = Some(PathBuf::from("/usr/lib/frr/bgpd")).filter(|p| p.is_file());
    let gobgp = find("gobgpd", "/usr/bin/gobgpd")
        .filter(|_| !tools || find("gobgp", "/usr/bin/gobgp").is_some());
    let others: [(&str, Option<PathBuf>, &str); 3] = [
        ("bird", bird, "bird2"),
        ("frr", frr, "frr"),
        ("gobgp", gobgp, "gobgpd"),
    ];
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    let mut run = vec!["podbgp"];
    for (name, program, package) in others {
        match program {
            Some(_) => run.push(name),
            None => {
                let why = format!(
                    "{name}: program not found (apt-get install {package}, or run bash .ci/test.sh)"
                );
                assert!(!ci, "CI is set, so every device is required: {why}");
                eprintln!("SKIPPED device {why}");
            }
        }
    }
    run.join(",")
}

/// Runs `podbgp bench <args> --device <list> --runs 1 --json` and returns its JSON lines,
/// checking the keys every scenario shares: one line per device in `--device` order, the
/// scenario's name, sizes as given, wall time, device CPU, peak RSS, run 1, no anomaly.
fn bench(scenario: &str, args: &[&str], sizes: &[(&str, u64)], tools: bool) -> Vec<Value> {
    let list = devices(tools);
    let out = Command::new(env!("CARGO_BIN_EXE_podbgp"))
        .args(["bench", scenario])
        .args(args)
        .args([
            "--device",
            &list,
            "--runs",
            "1",
            "--timeout",
            "60",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("start podbgp bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "podbgp bench {scenario} {args:?} --device {list} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let raw: Vec<&str> = stdout.lines().collect();
    let lines: Vec<Value> = raw
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    // The shared keys lead every line, in this order (serde_json's map sorts them, so the
    // order is read from the text).
    let mut lead = vec!["scenario", "device"];
    lead.extend(sizes.iter().map(|(k, _)| *k));
    lead.extend(["wall_s", "cpu_s", "peak_rss_kib", "run"]);
    for l in &raw {
        let at: Vec<usize> = lead
            .iter()
            .map(|k| {
                l.find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("no {k}: {l}"))
            })
            .collect();
        assert_eq!(at[0], 1, "scenario first: {l}");
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "key order {lead:?}: {l}"
        );
        let before_run = &l[..at[lead.len() - 1]];
        assert_eq!(
            before_run.matches("\":").count(),
            lead.len() - 1,
            "no other key before run: {l}"
        );
    }
    let seen: Vec<&str> = lines
        .iter()
        .map(|v| v["device"].as_str().expect("device"))
        .collect();
    assert_eq!(
        seen,
        list.split(',').collect::<Vec<_>>(),
        "one JSON line per device, in --device order:\n{stdout}"
    );
    for v in &lines {
        assert_eq!(v["scenario"], scenario, "{v}");
        assert_eq!(v["run"], 1, "{v}");
        for (k, n) in sizes {
            assert_eq!(v[*k], *n, "{k}: {v}");
        }
        assert_eq!(v["anomalies"], 0, "{v}\n--- stderr ---\n{stderr}");
        let wall = v["wall_s"].as_f64().expect("wall_s");
        assert!(wall.is_finite() && wall > 0.0, "{v}");
        assert!(
            v["cpu_s"].as_f64().is_some_and(|c| c >= 0.0),
            "device CPU missing: {v}"
        );
        assert!(
            v["peak_rss_kib"].as_u64().is_some_and(|k| k > 0),
            "device peak RSS missing: {v}"
        );
    }
    lines
}

#[test]
fn rr_fanin_converges_on_every_device() {
    let lines = bench(
        "rr-fanin",
        &["--injectors", "2", "--prefixes", "2000", "--monitors", "2"],
        &[("injectors", 2), ("prefixes", 2000), ("monitors", 2)],
        false,
    );
    for v in &lines {
        let wall = v["wall_s"].as_f64().expect("wall_s");
        let converged = v["converged_s"].as_f64().expect("converged_s");
        assert!(converged >= wall, "{v}");
        assert!(v["prefixes_per_s"].as_u64().is_some(), "{v}");
    }
}

/// Calico-shaped: few injectors, many clients (200, as `--injectors 4 --prefixes 2500
/// --monitors 200` in the README, with fewer prefixes to stay quick on GoBGP).
#[test]
fn rr_fanin_reaches_two_hundred_clients_on_every_device() {
    bench(
        "rr-fanin",
        &["--injectors", "4", "--prefixes", "50", "--monitors", "200"],
        &[("injectors", 4), ("prefixes", 50), ("monitors", 200)],
        false,
    );
}

#[test]
fn churn_waves_propagate_on_every_device() {
    let lines = bench(
        "churn",
        &[
            "--injectors",
            "2",
            "--prefixes",
            "1000",
            "--monitors",
            "2",
            "--waves",
            "3",
            "--wave-prefixes",
            "100",
        ],
        &[
            ("injectors", 2),
            ("prefixes", 1000),
            ("monitors", 2),
            ("waves", 3),
            ("wave_prefixes", 100),
        ],
        false,
    );
    for v in &lines {
        let p50 = v["p50_ms"].as_f64().expect("p50_ms");
        let p99 = v["p99_ms"].as_f64().expect("p99_ms");
        let max = v["max_ms"].as_f64().expect("max_ms");
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{v}");
        assert!(v["withdraw_p99_ms"].as_f64().is_some(), "{v}");
        assert!(v["announce_p99_ms"].as_f64().is_some(), "{v}");
        assert!(v["load_wall_s"].as_f64().is_some_and(|w| w > 0.0), "{v}");
    }
}

#[test]
fn mesh_device_learns_every_block_and_reflects_nothing() {
    let lines = bench(
        "mesh",
        &["--nodes", "20", "--blocks", "8", "--settle-ms", "500"],
        &[("nodes", 20), ("blocks", 8)],
        true,
    );
    for v in &lines {
        // The device's own 8 blocks before the clock, all 21 x 8 after.
        assert_eq!(v["table_before"], 8, "{v}");
        assert_eq!(v["table_after"], 21 * 8, "{v}");
        assert!(v["routes_per_s"].as_u64().is_some(), "{v}");
        assert!(v["queries"].as_u64().is_some_and(|q| q >= 1), "{v}");
    }
}

#[test]
fn memory_is_measured_on_every_device() {
    let lines = bench(
        "memory",
        &["--paths", "20000", "--peers", "10", "--settle-ms", "300"],
        &[("paths", 20000), ("peers", 10)],
        false,
    );
    for v in &lines {
        assert!(v["rss_per_path_b"].as_f64().is_some(), "{v}");
        assert!(v["rss_per_peer_kib"].as_f64().is_some(), "{v}");
        assert!(v["peers_rss_kib"].as_u64().is_some_and(|k| k > 0), "{v}");
        assert!(v["base_rss_kib"].as_u64().is_some_and(|k| k > 0), "{v}");
    }
}
