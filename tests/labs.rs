//! Every containerlab topology in `containerlab/` runs through `podbgp lab test` in network
//! namespaces (issue 7), plus the failure cases: a reflector killed in `route-reflectors`, a
//! ToR killed in `racks`, and `podbgp lab down` after an interrupted `up`.
//!
//! Each test keeps the lab state in its own temporary `PODBGP_LAB_DIR`. The labs' namespaces
//! are named `pl-<lab>-<node>`, one lab per test, so the tests can run in parallel.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

struct LabRun {
    file: PathBuf,
    state: PathBuf,
    name: &'static str,
}

impl LabRun {
    fn new(file: &str, name: &'static str) -> LabRun {
        let state = std::env::temp_dir().join(format!("podbgp-labs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&state).unwrap();
        LabRun {
            file: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("containerlab")
                .join(file),
            state,
            name,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(podbgp_bin());
        c.arg("lab")
            .args(args)
            .env("PODBGP_LAB_DIR", &self.state)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        let file = self.file.to_str().unwrap().to_string();
        full.insert(1, &file);
        let out = self.cmd(&full).output().expect("running podbgp lab");
        eprintln!(
            "$ podbgp lab {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podbgp lab {args:?} failed: {:?}",
            out.status
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ns(&self, node: &str) -> String {
        format!("pl-{}-{node}", self.name)
    }

    /// Nothing of the lab is left: no namespace, no process in one, no state.
    fn assert_gone(&self) {
        let list = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        let prefix = format!("pl-{}-", self.name);
        let left: Vec<&str> = list.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        assert!(
            !self.state.join(self.name).exists(),
            "state directory left behind"
        );
    }
}

impl Drop for LabRun {
    fn drop(&mut self) {
        let file = self.file.to_str().unwrap().to_string();
        let _ = self.cmd(&["down", &file]).output();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// (prefix, next hops) of the `proto bird` IPv4 routes in a namespace.
fn bird_routes(ns: &str) -> Vec<(String, Vec<String>)> {
    let out = Command::new("ip")
        .args(["-n", ns, "-4", "-j", "route", "show", "proto", "bird"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let hops = match r["nexthops"].as_array() {
                Some(h) => h
                    .iter()
                    .map(|h| h["gateway"].as_str().unwrap_or("").to_string())
                    .collect(),
                None => r["gateway"]
                    .as_str()
                    .map(|g| vec![g.to_string()])
                    .unwrap_or_default(),
            };
            (r["dst"].as_str().unwrap_or("").to_string(), hops)
        })
        .collect()
}

fn hops_of(ns: &str, dst: &str) -> Option<Vec<String>> {
    bird_routes(ns)
        .into_iter()
        .find(|(d, _)| d == dst)
        .map(|(_, mut h)| {
            h.sort();
            h
        })
}

#[test]
fn mesh_lab_passes() {
    if !require_root_and_frr() {
        return;
    }
    let lab = LabRun::new("mesh.clab.yml", "mesh");
    let out = lab.ok(&["test", "--show"]);
    assert!(out.contains("13 of 13 checks passed"), "{out}");
    assert!(out.contains("PEER ADDRESS"), "status tables shown: {out}");
    lab.assert_gone();
}

#[test]
fn route_reflector_lab_survives_losing_one_reflector() {
    if !require_root_and_frr() {
        return;
    }
    let lab = LabRun::new("route-reflectors.clab.yml", "rr");
    let out = lab.ok(&["test", "--keep"]);
    assert!(!out.contains("FAIL"), "{out}");
    let before: Vec<_> = ["node-1", "node-2", "node-3", "node-4"]
        .iter()
        .map(|n| bird_routes(&lab.ns(n)))
        .collect();
    lab.ok(&["stop", "rr-1"]);
    // The nodes see rr-1 go (Cease) and drop its paths; rr-2's stay. Poll until every node
    // has seen the session drop, then the routes must be what they were.
    poll_until(Duration::from_secs(20), "nodes notice rr-1 is gone", || {
        let st = lab.run(&["status", "--json"]);
        let v: Value = serde_json::from_slice(&st.stdout).map_err(|e| e.to_string())?;
        let ok = v.as_array().unwrap().iter().all(|r| {
            !r["node"].as_str().unwrap().starts_with("node-")
                || r["sessions"].as_str() == Some("1/2 established")
        });
        if ok { Ok(()) } else { Err(format!("{v}")) }
    });
    for (i, n) in ["node-1", "node-2", "node-3", "node-4"].iter().enumerate() {
        let now = bird_routes(&lab.ns(n));
        for r in &before[i] {
            assert!(now.contains(r), "{n}: {r:?} lost with rr-1; now {now:?}");
        }
    }
    let out = lab.ok(&["test", "--timeout", "20"]);
    assert!(!out.contains("FAIL"), "{out}");
    lab.assert_gone();
}

#[test]
fn racks_lab_keeps_the_remaining_path_when_a_tor_dies() {
    if !require_root_and_frr() {
        return;
    }
    let lab = LabRun::new("racks.clab.yml", "racks");
    let out = lab.ok(&["test", "--keep"]);
    assert!(!out.contains("FAIL"), "{out}");
    let ns = lab.ns("r1-node-1");
    for remote in ["198.19.21.0/26", "198.19.22.0/26"] {
        assert_eq!(
            hops_of(&ns, remote),
            Some(vec!["198.18.1.1".to_string(), "198.18.1.2".to_string()]),
            "{remote}: one multipath route through both ToRs"
        );
    }
    lab.ok(&["stop", "r1-tor-a"]);
    poll_until(
        Duration::from_secs(20),
        "r1-node-1's multipath route keeps only tor-b",
        || {
            let h = hops_of(&ns, "198.19.21.0/26");
            if h == Some(vec!["198.18.1.2".to_string()]) {
                Ok(())
            } else {
                Err(format!("{h:?}"))
            }
        },
    );
    assert_eq!(
        hops_of(&ns, "198.19.22.0/26"),
        Some(vec!["198.18.1.2".to_string()])
    );
    let out = lab.ok(&["test", "--timeout", "20"]);
    assert!(!out.contains("FAIL"), "{out}");
    lab.assert_gone();
}

#[test]
fn down_cleans_up_after_an_interrupted_up() {
    if !require_root_and_frr() {
        return;
    }
    // A lab of its own name (a copy of mesh), so it never meets the mesh test's namespaces.
    let dir = std::env::temp_dir().join(format!("podbgp-labs-copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("containerlab");
    std::fs::create_dir_all(dir.join("containerlab/mesh/tor")).unwrap();
    std::fs::create_dir_all(dir.join("topologies")).unwrap();
    let text = std::fs::read_to_string(src.join("mesh.clab.yml"))
        .unwrap()
        .replace("name: mesh", "name: intr");
    std::fs::write(dir.join("containerlab/intr.clab.yml"), text).unwrap();
    for f in ["mesh/tor/frr.conf", "mesh/daemons"] {
        std::fs::copy(src.join(f), dir.join("containerlab").join(f)).unwrap();
    }
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/mesh.yaml"),
        dir.join("topologies/mesh.yaml"),
    )
    .unwrap();
    let mut lab = LabRun::new("mesh.clab.yml", "intr");
    lab.file = dir.join("containerlab/intr.clab.yml");

    // Kill `lab up` with SIGKILL (no chance to clean up) once it has started daemons.
    let file = lab.file.to_str().unwrap().to_string();
    let mut up = lab.cmd(&["up", &file]).spawn().unwrap();
    let state = lab.state.join("intr/state.json");
    poll_until(Duration::from_secs(30), "lab up started a daemon", || {
        let t = std::fs::read_to_string(&state).map_err(|e| e.to_string())?;
        if t.contains("\"pid\"") {
            Ok(())
        } else {
            Err(t)
        }
    });
    up.kill().unwrap();
    let _ = up.wait();
    let pids: Vec<u32> = {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        v["procs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap() as u32)
            .collect()
    };
    assert!(!pids.is_empty());
    lab.ok(&["down"]);
    lab.assert_gone();
    for pid in pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false);
        assert!(!alive, "process {pid} left running");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
