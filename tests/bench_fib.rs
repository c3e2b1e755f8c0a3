//! `podbgp bench fib` end to end, as the built binary (root required; skipped otherwise).
//!
//! No timing is asserted: only that the scenario exits 0, prints one well-formed JSON line per
//! measurement and a table, and leaves no namespace behind, also when it is interrupted.
//! The benchmark verifies the route counts itself (exactly N after each install, none after
//! each delete) and exits non-zero otherwise.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Why this machine cannot run the benchmark, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (the benchmark creates a network namespace)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no working `ip` (install iproute2)".into()),
    }
}

/// Whether the namespace `name` exists (`ip netns list`).
fn netns_exists(name: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn bench_fib_reports_every_measurement() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping bench_fib_reports_every_measurement: {why}");
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_podbgp"))
        .args(["bench", "fib", "--routes", "2000", "--runs", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start podbgp bench fib");
    let ns = format!("pbfib{}", child.id());
    let out = child.wait_with_output().expect("wait for podbgp bench fib");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "podbgp bench fib failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );

    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "one line per writer and operation:\n{stdout}"
    );
    let mut seen = BTreeSet::new();
    for v in &lines {
        assert_eq!(v["scenario"], "fib", "{v}");
        assert_eq!(v["routes"], 2000, "{v}");
        assert_eq!(v["run"], 1, "{v}");
        let device = v["device"].as_str().expect("device");
        let op = v["op"].as_str().expect("op");
        assert!(["podbgp", "ip-batch"].contains(&device), "{v}");
        assert!(["install", "delete"].contains(&op), "{v}");
        let wall = v["wall_s"].as_f64().expect("wall_s");
        assert!(wall.is_finite() && wall >= 0.0, "{v}");
        assert!(v["routes_per_s"].as_u64().is_some(), "{v}");
        assert!(
            seen.insert((device.to_string(), op.to_string())),
            "duplicate: {v}"
        );
    }
    assert_eq!(seen.len(), 4);
    assert!(
        stdout.contains("podbgp/ip-batch"),
        "no table on stdout:\n{stdout}"
    );
    assert!(!netns_exists(&ns), "namespace {ns} left behind");
}

#[test]
fn bench_fib_cleans_up_when_interrupted() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping bench_fib_cleans_up_when_interrupted: {why}");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_podbgp"))
        .args([
            "bench", "fib", "--routes", "100000", "--runs", "20", "--batch", "100",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start podbgp bench fib");
    let pid = child.id();
    let ns = format!("pbfib{pid}");
    // Every stderr line goes to the test through a channel, so waiting has a deadline.
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let measuring = line.contains("measuring");
                log.push(line);
                if measuring {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no measurement started within 60 s:\n{}", log.join("\n"));
            }
        }
    }
    assert!(netns_exists(&ns), "namespace {ns} missing while measuring");
    // SAFETY: kill by the PID of our own unreaped child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGINT);
    }
    let stop_deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for podbgp bench fib") {
            break st;
        }
        if std::time::Instant::now() >= stop_deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("podbgp bench fib still running 30 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    log.extend(rx.try_iter());
    let log = log.join("\n");
    assert!(!status.success(), "interrupted run exited 0:\n{log}");
    assert!(
        log.contains("interrupted"),
        "no 'interrupted' on stderr:\n{log}"
    );
    assert!(!netns_exists(&ns), "namespace {ns} left behind:\n{log}");
}
