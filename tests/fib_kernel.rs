//! Kernel routes installed by a running podbgp node (issue 5), asserted with `ip -j route`.
//!
//! `kernel_routes_follow_bgp_and_calico_rules` — one Calico node and two FRR top-of-rack
//! routers on one LAN, pools of every kind in the file datastore:
//!
//! ```text
//!   tor-a 198.18.0.1 2001:db8:18::1 (AS 65001) ─┐
//!   tor-b 198.18.0.2 (AS 65001) ────────────────┼─ lan ─ node-1 198.18.0.11 2001:db8:18::11 (AS 64512)
//!                                               │        tunl0 (IPIP device)
//! ```
//!
//! Checked: a no-encap pool route via the peer (IPv4 and IPv6); an IPIP route via tunl0
//! onlink; CrossSubnet plain for a next hop in the node's subnet and tunl0 onlink for one
//! outside it; one multipath route from the two ToRs' equal paths; the blackhole of the local
//! block; VXLAN pool and out-of-pool prefixes not installed; another protocol's route for a
//! received prefix untouched; a route deleted by hand repaired within 2 s; a withdrawn prefix
//! removed; and a restart: routes stay while podbgp is down, a prefix withdrawn meanwhile is
//! kept until convergence (here the sweep timeout, as tor-b is down) and then swept.
//!
//! `pods_on_two_nodes_ping_through_installed_routes` — two nodes in a full mesh, a pod
//! namespace behind each (Calico style: /32 device route, proxy ARP); the pods ping each other
//! through the block routes podbgp installed.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SETTLE: Duration = Duration::from_secs(30);

/// A canonical text of the route for exactly `dst` in the main table, or `None`:
/// `"<protocol> blackhole"`, `"<protocol> via GW"`, `"<protocol> via GW dev D onlink"`, or
/// several next hops joined by `" + "` (sorted).
fn shape(ns: &Netns, dst: &str) -> Option<String> {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    let rs = match ns.ip_json(&[fam, "route", "show", "exact", dst]) {
        Value::Array(rs) => rs,
        other => panic!("ip route: {other}"),
    };
    let r = match rs.as_slice() {
        [] => return None,
        [r] => r,
        many => panic!("{dst}: more than one route: {many:?}"),
    };
    let proto = r["protocol"].as_str().unwrap_or("?").to_string();
    if r["type"].as_str() == Some("blackhole") {
        return Some(format!("{proto} blackhole"));
    }
    let hop = |h: &Value| {
        let mut s = format!("via {}", h["gateway"].as_str().unwrap_or("?"));
        let onlink = h["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "onlink"));
        if onlink {
            s.push_str(&format!(" dev {} onlink", h["dev"].as_str().unwrap_or("?")));
        }
        s
    };
    let hops: Vec<String> = match r["nexthops"].as_array() {
        Some(hs) => {
            let mut v: Vec<String> = hs.iter().map(hop).collect();
            v.sort();
            v
        }
        None => vec![hop(r)],
    };
    Some(format!("{proto} {}", hops.join(" + ")))
}

#[track_caller]
fn wait_shape(ns: &Netns, dst: &str, want: Option<&str>, timeout: Duration) -> Duration {
    let start = Instant::now();
    poll_until(timeout, &format!("{dst} is {want:?}"), || {
        let got = shape(ns, dst);
        if got.as_deref() == want {
            Ok(())
        } else {
            Err(format!("{dst}: {got:?}"))
        }
    });
    start.elapsed()
}

/// Puts a device named tunl0 in `ns` (a real ipip device when the kernel has one, else a
/// veth stand-in: routes onlink through it behave the same for the FIB).
fn add_tunl0(ns: &Netns) {
    let real = ns.exec(&["ip", "link", "show", "tunl0"]).is_ok()
        || ns
            .exec(&["ip", "link", "add", "tunl0", "type", "ipip"])
            .is_ok();
    if !real {
        ns.ip(&[
            "link", "add", "tunl0", "type", "veth", "peer", "name", "tunl0p",
        ]);
        ns.ip(&["link", "set", "tunl0p", "up"]);
    }
    ns.ip(&["link", "set", "tunl0", "up"]);
}

const NODE_YAML: &str = r#"apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: plain}
spec: {cidr: 10.244.0.0/16, ipipMode: Never, vxlanMode: Never}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: ipip}
spec: {cidr: 10.245.0.0/16, ipipMode: Always, vxlanMode: Never}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: cross}
spec: {cidr: 10.246.0.0/16, ipipMode: CrossSubnet, vxlanMode: Never}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: vxlan}
spec: {cidr: 10.247.0.0/16, ipipMode: Never, vxlanMode: Always}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: plain6}
spec: {cidr: "2001:db8:244::/48", ipipMode: Never, vxlanMode: Never}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-1}
spec:
  bgp: {ipv4Address: 198.18.0.11/24, ipv6Address: "2001:db8:18::11/64"}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor-a}
spec: {peerIP: 198.18.0.1, asNumber: 65001}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor-a-v6}
spec: {peerIP: "2001:db8:18::1", asNumber: 65001}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor-b}
spec: {peerIP: 198.18.0.2, asNumber: 65001}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node-1-10-244-7-0-26}
spec: {node: node-1, cidr: 10.244.7.0/26, state: confirmed, deleted: false}
"#;

/// FRR on tor-a: every prefix of the test, one of them with an off-subnet next hop.
fn tor_a_conf() -> String {
    let mut c = BgpdConfig::new(65001, "198.18.0.1")
        .hostname("tor-a")
        .neighbor("198.18.0.11", 64512)
        .neighbor("2001:db8:18::11", 64512);
    for p in [
        "10.244.1.0/26", // plain pool
        "10.244.2.0/26", // plain pool, withdrawn while podbgp is down
        "10.244.5.0/26", // also from tor-b: multipath
        "10.244.9.0/26", // held by a static route on the node
        "10.245.1.0/26", // IPIP pool
        "10.246.1.0/26", // CrossSubnet, next hop in the node's subnet
        "10.246.2.0/26", // CrossSubnet, next hop outside it (route-map)
        "10.247.1.0/26", // VXLAN pool: Felix's
        "192.0.2.0/24",  // outside every pool
        "2001:db8:244:1::/64",
    ] {
        c = c.network(p);
    }
    c = c.af_line(Afi::Ipv4, "neighbor 198.18.0.11 route-map TO-NODE out");
    let mut text = c.render();
    text.push_str(
        "ip prefix-list OFFNET seq 5 permit 10.246.2.0/26\n\
         route-map TO-NODE permit 10\n match ip address prefix-list OFFNET\n set ip next-hop 198.18.9.1\n\
         route-map TO-NODE permit 20\n",
    );
    text
}

fn tor_b_conf() -> String {
    BgpdConfig::new(65001, "198.18.0.2")
        .hostname("tor-b")
        .neighbor("198.18.0.11", 64512)
        .network("10.244.5.0/26")
        .render()
}

fn established(pod: &Podbgp) -> Result<usize, String> {
    Ok(pod
        .peers()?
        .iter()
        .filter(|p| p["state"] == "established")
        .count())
}

#[test]
fn kernel_routes_follow_bgp_and_calico_rules() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("fib_kernel");
    let lan = lab.lan("lan");
    let node = lab.netns("node1");
    let tor_a = lab.netns("tora");
    let tor_b = lab.netns("torb");
    lan.attach(&node, "eth0", &["198.18.0.11/24", "2001:db8:18::11/64"]);
    lan.attach(&tor_a, "eth0", &["198.18.0.1/24", "2001:db8:18::1/64"]);
    lan.attach(&tor_b, "eth0", &["198.18.0.2/24"]);
    add_tunl0(&node);
    // Another protocol's route for a prefix tor-a announces.
    node.ip(&[
        "route",
        "add",
        "10.244.9.0/26",
        "via",
        "198.18.0.2",
        "proto",
        "static",
    ]);

    let store = lab.dir().join("cluster.yaml");
    std::fs::write(&store, NODE_YAML).unwrap();
    let ds = format!("file:{}", store.display());
    // The import guard off: out-of-pool and off-link routes must reach the FIB's own rules.
    let fib_args = ["--fib-sweep-timeout", "6", "--import-guard", "off"];
    let mut pod = Podbgp::start_datastore_with(&node, "node-1", &ds, &[], &fib_args);
    let a = Frr::new(&tor_a, &tor_a_conf());
    let mut b = Frr::new(&tor_b, &tor_b_conf());
    poll_until(
        SETTLE,
        "node-1: three sessions established",
        || match established(&pod)? {
            3 => Ok(()),
            n => Err(format!("{n} of 3 established")),
        },
    );

    let cases: &[(&str, Option<&str>)] = &[
        ("10.244.1.0/26", Some("bird via 198.18.0.1")),
        ("2001:db8:244:1::/64", Some("bird via 2001:db8:18::1")),
        (
            "10.245.1.0/26",
            Some("bird via 198.18.0.1 dev tunl0 onlink"),
        ),
        ("10.246.1.0/26", Some("bird via 198.18.0.1")),
        (
            "10.246.2.0/26",
            Some("bird via 198.18.9.1 dev tunl0 onlink"),
        ),
        (
            "10.244.5.0/26",
            Some("bird via 198.18.0.1 + via 198.18.0.2"),
        ),
        ("10.244.7.0/26", Some("bird blackhole")),
        ("10.244.9.0/26", Some("static via 198.18.0.2")),
        ("10.247.1.0/26", None),
        ("192.0.2.0/24", None),
    ];
    for (dst, want) in cases {
        wait_shape(&node, dst, *want, SETTLE);
    }
    // The negative cases again, now that everything else has arrived.
    assert_eq!(
        shape(&node, "10.247.1.0/26"),
        None,
        "VXLAN pool route installed"
    );
    assert_eq!(
        shape(&node, "192.0.2.0/24"),
        None,
        "out-of-pool route installed"
    );
    // Received and selected, just not installed.
    let loc = pod
        .cli(&["routes", "--table", "loc-rib", "--prefix", "192.0.2.0/24"])
        .unwrap();
    assert!(
        loc.as_array().is_some_and(|a| !a.is_empty()),
        "192.0.2.0/24 should be in the Loc-RIB: {loc}"
    );

    // Deleted by hand: repaired within 2 s.
    node.ip(&["route", "del", "10.244.1.0/26", "proto", "bird"]);
    let took = wait_shape(
        &node,
        "10.244.1.0/26",
        Some("bird via 198.18.0.1"),
        Duration::from_secs(2),
    );
    eprintln!("hand-deleted route repaired after {took:?}");
    // Changed by hand under our protocol: put back too.
    node.ip(&[
        "route",
        "replace",
        "10.245.1.0/26",
        "via",
        "198.18.0.2",
        "proto",
        "bird",
    ]);
    wait_shape(
        &node,
        "10.245.1.0/26",
        Some("bird via 198.18.0.1 dev tunl0 onlink"),
        Duration::from_secs(2),
    );

    // Withdrawn: removed.
    a.configure(&[
        "router bgp 65001",
        "address-family ipv4 unicast",
        "no network 10.244.1.0/26",
    ]);
    wait_shape(&node, "10.244.1.0/26", None, SETTLE);
    assert_eq!(
        shape(&node, "10.244.9.0/26").as_deref(),
        Some("static via 198.18.0.2")
    );

    // Restart. Stopped cleanly, podbgp leaves its routes in place.
    let status = pod.proc.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "podbgp exit: {status:?}\n{}",
        pod.proc.output()
    );
    for (dst, want) in cases {
        if !dst.starts_with("10.244.1.") {
            assert_eq!(shape(&node, dst).as_deref(), *want, "{dst} after stop");
        }
    }
    // While it is down: tor-a withdraws a prefix, and tor-b goes away (so not every peer
    // will send End-of-RIB: the sweep waits for its timeout).
    a.configure(&[
        "router bgp 65001",
        "address-family ipv4 unicast",
        "no network 10.244.2.0/26",
    ]);
    b.stop();
    let started = Instant::now();
    pod = Podbgp::start_datastore_with(&node, "node-1", &ds, &[], &fib_args);
    poll_until(
        SETTLE,
        "node-1: tor-a sessions established again",
        || match established(&pod)? {
            2 => Ok(()),
            n => Err(format!("{n} of 2 established")),
        },
    );
    wait_shape(&node, "10.244.5.0/26", Some("bird via 198.18.0.1"), SETTLE);
    // Kept until convergence: the stale route is still there well before the timeout.
    if started.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            shape(&node, "10.244.2.0/26").as_deref(),
            Some("bird via 198.18.0.1"),
            "stale route swept before convergence"
        );
    } else {
        eprintln!(
            "slow restart ({:?}): skipping the kept-before-sweep check",
            started.elapsed()
        );
    }
    wait_shape(&node, "10.244.2.0/26", None, SETTLE);
    eprintln!("stale route swept {:?} after restart", started.elapsed());
    for (dst, want) in cases {
        if !dst.starts_with("10.244.1.") && !dst.starts_with("10.244.5.") {
            assert_eq!(shape(&node, dst).as_deref(), *want, "{dst} after restart");
        }
    }
    let log = pod.proc.output();
    assert!(
        log.contains("sweep timeout"),
        "the sweep should have waited for its timeout (tor-b down):\n{log}"
    );
}

/// A pod namespace behind `node`: `eth0` with `addr/32` in the pod, `cali<n>` on the node with
/// a /32 device route and proxy ARP (what Calico's CNI plugin and Felix set up).
fn add_pod(lab: &Lab, node: &Netns, name: &str, addr: &str, cali: &str) -> Netns {
    let pod = lab.netns(name);
    lab.p2p(node, cali, &[], &pod, "eth0", &[&format!("{addr}/32")]);
    pod.ip(&["route", "add", "default", "dev", "eth0", "scope", "link"]);
    node.write_proc_sys(&format!("net/ipv4/conf/{cali}/proxy_arp"), "1");
    node.ip(&[
        "route",
        "add",
        &format!("{addr}/32"),
        "dev",
        cali,
        "scope",
        "link",
    ]);
    pod
}

const PING_YAML: &str = r#"apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true}
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
kind: Node
metadata: {name: node-2}
spec: {bgp: {ipv4Address: 198.18.0.12/24}}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node-1-198-19-1-0-26}
spec: {node: node-1, cidr: 198.19.1.0/26, state: confirmed, deleted: false}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node-2-198-19-2-0-26}
spec: {node: node-2, cidr: 198.19.2.0/26, state: confirmed, deleted: false}
"#;

#[test]
fn pods_on_two_nodes_ping_through_installed_routes() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("fib_ping");
    let lan = lab.lan("lan");
    let n1 = lab.netns("node1");
    let n2 = lab.netns("node2");
    lan.attach(&n1, "eth0", &["198.18.0.11/24"]);
    lan.attach(&n2, "eth0", &["198.18.0.12/24"]);
    for n in [&n1, &n2] {
        n.write_proc_sys("net/ipv4/ip_forward", "1");
        n.write_proc_sys("net/ipv4/conf/all/rp_filter", "0");
        n.write_proc_sys("net/ipv4/conf/default/rp_filter", "0");
    }
    let pod1 = add_pod(&lab, &n1, "pod1", "198.19.1.5", "cali1");
    let pod2 = add_pod(&lab, &n2, "pod2", "198.19.2.5", "cali2");

    let store = lab.dir().join("cluster.yaml");
    std::fs::write(&store, PING_YAML).unwrap();
    let ds = format!("file:{}", store.display());
    let mut p1 = Podbgp::start_datastore(&n1, "node-1", &ds, &[]);
    let _p2 = Podbgp::start_datastore(&n2, "node-2", &ds, &[]);

    wait_shape(&n1, "198.19.2.0/26", Some("bird via 198.18.0.12"), SETTLE);
    wait_shape(&n2, "198.19.1.0/26", Some("bird via 198.18.0.11"), SETTLE);
    wait_shape(&n1, "198.19.1.0/26", Some("bird blackhole"), SETTLE);
    wait_shape(&n2, "198.19.2.0/26", Some("bird blackhole"), SETTLE);

    // Without those routes there is no path between the pods: each node knows only its own
    // block (the blackhole) and its LAN.
    for (from, to) in [(&pod1, "198.19.2.5"), (&pod2, "198.19.1.5")] {
        poll_until(SETTLE, &format!("ping {to}"), || {
            from.exec(&["ping", "-c", "1", "-W", "1", to])
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
    // An address in the remote block with no pod behind it hits the remote blackhole.
    assert!(
        pod1.exec(&["ping", "-c", "1", "-W", "1", "198.19.2.9"])
            .is_err(),
        "198.19.2.9 has no pod; it must not answer"
    );

    // Restart node-1: its routes stay in its kernel while it is down (node-2 withdraws
    // node-1's block meanwhile: keeping it needs graceful restart, issue 9), and once node-2
    // has sent End-of-RIB a stale route of ours (left by "the previous run") is swept at
    // once, long before the 60 s sweep timeout.
    let status = p1.proc.terminate(Duration::from_secs(10));
    assert!(status.success(), "podbgp exit: {status:?}");
    assert_eq!(
        shape(&n1, "198.19.2.0/26").as_deref(),
        Some("bird via 198.18.0.12"),
        "node-1's route is gone after a clean stop"
    );
    n1.ip(&[
        "route",
        "add",
        "198.19.3.0/26",
        "via",
        "198.18.0.12",
        "proto",
        "bird",
    ]);
    let started = Instant::now();
    p1 = Podbgp::start_datastore(&n1, "node-1", &ds, &[]);
    wait_shape(&n1, "198.19.3.0/26", None, Duration::from_secs(20));
    eprintln!("stale route swept {:?} after restart", started.elapsed());
    assert_eq!(
        shape(&n1, "198.19.2.0/26").as_deref(),
        Some("bird via 198.18.0.12")
    );
    assert!(p1.proc.output().contains("initial convergence"));
    poll_until(SETTLE, "ping 198.19.2.5 after the restart", || {
        pod1.exec(&["ping", "-c", "1", "-W", "1", "198.19.2.5"])
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}
