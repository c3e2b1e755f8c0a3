//! Operating a running node (issue 6): every CLI subcommand with `--json`, the metrics
//! endpoint and the HTTP probes, checked against the real state of an FRR peer.
//!
//! ```text
//!   tor 198.18.0.1 (FRR, AS 65001) ── lan ── node-1 198.18.0.11 (podbgp, AS 64512)
//!     announces 10.244.{1,2,3}.0/26              block 10.244.7.0/26 (blackholed, advertised)
//!     (pool 10.244.0.0/16) and 198.19.200.0/24   --metrics-listen 198.18.0.11:9179
//!     (outside every pool)
//! ```
//!
//! The node starts before FRR, so readiness is seen going from not-ready to ready as the
//! session establishes, and back when FRR's bgpd stops. On the way: status, peers, peer,
//! routes (loc-rib, adj-rib-in, adj-rib-out, fib), speaker, config and health with `--json`,
//! compared with `vtysh … json` and `ip -j route`; watch streams the events of a hard reset;
//! a soft reset is a ROUTE-REFRESH at FRR without a session reset; `/metrics` counters equal
//! the routes and messages exchanged; `/livez` and `/readyz` agree with `podbgp health`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::*;

const SETTLE: Duration = Duration::from_secs(30);
const NODE: &str = "198.18.0.11";
const TOR: &str = "198.18.0.1";
const METRICS: &str = "198.18.0.11:9179";
/// What FRR announces inside the pool (installed) and outside it (not installed).
const POOL_PREFIXES: [&str; 3] = ["10.244.1.0/26", "10.244.2.0/26", "10.244.3.0/26"];
const OUTSIDE: &str = "198.19.200.0/24";
/// node-1's block: originated, advertised to FRR, blackholed in the kernel.
const BLOCK: &str = "10.244.7.0/26";

const CLUSTER_YAML: &str = r#"apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.244.0.0/16, ipipMode: Never, vxlanMode: Never}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-1}
spec: {bgp: {ipv4Address: 198.18.0.11/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 198.18.0.1, asNumber: 65001}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node-1-10-244-7-0-26}
spec: {node: node-1, cidr: 10.244.7.0/26, state: confirmed, deleted: false}
"#;

fn tor_conf() -> String {
    let mut c = BgpdConfig::new(65001, TOR)
        .hostname("tor")
        .neighbor(NODE, 64512);
    for p in POOL_PREFIXES.iter().chain([&OUTSIDE]) {
        c = c.network(p);
    }
    c.render()
}

// ---------------------------------------------------------------------------------------
// The CLI, the HTTP endpoint and FRR, as data
// ---------------------------------------------------------------------------------------

/// `podbgp --api SOCK ARGS --json` whatever its exit code: (exit code, parsed output).
fn cli_any(pod: &Podbgp, args: &[&str]) -> Result<(i32, Value), String> {
    let out = Command::new(podbgp_bin())
        .arg("--api")
        .arg(&pod.api)
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running podbgp {args:?}: {e}"))?;
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "podbgp {args:?} --json (exit {code}): bad JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((code, v))
}

/// `podbgp health --ready|--live [--threshold N] --json`: (exit code, ok, reason).
fn health(pod: &Podbgp, args: &[&str]) -> Result<(i32, bool, String), String> {
    let mut argv = vec!["health"];
    argv.extend_from_slice(args);
    let (code, v) = cli_any(pod, &argv)?;
    let ok = v["ok"]
        .as_bool()
        .ok_or_else(|| format!("health: no ok: {v}"))?;
    let reason = v["reason"].as_str().unwrap_or_default().to_string();
    Ok((code, ok, reason))
}

/// One HTTP request to the node's metrics endpoint, from inside its namespace:
/// (status, body).
fn http(node: &Netns, method: &str, path: &str) -> Result<(u16, String), String> {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {METRICS}\r\n\r\n");
    node.in_netns(|| {
        let mut s = TcpStream::connect(METRICS).map_err(|e| format!("connect {METRICS}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)
            .map_err(|e| format!("{path}: read: {e}"))?;
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{path}: no end of head in {raw:?}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{path}: bad status line in {head:?}"))?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| format!("{path}: no Content-Length in {head:?}"))?;
        if method != "HEAD" && len != body.len() {
            return Err(format!(
                "{path}: Content-Length {len}, body {} bytes",
                body.len()
            ));
        }
        Ok((status, body.to_string()))
    })
}

/// The value of one series (`name{labels}` exactly as exposed) in a scrape.
fn series(text: &str, name: &str) -> Result<u64, String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .ok_or_else(|| format!("no series {name}"))?
        .parse()
        .map_err(|e| format!("{name}: {e}"))
}

/// `GET /metrics`, checked for well-formedness: every sample belongs to a family announced
/// by `# HELP` and `# TYPE` lines before it.
fn scrape(node: &Netns) -> Result<String, String> {
    let (status, text) = http(node, "GET", "/metrics")?;
    if status != 200 {
        return Err(format!("/metrics: {status} {text}"));
    }
    let (mut help, mut typed) = (BTreeSet::new(), BTreeSet::new());
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            help.insert(rest.split(' ').next().unwrap_or_default().to_string());
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or_default().to_string());
        } else {
            let name = l.split(['{', ' ']).next().unwrap_or_default();
            if !name.starts_with("podbgp_") || !help.contains(name) || !typed.contains(name) {
                return Err(format!("sample without HELP/TYPE or prefix: {l}"));
            }
        }
    }
    Ok(text)
}

/// The node's only peer, from `peers --json`.
fn tor_peer(pod: &Podbgp) -> Result<Value, String> {
    let peers = pod.peers()?;
    match peers.as_slice() {
        [p] if p["address"] == TOR => Ok(p.clone()),
        other => Err(format!("expected one peer {TOR}: {other:?}")),
    }
}

/// The `ipv4-unicast` counters of a peer object.
fn v4_counters(peer: &Value) -> Result<(u64, u64, u64), String> {
    let f = peer["families"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["family"] == "ipv4-unicast"))
        .ok_or_else(|| format!("no ipv4-unicast counters: {peer}"))?;
    let n = |k: &str| f[k].as_u64().ok_or_else(|| format!("no {k}: {f}"));
    Ok((n("received")?, n("accepted")?, n("advertised")?))
}

/// FRR's neighbor object for node-1.
fn frr_neighbor(tor: &Frr) -> Result<Value, String> {
    tor.neighbors()?
        .remove(NODE)
        .ok_or_else(|| format!("tor has no neighbor {NODE}"))
}

fn frr_stat(n: &Value, key: &str) -> Result<u64, String> {
    n["messageStats"][key]
        .as_u64()
        .ok_or_else(|| format!("no messageStats.{key}: {n}"))
}

/// Prefixes FRR announces to node-1 (`advertised-routes`) that node-1 can accept: FRR also
/// sends node-1's own block back (eBGP has no split horizon), which node-1 drops because its
/// AS_PATH holds node-1's AS (RFC 4271 §9.1.2).
fn frr_advertised(tor: &Frr) -> Result<BTreeSet<String>, String> {
    let v = tor.try_vtysh_json(&format!(
        "show bgp ipv4 unicast neighbors {NODE} advertised-routes json"
    ))?;
    let routes = v["advertisedRoutes"]
        .as_object()
        .ok_or_else(|| format!("no advertisedRoutes: {v}"))?;
    Ok(routes
        .iter()
        .filter(|(_, r)| {
            !r["path"]
                .as_str()
                .unwrap_or_default()
                .split(' ')
                .any(|asn| asn == "64512")
        })
        .map(|(p, _)| p.clone())
        .collect())
}

/// Prefixes FRR holds from node-1 (`routes`).
fn frr_received(tor: &Frr) -> Result<BTreeSet<String>, String> {
    let v = tor.try_vtysh_json(&format!(
        "show bgp ipv4 unicast neighbors {NODE} routes json"
    ))?;
    Ok(v["routes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default())
}

fn prefixes(routes: &[Value]) -> BTreeSet<String> {
    routes
        .iter()
        .filter_map(|r| r["prefix"].as_str().map(str::to_string))
        .collect()
}

/// `ip -j route show proto bird` destinations in the node.
fn kernel_routes(node: &Netns) -> BTreeSet<String> {
    node.routes_filtered(Afi::Ipv4, &["proto", "bird"])
        .into_iter()
        .map(|r| r.dst)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `podbgp watch --json` running in the background; its lines are collected. Killed on drop.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Watch {
    fn start(pod: &Podbgp) -> Watch {
        let mut child = Command::new(podbgp_bin())
            .arg("--api")
            .arg(&pod.api)
            .args(["watch", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning podbgp watch");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("watch printed bad JSON ({e}): {line}"));
                sink.lock().unwrap().push(v);
            }
        });
        Watch { child, lines }
    }

    fn events(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[test]
fn operate_a_node_against_frr() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("operate");
    let lan = lab.lan("lan");
    let node = lab.netns("node1");
    let tor_ns = lab.netns("tor");
    lan.attach(&node, "eth0", &[&format!("{NODE}/24")]);
    lan.attach(&tor_ns, "eth0", &[&format!("{TOR}/24")]);
    let store = lab.dir().join("cluster.yaml");
    std::fs::write(&store, CLUSTER_YAML).unwrap();
    let ds = format!("file:{}", store.display());
    let mut pod =
        Podbgp::start_datastore_with(&node, "node-1", &ds, &[], &["--metrics-listen", METRICS]);

    // --- Before the session: live, not ready ------------------------------------------
    let (code, ok, reason) = health(&pod, &["--live"]).unwrap();
    assert!(
        ok && code == 0 && reason.starts_with("podbgp is live"),
        "{reason}"
    );
    let (status, body) = http(&node, "GET", "/livez").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("podbgp is live (up "), "{body}");
    let not_ready = format!("podbgp is not ready: BGP not established with {TOR}");
    for threshold in [&["--threshold", "0"][..], &[]] {
        let mut args = vec!["--ready"];
        args.extend_from_slice(threshold);
        let (code, ok, reason) = health(&pod, &args).unwrap();
        assert_eq!((code, ok), (1, false), "{args:?}: {reason}");
        assert_eq!(reason, not_ready);
    }
    let (status, body) = http(&node, "GET", "/readyz?threshold=0").unwrap();
    assert_eq!((status, body.trim_end()), (503, not_ready.as_str()));
    let text = scrape(&node).unwrap();
    assert_eq!(
        series(&text, r#"podbgp_sessions{state="established"}"#),
        Ok(0)
    );
    assert_eq!(
        series(
            &text,
            &format!(r#"podbgp_peer_established{{peer="{TOR}"}}"#)
        ),
        Ok(0)
    );

    // --- FRR comes up: the session establishes, readiness follows --------------------
    let mut tor = Frr::new(&tor_ns, &tor_conf());
    tor.wait_established(&[NODE], SETTLE);
    poll_until(SETTLE, "health --ready --threshold 0", || {
        match health(&pod, &["--ready", "--threshold", "0"])? {
            (0, true, reason) => Ok(reason),
            other => Err(format!("{other:?}")),
        }
    });
    let (code, ok, reason) = health(&pod, &["--ready"]).unwrap();
    // Every peer is established: ready under both rules (start window or not).
    assert!(ok && code == 0, "default threshold: {reason}");
    assert_eq!(reason, "podbgp is ready: 1 of 1 BGP peers established");
    let (status, body) = http(&node, "GET", "/readyz?threshold=0").unwrap();
    assert_eq!((status, body.trim_end()), (200, reason.as_str()));
    let (status, _) = http(&node, "GET", "/readyz").unwrap();
    assert_eq!(status, 200);

    // --- Routes exchanged: counters against FRR ----------------------------------------
    let announced = poll_until(SETTLE, "podbgp received what FRR announces", || {
        let frr_out = frr_advertised(&tor)?;
        let frr_in = frr_received(&tor)?;
        let (received, accepted, advertised) = v4_counters(&tor_peer(&pod)?)?;
        let want = set(&[
            POOL_PREFIXES[0],
            POOL_PREFIXES[1],
            POOL_PREFIXES[2],
            OUTSIDE,
        ]);
        if frr_out != want || frr_in != set(&[BLOCK]) {
            return Err(format!("FRR sends {frr_out:?}, holds {frr_in:?}"));
        }
        if (received, accepted, advertised) != (want.len() as u64, want.len() as u64, 1) {
            return Err(format!(
                "podbgp received/accepted/advertised {received}/{accepted}/{advertised}"
            ));
        }
        Ok(frr_out)
    });
    // UPDATE and message counters equal FRR's, direction by direction (polled: a KEEPALIVE
    // may be in flight between the two reads).
    poll_until(SETTLE, "message counters agree with FRR's", || {
        let p = tor_peer(&pod)?;
        let n = frr_neighbor(&tor)?;
        let ours = |k: &str| p[k].as_u64().unwrap_or(u64::MAX);
        let pairs = [
            (
                "updates_received",
                ours("updates_received"),
                frr_stat(&n, "updatesSent")?,
            ),
            (
                "updates_sent",
                ours("updates_sent"),
                frr_stat(&n, "updatesRecv")?,
            ),
            (
                "messages_received",
                ours("messages_received"),
                frr_stat(&n, "totalSent")?,
            ),
            (
                "messages_sent",
                ours("messages_sent"),
                frr_stat(&n, "totalRecv")?,
            ),
        ];
        match pairs.iter().find(|(_, a, b)| a != b) {
            None => Ok(()),
            Some((k, a, b)) => Err(format!("{k}: podbgp {a}, FRR {b}")),
        }
    });

    // --- status, peers, peer --------------------------------------------------------------
    let status = pod.cli(&["status"]).unwrap();
    assert_json_subset(
        &json!({"process_running": true, "ipv6": [], "ipv4": [{
            "peer_address": TOR, "peer_type": "global", "state": "up",
            "info": "Established", "session_state": "established"}]}),
        &status,
    );
    assert_eq!(status["ipv4"].as_array().map(Vec::len), Some(1));
    let peer = tor_peer(&pod).unwrap();
    let n = frr_neighbor(&tor).unwrap();
    assert_json_subset(
        &json!({"address": TOR, "remote_as": 65001, "local_as": 64512, "peer_type": "global",
                "role": "ebgp", "state": "established", "info": "Established",
                "remote_router_id": TOR, "established_transitions": 1, "last_error": null}),
        &peer,
    );
    // Both ends agree on the session: state, the hold time in force, the router ids.
    assert_eq!(n["bgpState"], "Established");
    assert_eq!(n["remoteRouterId"], NODE);
    assert_eq!(
        peer["hold_time"].as_u64().map(|h| h * 1000),
        n["bgpTimerHoldTimeMsecs"].as_u64(),
        "hold time: podbgp {peer}, FRR {n}"
    );
    assert_eq!(n["connectionsEstablished"], 1);
    let one = pod.cli(&["peer", TOR]).unwrap();
    for k in [
        "address",
        "state",
        "remote_as",
        "peer_type",
        "families",
        "since_unix",
    ] {
        assert_eq!(one[k], peer[k], "peer {TOR} --json: {k}");
    }
    let out = Command::new(podbgp_bin())
        .arg("--api")
        .arg(&pod.api)
        .args(["peer", "198.18.0.99", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "unknown peer");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "podbgp: no such peer 198.18.0.99\n"
    );

    // --- routes, every table ----------------------------------------------------------
    let loc = pod.loc_rib().unwrap();
    let frr_table: BTreeSet<String> = tor.routes(Afi::Ipv4).unwrap().keys().cloned().collect();
    assert_eq!(
        prefixes(&loc),
        frr_table,
        "both Loc-RIBs hold the same prefixes"
    );
    for r in &loc {
        if r["prefix"] == BLOCK {
            assert_json_subset(&json!({"peer": null, "best": true, "kernel": null}), r);
        } else {
            assert_json_subset(
                &json!({"peer": TOR, "next_hops": [TOR], "as_path": [65001], "origin": "igp",
                        "best": true, "kernel": null}),
                r,
            );
        }
    }
    let adj_in = pod
        .array(&["routes", "--table", "adj-rib-in", "--peer", TOR])
        .unwrap();
    assert_eq!(
        prefixes(&adj_in),
        announced,
        "Adj-RIB-In = FRR's advertised-routes"
    );
    let adj_out = pod.adj_rib_out(TOR).unwrap();
    assert_eq!(
        prefixes(&adj_out),
        frr_received(&tor).unwrap(),
        "Adj-RIB-Out = what FRR holds from us"
    );
    // The next hop we send is the one FRR holds.
    let held = tor
        .try_vtysh_json(&format!(
            "show bgp ipv4 unicast neighbors {NODE} routes json"
        ))
        .unwrap();
    let frr_hop = &held["routes"][BLOCK][0]["nexthops"][0]["ip"];
    assert_json_subset(
        &json!([{"prefix": BLOCK, "next_hops": [frr_hop]}]),
        &json!(adj_out),
    );
    assert_eq!(held["routes"][BLOCK][0]["path"], "64512");
    let fib_want = set(&[POOL_PREFIXES[0], POOL_PREFIXES[1], POOL_PREFIXES[2], BLOCK]);
    let fib = poll_until(SETTLE, "the FIB table lists the installed routes", || {
        let fib = pod.array(&["routes", "--table", "fib"])?;
        let kernel = kernel_routes(&node);
        if prefixes(&fib) != fib_want || kernel != fib_want {
            return Err(format!("fib {:?}, kernel {kernel:?}", prefixes(&fib)));
        }
        Ok(fib)
    });
    for r in &fib {
        let (kind, hops) = if r["prefix"] == BLOCK {
            ("blackhole", json!([]))
        } else {
            (
                "unicast",
                json!([{"gateway": TOR, "device": null, "onlink": false}]),
            )
        };
        assert_json_subset(
            &json!({"peer": null, "origin": null, "stale": false,
                    "kernel": {"type": kind, "next_hops": hops}}),
            r,
        );
    }
    let one = pod
        .array(&["routes", "--table", "fib", "--prefix", POOL_PREFIXES[1]])
        .unwrap();
    assert_eq!(prefixes(&one), set(&[POOL_PREFIXES[1]]));
    let via = pod
        .array(&["routes", "--table", "fib", "--peer", TOR])
        .unwrap();
    assert_eq!(prefixes(&via), set(&POOL_PREFIXES));
    let outside = pod
        .array(&["routes", "--table", "fib", "--prefix", OUTSIDE])
        .unwrap();
    assert!(
        outside.is_empty(),
        "out-of-pool prefix in the FIB: {outside:?}"
    );

    // --- speaker, config --------------------------------------------------------------
    let speaker = pod.cli(&["speaker"]).unwrap();
    assert_json_subset(
        &json!({"local_as": 64512, "router_id": NODE, "listen_port": 179,
                "peers_configured": 1, "peers_established": 1, "loc_rib_prefixes": loc.len(),
                "fib": {"installed": 4, "failures": 0, "foreign": 0}}),
        &speaker,
    );
    let updates_in = speaker["updates_received"].as_u64().unwrap();
    assert_eq!(Some(updates_in), peer["updates_received"].as_u64());
    let config = pod.cli(&["config"]).unwrap();
    let yaml = config["yaml"].as_str().unwrap();
    for want in [TOR, "65001", "64512", BLOCK] {
        assert!(yaml.contains(want), "config lacks {want}:\n{yaml}");
    }

    // --- metrics: the same numbers ----------------------------------------------------
    let text = poll_until(SETTLE, "metrics agree with the CLI and FRR", || {
        let text = scrape(&node)?;
        let p = tor_peer(&pod)?;
        let fam = format!(r#"{{peer="{TOR}",family="ipv4-unicast"}}"#);
        let per = format!(r#"{{peer="{TOR}"}}"#);
        let checks = [
            (r#"podbgp_sessions{state="established"}"#.to_string(), 1),
            (r#"podbgp_sessions{state="active"}"#.to_string(), 0),
            (format!("podbgp_peer_established{per}"), 1),
            (
                format!("podbgp_peer_prefixes_received{fam}"),
                announced.len() as u64,
            ),
            (
                format!("podbgp_peer_prefixes_accepted{fam}"),
                announced.len() as u64,
            ),
            (
                format!("podbgp_peer_prefixes_advertised{fam}"),
                frr_received(&tor)?.len() as u64,
            ),
            (
                format!("podbgp_peer_updates_received_total{per}"),
                frr_stat(&frr_neighbor(&tor)?, "updatesSent")?,
            ),
            (
                format!("podbgp_peer_updates_sent_total{per}"),
                frr_stat(&frr_neighbor(&tor)?, "updatesRecv")?,
            ),
            (
                format!("podbgp_peer_messages_received_total{per}"),
                p["messages_received"].as_u64().unwrap_or(0),
            ),
            (format!("podbgp_peer_established_transitions_total{per}"), 1),
            ("podbgp_loc_rib_prefixes".to_string(), loc.len() as u64),
            ("podbgp_updates_received_total".to_string(), updates_in),
            ("podbgp_fib_routes".to_string(), 4),
            ("podbgp_fib_failures_total".to_string(), 0),
            ("podbgp_datastore_errors_total".to_string(), 0),
        ];
        for (name, want) in checks {
            let got = series(&text, &name)?;
            if got != want {
                return Err(format!("{name} = {got}, want {want}"));
            }
        }
        Ok(text)
    });
    let adds = series(&text, r#"podbgp_fib_operations_total{op="add"}"#).unwrap();
    assert!(adds >= 4, "fib adds {adds}");
    assert!(series(&text, "podbgp_decision_runs_total").unwrap() > 0);
    assert!(series(&text, "podbgp_datastore_events_total").unwrap() >= 1);
    assert!(
        text.contains(&format!(
            r#"podbgp_info{{version="{}",router_id="{NODE}",local_as="64512"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let (status, body) = http(&node, "HEAD", "/metrics").unwrap();
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(http(&node, "GET", "/nope").unwrap().0, 404);
    assert_eq!(http(&node, "POST", "/metrics").unwrap().0, 405);
    assert_eq!(http(&node, "GET", "/readyz?threshold=x").unwrap().0, 400);

    // --- watch + hard reset ---------------------------------------------------------------
    // `watch` subscribes asynchronously: reset until it has seen a reset (usually once).
    let watch = Watch::start(&pod);
    let mut resets = 0u64;
    poll_until(SETTLE, "watch shows the hard reset", || {
        let before = tor_peer(&pod)?["established_transitions"]
            .as_u64()
            .unwrap_or(0);
        let r = pod.cli(&["reset", TOR])?;
        if r != json!({"address": TOR, "soft": false}) {
            panic!("reset --json: {r}");
        }
        resets += 1;
        poll_until(SETTLE, "the session is back after the reset", || {
            let p = tor_peer(&pod)?;
            match (p["state"].as_str(), p["established_transitions"].as_u64()) {
                (Some("established"), Some(t)) if t > before => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        let events = watch.events();
        let down = events.iter().position(|e| {
            e["type"] == "peer_state" && e["address"] == TOR && e["from"] == "established"
        });
        let up = down.and_then(|d| {
            events[d..].iter().position(|e| {
                e["type"] == "peer_state" && e["address"] == TOR && e["to"] == "established"
            })
        });
        match (down, up) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(format!("watch saw {events:?}")),
        }
    });
    // The reset withdrew FRR's routes and they came back: best-path events both ways.
    poll_until(SETTLE, "watch shows best-path changes", || {
        let events = watch.events();
        let best = |e: &Value, hops: Value| {
            e["type"] == "best_path" && e["prefix"] == POOL_PREFIXES[0] && e["next_hops"] == hops
        };
        let gone = events.iter().position(|e| best(e, json!([])));
        let back = gone.and_then(|g| events[g..].iter().position(|e| best(e, json!([TOR]))));
        back.map(|_| ()).ok_or_else(|| format!("{events:?}"))
    });
    drop(watch);
    eprintln!("hard resets until watch had subscribed: {resets}");
    // FRR counted the same sessions.
    poll_until(SETTLE, "FRR saw every reset", || {
        let n = frr_neighbor(&tor)?;
        let ours = tor_peer(&pod)?["established_transitions"].as_u64();
        let theirs = n["connectionsEstablished"].as_u64();
        if ours == Some(1 + resets) && theirs == ours {
            Ok(())
        } else {
            Err(format!("podbgp {ours:?}, FRR {theirs:?}, resets {resets}"))
        }
    });
    poll_until(SETTLE, "routes back after the reset", || {
        let (received, _, _) = v4_counters(&tor_peer(&pod)?)?;
        (received == announced.len() as u64)
            .then_some(())
            .ok_or_else(|| format!("received {received}"))
    });

    // --- soft reset: ROUTE-REFRESH, no session reset --------------------------------------
    let n = frr_neighbor(&tor).unwrap();
    let refresh_before = frr_stat(&n, "routeRefreshRecv").unwrap();
    let transitions = tor_peer(&pod).unwrap()["established_transitions"].clone();
    let r = pod.cli(&["reset", TOR, "--soft"]).unwrap();
    assert_eq!(r, json!({"address": TOR, "soft": true}));
    poll_until(SETTLE, "FRR received a ROUTE-REFRESH", || {
        let got = frr_stat(&frr_neighbor(&tor)?, "routeRefreshRecv")?;
        (got == refresh_before + 1)
            .then_some(())
            .ok_or_else(|| format!("routeRefreshRecv {got}, before {refresh_before}"))
    });
    let p = tor_peer(&pod).unwrap();
    assert_eq!(p["state"], "established");
    assert_eq!(
        p["established_transitions"], transitions,
        "a soft reset keeps the session"
    );
    assert_eq!(frr_received(&tor).unwrap(), set(&[BLOCK]));

    // --- FRR stops: not ready again, routes gone from the FIB -------------------------------
    tor.stop();
    poll_until(SETTLE, "not ready after FRR stopped", || {
        match health(&pod, &["--ready", "--threshold", "0"])? {
            (1, false, reason) if reason == not_ready => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    poll_until(SETTLE, "/readyz says not ready", || {
        match http(&node, "GET", "/readyz?threshold=0")? {
            (503, body) if body.trim_end() == not_ready => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (code, ok, _) = health(&pod, &["--live"]).unwrap();
    assert!(ok && code == 0, "still live");
    assert_eq!(http(&node, "GET", "/livez").unwrap().0, 200);
    poll_until(SETTLE, "FRR's routes leave the FIB", || {
        let fib = pod.array(&["routes", "--table", "fib"])?;
        let kernel = kernel_routes(&node);
        let want = set(&[BLOCK]);
        if prefixes(&fib) == want && kernel == want {
            Ok(())
        } else {
            Err(format!("fib {:?}, kernel {kernel:?}", prefixes(&fib)))
        }
    });
    poll_until(SETTLE, "metrics after FRR stopped", || {
        let text = scrape(&node)?;
        let fam = format!(r#"{{peer="{TOR}",family="ipv4-unicast"}}"#);
        let checks = [
            (r#"podbgp_sessions{state="established"}"#.to_string(), 0),
            (format!(r#"podbgp_peer_established{{peer="{TOR}"}}"#), 0),
            (format!("podbgp_peer_prefixes_received{fam}"), 0),
            ("podbgp_fib_routes".to_string(), 1),
        ];
        for (name, want) in checks {
            let got = series(&text, &name)?;
            if got != want {
                return Err(format!("{name} = {got}, want {want}"));
            }
        }
        let deletes = series(&text, r#"podbgp_fib_operations_total{op="delete"}"#)?;
        (deletes >= 3)
            .then_some(())
            .ok_or_else(|| format!("fib deletes {deletes}"))
    });
    let status = pod.cli(&["status"]).unwrap();
    assert_ne!(status["ipv4"][0]["session_state"], "established");
    assert_eq!(status["ipv4"][0]["state"], "start");
    pod.assert_running();

    // --- logs: every transition at INFO with peer, from, to, cause; no prefix above DEBUG ---
    let log = pod.proc.output();
    let transitions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("session state change"))
        .collect();
    for want in [
        "from=Established to=Idle cause=stop (cease/4)",
        "to=Established cause=keepalive received",
    ] {
        assert!(
            transitions
                .iter()
                .any(|l| l.contains(&format!("peer={TOR}")) && l.contains(want)),
            "no INFO transition line with {want}:\n{}",
            transitions.join("\n")
        );
    }
    for l in log
        .lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
    {
        for p in POOL_PREFIXES.iter().chain([&OUTSIDE]) {
            assert!(!l.contains(p), "a prefix logged above DEBUG: {l}");
        }
    }
    eprintln!("{}", transitions.join("\n"));
}
