//! Graceful restart (RFC 4724, RFC 8538) against FRR, with the kernel FIB (issue 9).
//!
//! ```text
//!   pod-t 198.19.5.5 ── tor (FRR, AS 65001) 198.18.0.1 ─ lan ─ node-1 198.18.0.11 (podbgp, AS 64512)
//! ```
//!
//! `frr_restart_keeps_routes_only_with_graceful_restart` — podbgp as helper: bgpd on the ToR
//! is killed and started again with one prefix fewer. With graceful restart the ToR's routes
//! stay in node-1's kernel the whole time and a ping to the pod behind the ToR never fails;
//! after the ToR's End-of-RIB the prefix it no longer announces is removed. With graceful
//! restart disabled on the ToR, killing bgpd removes its routes at once.
//!
//! `podbgp_restart_keeps_routes_at_the_peer` — podbgp as restarting speaker: podbgp is killed
//! with SIGKILL (and later stopped with SIGTERM) and started again while FRR helps. The ToR's
//! kernel never loses node-1's blocks (`ip monitor` in the ToR sees no deletion), node-1's
//! kernel keeps the ToR's routes, and a block deleted from the datastore while podbgp was down
//! is withdrawn at the ToR once podbgp has converged; a stale kernel route is swept.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SETTLE: Duration = Duration::from_secs(30);

const NODE_YAML: &str = r#"apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.19.0.0/16, ipipMode: Never, vxlanMode: Never}
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
metadata: {name: node-1-198-19-1-0-26}
spec: {node: node-1, cidr: 198.19.1.0/26, state: confirmed, deleted: false}
"#;

const SECOND_BLOCK: &str = r#"---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node-1-198-19-2-0-26}
spec: {node: node-1, cidr: 198.19.2.0/26, state: confirmed, deleted: false}
"#;

/// The ToR's bgpd: `prefixes` announced; graceful restart on (restarting mode with
/// forwarding state preserved) or disabled altogether.
fn tor_conf(prefixes: &[&str], graceful_restart: bool) -> String {
    let mut c = BgpdConfig::new(65001, "198.18.0.1")
        .hostname("tor")
        .neighbor("198.18.0.11", 64512);
    for p in prefixes {
        c = c.network(p);
    }
    // Global graceful-restart mode goes before the neighbors (FRR refuses to change it for
    // peers already configured).
    let gr = if graceful_restart {
        " bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n"
    } else {
        " bgp graceful-restart-disable\n"
    };
    c.render().replacen(
        " bgp router-id 198.18.0.1\n",
        &format!(" bgp router-id 198.18.0.1\n{gr}"),
        1,
    )
}

/// `"<protocol> via GW"` / `"<protocol> blackhole"` for exactly `dst` in `ns`, or `None`.
fn shape(ns: &Netns, dst: &str) -> Option<String> {
    let rs = match ns.ip_json(&["-4", "route", "show", "exact", dst]) {
        Value::Array(rs) => rs,
        other => panic!("ip route: {other}"),
    };
    let r = match rs.as_slice() {
        [] => return None,
        [r] => r,
        many => panic!("{dst}: more than one route: {many:?}"),
    };
    let proto = r["protocol"].as_str().unwrap_or("?");
    if r["type"].as_str() == Some("blackhole") {
        return Some(format!("{proto} blackhole"));
    }
    Some(format!(
        "{proto} via {}",
        r["gateway"].as_str().unwrap_or("?")
    ))
}

#[track_caller]
fn wait_shape(ns: &Netns, dst: &str, want: Option<&str>, timeout: Duration) -> Duration {
    let started = Instant::now();
    poll_until(
        timeout,
        &format!("{}: route {dst} = {want:?}", ns.short_name()),
        || {
            let got = shape(ns, dst);
            if got.as_deref() == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    started.elapsed()
}

fn established(pod: &Podbgp) -> Result<(), String> {
    let peers = pod.peers()?;
    match peers.iter().all(|p| p["state"] == "established") && !peers.is_empty() {
        true => Ok(()),
        false => Err(format!("{peers:?}")),
    }
}

struct Site {
    lab: Lab,
    node: Netns,
    tor: Netns,
    pod_t: Netns,
    store: std::path::PathBuf,
}

fn site(name: &str, with_second_block: bool) -> Site {
    let lab = Lab::new(name);
    let lan = lab.lan("lan");
    let node = lab.netns("node1");
    let tor = lab.netns("tor");
    lan.attach(&node, "eth0", &["198.18.0.11/24"]);
    lan.attach(&tor, "eth0", &["198.18.0.1/24"]);
    tor.write_proc_sys("net/ipv4/ip_forward", "1");
    for ns in [&node, &tor] {
        ns.write_proc_sys("net/ipv4/conf/all/rp_filter", "0");
        ns.write_proc_sys("net/ipv4/conf/default/rp_filter", "0");
    }
    // A pod behind the ToR (/32 device route and proxy ARP, as Calico sets it up).
    let pod_t = lab.netns("podt");
    lab.p2p(&tor, "calit", &[], &pod_t, "eth0", &["198.19.5.5/32"]);
    pod_t.ip(&["route", "add", "default", "dev", "eth0", "scope", "link"]);
    tor.write_proc_sys("net/ipv4/conf/calit/proxy_arp", "1");
    tor.ip(&[
        "route",
        "add",
        "198.19.5.5/32",
        "dev",
        "calit",
        "scope",
        "link",
    ]);
    let store = lab.dir().join("cluster.yaml");
    let mut yaml = NODE_YAML.to_string();
    if with_second_block {
        yaml.push_str(SECOND_BLOCK);
    }
    std::fs::write(&store, yaml).unwrap();
    Site {
        lab,
        node,
        tor,
        pod_t,
        store,
    }
}

impl Site {
    fn datastore(&self) -> String {
        format!("file:{}", self.store.display())
    }
}

/// Pings `dst` from `ns` every 100 ms until stopped; the report says how many were lost.
struct Pinger {
    proc: Proc,
}

impl Pinger {
    fn start(ns: &Netns, dst: &str) -> Pinger {
        Pinger {
            proc: ns.spawn("ping", &["ping", "-n", "-i", "0.1", "-W", "1", dst]),
        }
    }

    /// (transmitted, received) after SIGINT (ping prints its summary).
    fn stop(mut self) -> (u64, u64) {
        self.proc.signal(2);
        let _ = self.proc.wait_timeout(Duration::from_secs(5));
        let out = self.proc.output();
        let line = out
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("no ping summary:\n{out}"))
            .to_string();
        let num = |word: &str| -> u64 {
            let before = line.split(word).next().unwrap_or_default();
            before
                .split_whitespace()
                .last()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("cannot parse {word:?} in {line:?}"))
        };
        (num("packets transmitted"), num("received"))
    }
}

#[test]
fn frr_restart_keeps_routes_only_with_graceful_restart() {
    if !require_root_and_frr() {
        return;
    }
    let s = site("gr_helper", false);
    let mut pod = Podbgp::start_datastore(&s.node, "node-1", &s.datastore(), &[]);
    // 203.0.113.0/24 is outside every pool: the import guard keeps it out of the Loc-RIB.
    let mut tor = Frr::new(
        &s.tor,
        &tor_conf(&["198.19.5.0/26", "198.19.6.0/26", "203.0.113.0/24"], true),
    );
    poll_until(SETTLE, "node-1 established with the ToR", || {
        established(&pod)
    });
    wait_shape(
        &s.node,
        "198.19.5.0/26",
        Some("bird via 198.18.0.1"),
        SETTLE,
    );
    wait_shape(
        &s.node,
        "198.19.6.0/26",
        Some("bird via 198.18.0.1"),
        SETTLE,
    );
    poll_until(SETTLE, "ping the pod behind the ToR", || {
        s.node
            .exec(&["ping", "-c", "1", "-W", "1", "198.19.5.5"])
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let _ = &s.pod_t;
    let rib = pod.loc_rib().unwrap();
    assert!(
        !rib.iter().any(|r| r["prefix"] == "203.0.113.0/24"),
        "an out-of-pool prefix passed the import guard: {rib:?}"
    );
    assert!(
        tor.routes(Afi::Ipv4)
            .unwrap()
            .contains_key("203.0.113.0/24"),
        "the ToR does not hold 203.0.113.0/24"
    );

    // --- bgpd crashes and comes back without 198.19.6.0/26 ---
    let ping = Pinger::start(&s.node, "198.19.5.5");
    tor.kill_bgpd();
    tor.write_config("bgpd", &tor_conf(&["198.19.5.0/26"], true));
    // The ToR is down for 3 s: both routes stay, unchanged, in node-1's kernel.
    let down_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < down_until {
        for p in ["198.19.5.0/26", "198.19.6.0/26"] {
            assert_eq!(
                shape(&s.node, p).as_deref(),
                Some("bird via 198.18.0.1"),
                "{p} changed while the ToR restarts (graceful restart):\n{}",
                pod.proc.output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = pod.peers().unwrap()[0]["info"].clone();
    assert!(
        info.as_str()
            .unwrap_or("")
            .contains("graceful restart: 2 routes kept"),
        "peer info while the ToR restarts: {info}"
    );
    let stale = pod.loc_rib().unwrap();
    assert!(
        stale
            .iter()
            .any(|r| r["prefix"] == "198.19.6.0/26" && r["stale"] == true),
        "the route is not in the Loc-RIB as stale: {stale:?}"
    );
    tor.start();
    poll_until(SETTLE, "node-1 established again", || established(&pod));
    let gone = wait_shape(&s.node, "198.19.6.0/26", None, SETTLE);
    eprintln!("prefix not re-announced removed {gone:?} after the session came back");
    assert_eq!(
        shape(&s.node, "198.19.5.0/26").as_deref(),
        Some("bird via 198.18.0.1")
    );
    let (sent, received) = ping.stop();
    eprintln!("ping across the ToR restart: {received}/{sent}");
    assert!(sent >= 30, "ping ran too briefly: {sent}");
    assert_eq!(
        sent, received,
        "pings lost across the ToR's graceful restart"
    );
    let log = pod.proc.output();
    assert!(
        log.contains("routes kept as stale (graceful restart)"),
        "no graceful-restart line in the log:\n{log}"
    );
    assert!(log.contains("end-of-rib, stale routes not re-announced removed"));

    // --- without graceful restart the routes go as soon as bgpd dies ---
    tor.stop();
    tor.write_config("bgpd", &tor_conf(&["198.19.5.0/26"], false));
    tor.start();
    poll_until(SETTLE, "node-1 established without GR", || {
        established(&pod)
    });
    wait_shape(
        &s.node,
        "198.19.5.0/26",
        Some("bird via 198.18.0.1"),
        SETTLE,
    );
    tor.kill_bgpd();
    let took = wait_shape(&s.node, "198.19.5.0/26", None, Duration::from_secs(5));
    eprintln!("without graceful restart the route left {took:?} after bgpd died");
    pod.assert_running();
}

#[test]
fn podbgp_restart_keeps_routes_at_the_peer() {
    if !require_root_and_frr() {
        return;
    }
    let s = site("gr_restart", true);
    let ds = s.datastore();
    let fib_args = ["--fib-sweep-timeout", "30"];
    let mut pod = Podbgp::start_datastore_with(&s.node, "node-1", &ds, &[], &fib_args);
    // FRR's defaults: graceful-restart helper, N bit.
    let tor = Frr::new(
        &s.tor,
        &BgpdConfig::new(65001, "198.18.0.1")
            .hostname("tor")
            .neighbor("198.18.0.11", 64512)
            .network("198.19.5.0/26")
            .render(),
    );
    poll_until(SETTLE, "node-1 established with the ToR", || {
        established(&pod)
    });
    for p in ["198.19.1.0/26", "198.19.2.0/26"] {
        wait_shape(&s.tor, p, Some("bgp via 198.18.0.11"), SETTLE);
    }
    wait_shape(
        &s.node,
        "198.19.5.0/26",
        Some("bird via 198.18.0.1"),
        SETTLE,
    );

    // Every route change in the ToR's kernel from now on.
    let monitor = s.tor.spawn("ipmon", &["ip", "-o", "monitor", "route"]);

    // --- SIGKILL; meanwhile the second block is released and a stale route appears ---
    pod.proc.kill();
    std::fs::write(&s.store, NODE_YAML).unwrap();
    s.node.ip(&[
        "route",
        "add",
        "198.19.9.0/26",
        "via",
        "198.18.0.1",
        "proto",
        "bird",
    ]);
    let down_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < down_until {
        assert_eq!(
            shape(&s.node, "198.19.5.0/26").as_deref(),
            Some("bird via 198.18.0.1"),
            "node-1's kernel route changed while podbgp was down"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pod = Podbgp::start_datastore_with(&s.node, "node-1", &ds, &[], &fib_args);
    poll_until(SETTLE, "node-1 established after SIGKILL", || {
        established(&pod)
    });
    // The released block is withdrawn once podbgp has converged; the stale kernel route goes
    // at the same time (End-of-RIB from the ToR), long before the 30 s sweep timeout.
    let withdrawn = wait_shape(&s.tor, "198.19.2.0/26", None, SETTLE);
    eprintln!("released block withdrawn at the ToR {withdrawn:?} after restart");
    wait_shape(&s.node, "198.19.9.0/26", None, Duration::from_secs(20));
    assert_eq!(
        shape(&s.tor, "198.19.1.0/26").as_deref(),
        Some("bgp via 198.18.0.11")
    );
    let log = pod.proc.output();
    assert!(
        log.contains("graceful restart: recovery done"),
        "recovery did not finish by End-of-RIB:\n{log}"
    );

    // --- SIGTERM: the ToR keeps node-1's blocks again ---
    let status = pod.proc.terminate(Duration::from_secs(10));
    assert!(status.success(), "podbgp exit: {status:?}");
    let peer_state = tor.peer_state("198.18.0.11").unwrap_or_default();
    eprintln!("ToR's view of node-1 after SIGTERM: {peer_state}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        shape(&s.tor, "198.19.1.0/26").as_deref(),
        Some("bgp via 198.18.0.11"),
        "the ToR dropped node-1's block after a graceful stop"
    );
    pod = Podbgp::start_datastore_with(&s.node, "node-1", &ds, &[], &fib_args);
    poll_until(SETTLE, "node-1 established after SIGTERM", || {
        established(&pod)
    });
    poll_until(SETTLE, "node-1 recovered", || {
        let log = pod.proc.output();
        log.contains("graceful restart: recovery done")
            .then_some(())
            .ok_or_else(|| "recovering".to_string())
    });
    wait_shape(&s.tor, "198.19.1.0/26", Some("bgp via 198.18.0.11"), SETTLE);

    // Nothing of node-1's remaining block was ever deleted at the ToR.
    let mut monitor = monitor;
    monitor.kill();
    let events = monitor.output();
    let deleted: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("Deleted") && l.contains("198.19.1.0/26"))
        .collect();
    assert!(
        deleted.is_empty(),
        "the ToR deleted node-1's block during the restarts:\n{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("Deleted") && l.contains("198.19.2.0/26")),
        "the released block was never withdrawn:\n{events}"
    );
    let _ = &s.lab;
}
