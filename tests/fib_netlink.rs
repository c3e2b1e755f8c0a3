//! The netlink FIB adapter against a real kernel, in network namespaces (root required).
//!
//! Topology (one per test):
//!
//! ```text
//!   node ── eth0 198.18.0.1/24 2001:db8::1/64 ── [lan br0] ── eth0 198.18.0.2/24 2001:db8::2/64 ── peer
//!   node: tunl0 (the IPIP device; a veth stand-in named tunl0 when the kernel has no ipip)
//! ```
//!
//! The [`NetlinkFib`] is opened inside `node` with [`Netns::in_netns`] and then used from the
//! test thread: the netlink socket stays bound to the namespace it was created in. Routes are
//! asserted with `ip -j route show`, field by field, and every route that is not ours is
//! compared before and after (nothing else touched).

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use ::podbgp::fib::{Fib, FibConfig, FibError, FibOp, FibRoute, NetlinkFib, NextHop, OpKind};
use common::*;
use ipnet::IpNet;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The lab, the node namespace, and whether `tunl0` is a real ipip device.
fn node_lab(name: &str) -> (Lab, Netns, bool) {
    let lab = Lab::new(name);
    let lan = lab.lan("lan");
    let node = lab.netns("node");
    let peer = lab.netns("peer");
    lan.attach(&node, "eth0", &["198.18.0.1/24", "2001:db8::1/64"]);
    lan.attach(&peer, "eth0", &["198.18.0.2/24", "2001:db8::2/64"]);
    // The kernel creates a fallback tunl0 in every namespace once the ipip module is loaded;
    // `type ipip` creates one otherwise. Without ipip support, any device named tunl0 shows
    // the same routing semantics (an onlink gateway on that device).
    let real_ipip = node.exec(&["ip", "link", "show", "tunl0"]).is_ok()
        || node
            .exec(&["ip", "link", "add", "tunl0", "type", "ipip"])
            .is_ok();
    if !real_ipip {
        node.ip(&[
            "link", "add", "tunl0", "type", "veth", "peer", "name", "tunl0p",
        ]);
        node.ip(&["link", "set", "tunl0p", "up"]);
    }
    node.ip(&["link", "set", "tunl0", "up"]);
    (lab, node, real_ipip)
}

fn open_fib(node: &Netns) -> NetlinkFib {
    node.in_netns(|| NetlinkFib::open(FibConfig::default()))
        .expect("open the netlink FIB in the node namespace")
}

/// Every route of every table and family that is not ours, as JSON text, sorted.
fn foreign_routes(ns: &Netns) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for fam in ["-4", "-6"] {
        if let Value::Array(rs) = ns.ip_json(&[fam, "route", "show", "table", "all"]) {
            for r in rs {
                if !is_ours(&r) {
                    out.insert(r.to_string());
                }
            }
        }
    }
    out
}

fn is_ours(r: &Value) -> bool {
    matches!(r["protocol"].as_str(), Some("bird") | Some("12"))
}

fn own_count(ns: &Netns) -> usize {
    ["-4", "-6"]
        .iter()
        .map(
            |fam| match ns.ip_json(&[fam, "route", "show", "proto", "12"]) {
                Value::Array(rs) => rs.len(),
                _ => 0,
            },
        )
        .sum()
}

/// The `ip -j route show` object for exactly `dst` in the main table.
fn route_json(ns: &Netns, dst: &str) -> Value {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    match ns.ip_json(&[fam, "route", "show", "exact", dst]) {
        Value::Array(mut rs) if rs.len() == 1 => rs.remove(0),
        other => panic!("expected one route for {dst}, got {other}"),
    }
}

fn assert_route(ns: &Netns, dst: &str, want: Value) {
    let got = route_json(ns, dst);
    assert!(is_ours(&got), "{dst}: not tagged proto bird/12: {got}");
    assert_json_subset(&want, &got);
    same_array_lengths(&want, &got);
}

/// `assert_json_subset` ignores extra array elements; the arrays we name (next hops, flags)
/// must match exactly.
fn same_array_lengths(want: &Value, got: &Value) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                if let Some(gv) = g.get(k) {
                    same_array_lengths(wv, gv);
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "array length: expected {want}, got {got}");
            // Elements of ours are matched in order (the kernel keeps next-hop order).
            for (wv, gv) in w.iter().zip(g) {
                same_array_lengths(wv, gv);
            }
        }
        _ => {}
    }
}

fn no_errors(errs: Vec<(IpNet, FibError)>) {
    assert!(errs.is_empty(), "per-route errors: {errs:?}");
}

#[test]
fn installs_replaces_and_deletes_calico_routes() {
    if !require_root_and_frr() {
        return;
    }
    let (_lab, node, real_ipip) = node_lab("fib_routes");
    eprintln!("tunl0 is a real ipip device: {real_ipip}");
    let before = foreign_routes(&node);
    let mut fib = open_fib(&node);

    let plain = FibRoute::unicast(net("10.244.1.0/26"), vec![NextHop::via(ip("198.18.0.2"))]);
    let plain6 = FibRoute::unicast(
        net("2001:db8:44:1::/64"),
        vec![NextHop::via(ip("2001:db8::2"))],
    );
    let hole = FibRoute::blackhole(net("10.244.7.0/26"));
    let hole6 = FibRoute::blackhole(net("2001:db8:44:7::/122"));
    let ecmp = FibRoute::unicast(
        net("172.31.20.0/23"),
        vec![
            NextHop::via(ip("198.18.0.3")),
            NextHop::via(ip("198.18.0.4")),
        ],
    );
    let ecmp6 = FibRoute::unicast(
        net("2001:db8:44:2::/64"),
        vec![
            NextHop::via(ip("2001:db8::3")),
            NextHop::via(ip("2001:db8::4")),
        ],
    );
    // IPIP: the other node is in another subnet, reached through the tunnel.
    let ipip = FibRoute::unicast(
        net("10.245.1.0/26"),
        vec![NextHop::onlink(ip("198.19.5.2"), "tunl0")],
    );
    // ECMP composed with encapsulation per next hop (CrossSubnet, one near, one far).
    let mixed = FibRoute::unicast(
        net("10.246.1.0/26"),
        vec![
            NextHop::via(ip("198.18.0.5")),
            NextHop::onlink(ip("198.19.5.3"), "tunl0"),
        ],
    );
    let all = [&plain, &plain6, &hole, &hole6, &ecmp, &ecmp6, &ipip, &mixed];
    let batch: Vec<FibOp> = all.iter().map(|r| FibOp::Replace((*r).clone())).collect();
    no_errors(fib.apply(&batch));

    assert_route(
        &node,
        "10.244.1.0/26",
        json!({"dst": "10.244.1.0/26", "type": null, "gateway": "198.18.0.2", "dev": "eth0", "flags": [], "nexthops": null}),
    );
    assert_route(
        &node,
        "2001:db8:44:1::/64",
        json!({"dst": "2001:db8:44:1::/64", "gateway": "2001:db8::2", "dev": "eth0"}),
    );
    assert_route(
        &node,
        "10.244.7.0/26",
        json!({"type": "blackhole", "dst": "10.244.7.0/26"}),
    );
    assert_route(
        &node,
        "2001:db8:44:7::/122",
        json!({"type": "blackhole", "dst": "2001:db8:44:7::/122"}),
    );
    assert_route(
        &node,
        "172.31.20.0/23",
        json!({"dst": "172.31.20.0/23", "nexthops": [
            {"gateway": "198.18.0.3", "dev": "eth0", "weight": 1},
            {"gateway": "198.18.0.4", "dev": "eth0", "weight": 1},
        ]}),
    );
    assert_route(
        &node,
        "2001:db8:44:2::/64",
        json!({"dst": "2001:db8:44:2::/64", "nexthops": [
            {"gateway": "2001:db8::3", "dev": "eth0", "weight": 1},
            {"gateway": "2001:db8::4", "dev": "eth0", "weight": 1},
        ]}),
    );
    assert_route(
        &node,
        "10.245.1.0/26",
        json!({"dst": "10.245.1.0/26", "gateway": "198.19.5.2", "dev": "tunl0", "flags": ["onlink"]}),
    );
    assert_route(
        &node,
        "10.246.1.0/26",
        json!({"dst": "10.246.1.0/26", "nexthops": [
            {"gateway": "198.18.0.5", "dev": "eth0", "weight": 1, "flags": []},
            {"gateway": "198.19.5.3", "dev": "tunl0", "weight": 1, "flags": ["onlink"]},
        ]}),
    );
    assert_eq!(own_count(&node), all.len());
    assert_eq!(
        foreign_routes(&node),
        before,
        "a route that is not ours changed"
    );

    // dump_own reads back exactly what we installed (devices the kernel chose filled in).
    let dumped = fib.dump_own().expect("dump_own");
    assert_eq!(dumped.len(), all.len(), "{dumped:#?}");
    for want in all {
        assert!(
            dumped.iter().any(|have| want.satisfied_by(have)),
            "{want} not read back: {dumped:#?}"
        );
    }
    let plain_back = dumped.iter().find(|r| r.prefix == plain.prefix).unwrap();
    assert_eq!(
        plain_back,
        &FibRoute::unicast(
            plain.prefix,
            vec![NextHop {
                gateway: ip("198.18.0.2"),
                dev: Some("eth0".into()),
                onlink: false
            }]
        )
    );

    // Replace on change: new gateway; multipath → single; blackhole → unicast; single → ECMP.
    no_errors(fib.apply(&[
        FibOp::Replace(FibRoute::unicast(
            plain.prefix,
            vec![NextHop::via(ip("198.18.0.9"))],
        )),
        FibOp::Replace(FibRoute::unicast(
            ecmp.prefix,
            vec![NextHop::via(ip("198.18.0.4"))],
        )),
        FibOp::Replace(FibRoute::unicast(
            hole.prefix,
            vec![NextHop::via(ip("198.18.0.2"))],
        )),
        FibOp::Replace(FibRoute::unicast(
            ecmp6.prefix,
            vec![NextHop::via(ip("2001:db8::4"))],
        )),
        FibOp::Replace(FibRoute::unicast(
            plain6.prefix,
            vec![
                NextHop::via(ip("2001:db8::5")),
                NextHop::via(ip("2001:db8::6")),
            ],
        )),
    ]));
    assert_route(
        &node,
        "10.244.1.0/26",
        json!({"gateway": "198.18.0.9", "dev": "eth0"}),
    );
    assert_route(
        &node,
        "172.31.20.0/23",
        json!({"gateway": "198.18.0.4", "dev": "eth0", "nexthops": null}),
    );
    assert_route(
        &node,
        "10.244.7.0/26",
        json!({"type": null, "gateway": "198.18.0.2", "dev": "eth0"}),
    );
    assert_route(
        &node,
        "2001:db8:44:1::/64",
        json!({"nexthops": [{"gateway": "2001:db8::5"}, {"gateway": "2001:db8::6"}]}),
    );
    assert_route(
        &node,
        "2001:db8:44:2::/64",
        json!({"gateway": "2001:db8::4", "dev": "eth0", "nexthops": null}),
    );
    assert_eq!(own_count(&node), all.len(), "replace must not add routes");

    // Delete everything.
    let dels: Vec<FibOp> = all.iter().map(|r| FibOp::Delete(r.prefix)).collect();
    no_errors(fib.apply(&dels));
    assert_eq!(own_count(&node), 0);
    assert!(fib.dump_own().unwrap().is_empty());
    assert_eq!(
        foreign_routes(&node),
        before,
        "a route that is not ours changed"
    );

    // Deleting again: reported per route, not fatal.
    let errs = fib.apply(&dels[..2]);
    assert_eq!(
        errs,
        vec![
            (plain.prefix, FibError::NotInstalled),
            (plain6.prefix, FibError::NotInstalled)
        ]
    );
}

#[test]
fn other_protocols_routes_are_left_untouched_and_reported() {
    if !require_root_and_frr() {
        return;
    }
    let (_lab, node, _) = node_lab("fib_foreign");
    node.ip(&[
        "route",
        "add",
        "10.244.5.0/26",
        "via",
        "198.18.0.2",
        "proto",
        "static",
    ]);
    node.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:44:5::/64",
        "via",
        "2001:db8::2",
        "proto",
        "static",
    ]);
    // Another protocol's route with another metric: the kernel would not replace it.
    node.ip(&[
        "route",
        "add",
        "10.244.6.0/26",
        "via",
        "198.18.0.2",
        "proto",
        "static",
        "metric",
        "100",
    ]);
    let before = foreign_routes(&node);
    let mut fib = open_fib(&node);

    let errs = fib.apply(&[
        FibOp::Replace(FibRoute::blackhole(net("10.244.5.0/26"))),
        FibOp::Replace(FibRoute::unicast(
            net("2001:db8:44:5::/64"),
            vec![NextHop::via(ip("2001:db8::3"))],
        )),
        FibOp::Replace(FibRoute::unicast(
            net("10.244.6.0/26"),
            vec![NextHop::via(ip("198.18.0.3"))],
        )),
    ]);
    assert_eq!(
        errs,
        vec![
            (net("10.244.5.0/26"), FibError::ForeignRoute { protocol: 4 }),
            (
                net("2001:db8:44:5::/64"),
                FibError::ForeignRoute { protocol: 4 }
            ),
        ]
    );
    assert_eq!(foreign_routes(&node), before, "a static route was changed");
    // Ours went in beside the metric-100 static one.
    let ours = node.ip_json(&[
        "-4",
        "route",
        "show",
        "exact",
        "10.244.6.0/26",
        "proto",
        "12",
    ]);
    assert_json_subset(&json!([{"gateway": "198.18.0.3"}]), &ours);
    same_array_lengths(&json!([{"gateway": "198.18.0.3"}]), &ours);

    // Deletes name our protocol: the kernel finds none of ours for the static prefixes.
    let errs = fib.apply(&[
        FibOp::Delete(net("10.244.5.0/26")),
        FibOp::Delete(net("2001:db8:44:5::/64")),
        FibOp::Delete(net("10.244.6.0/26")),
    ]);
    assert_eq!(
        errs,
        vec![
            (net("10.244.5.0/26"), FibError::NotInstalled),
            (net("2001:db8:44:5::/64"), FibError::NotInstalled),
        ]
    );
    assert_eq!(own_count(&node), 0);
    assert_eq!(foreign_routes(&node), before, "a static route was deleted");
}

#[test]
fn errors_are_per_route() {
    if !require_root_and_frr() {
        return;
    }
    let (_lab, node, _) = node_lab("fib_errors");
    let mut fib = open_fib(&node);
    let errs = fib.apply(&[
        FibOp::Replace(FibRoute::unicast(
            net("10.244.1.0/26"),
            vec![NextHop::onlink(ip("198.19.5.2"), "nosuch0")],
        )),
        // Not on a connected subnet and not onlink: the kernel refuses it.
        FibOp::Replace(FibRoute::unicast(
            net("10.244.2.0/26"),
            vec![NextHop::via(ip("198.19.200.1"))],
        )),
        FibOp::Replace(FibRoute::unicast(
            net("10.244.3.0/26"),
            vec![NextHop::via(ip("198.18.0.2"))],
        )),
        FibOp::Replace(FibRoute::unicast(net("10.244.4.0/26"), vec![])),
    ]);
    let kinds: Vec<(String, String)> = errs
        .iter()
        .map(|(p, e)| (p.to_string(), format!("{e:?}")))
        .collect();
    assert_eq!(errs.len(), 3, "{kinds:?}");
    assert_eq!(
        errs[0],
        (
            net("10.244.1.0/26"),
            FibError::UnknownDevice("nosuch0".into())
        )
    );
    assert!(
        matches!(errs[1], (p, FibError::Kernel { op: OpKind::Replace, .. }) if p == net("10.244.2.0/26")),
        "{kinds:?}"
    );
    assert!(matches!(errs[2], (_, FibError::Invalid(_))), "{kinds:?}");
    // The good route in the middle of the batch went in.
    assert_route(
        &node,
        "10.244.3.0/26",
        json!({"gateway": "198.18.0.2", "dev": "eth0"}),
    );
    assert_eq!(own_count(&node), 1);
}

#[test]
fn ten_thousand_routes_in_one_batch_each_way() {
    if !require_root_and_frr() {
        return;
    }
    const N: usize = 10_000;
    let (_lab, node, _) = node_lab("fib_batch");
    let before = foreign_routes(&node);
    let mut fib = open_fib(&node);
    let gw = ip("198.18.0.2");
    let routes: Vec<FibRoute> = (0..N)
        .map(|i| {
            let a = std::net::Ipv4Addr::new(10, 244, (i / 256) as u8, (i % 256) as u8);
            FibRoute::unicast(IpNet::from(IpAddr::V4(a)), vec![NextHop::via(gw)])
        })
        .collect();

    let add: Vec<FibOp> = routes.iter().cloned().map(FibOp::Replace).collect();
    let t = Instant::now();
    no_errors(fib.apply(&add));
    let took = t.elapsed();
    eprintln!(
        "installed {N} routes in one apply: {took:?} ({:.0} routes/s)",
        N as f64 / took.as_secs_f64()
    );
    assert_eq!(own_count(&node), N);

    let dumped = fib.dump_own().expect("dump_own");
    assert_eq!(dumped.len(), N);
    for (want, have) in routes.iter().zip(&dumped) {
        assert!(want.satisfied_by(have), "{want} vs {have}");
    }

    let del: Vec<FibOp> = routes.iter().map(|r| FibOp::Delete(r.prefix)).collect();
    let t = Instant::now();
    no_errors(fib.apply(&del));
    let took = t.elapsed();
    eprintln!(
        "deleted {N} routes in one apply: {took:?} ({:.0} routes/s)",
        N as f64 / took.as_secs_f64()
    );
    assert_eq!(own_count(&node), 0);
    assert_eq!(foreign_routes(&node), before);
}

#[test]
fn protocol_table_and_metric_are_configurable() {
    if !require_root_and_frr() {
        return;
    }
    let (_lab, node, _) = node_lab("fib_config");
    // A table id above 255 only fits in RTA_TABLE.
    let cfg = FibConfig {
        protocol: 201,
        table: 1000,
        metric: Some(1024),
    };
    let mut fib = node
        .in_netns(|| NetlinkFib::open(cfg.clone()))
        .expect("open");
    let mut default_fib = open_fib(&node);
    let route = FibRoute::unicast(net("10.244.1.0/26"), vec![NextHop::via(ip("198.18.0.2"))]);
    let route6 = FibRoute::blackhole(net("2001:db8:44:7::/122"));
    no_errors(fib.apply(&[
        FibOp::Replace(route.clone()),
        FibOp::Replace(route6.clone()),
    ]));
    let got = node.ip_json(&["-4", "route", "show", "table", "1000", "proto", "201"]);
    let want =
        json!([{"dst": "10.244.1.0/26", "gateway": "198.18.0.2", "dev": "eth0", "metric": 1024}]);
    assert_json_subset(&want, &got);
    same_array_lengths(&want, &got);
    let got6 = node.ip_json(&["-6", "route", "show", "table", "1000", "proto", "201"]);
    let want6 = json!([{"type": "blackhole", "dst": "2001:db8:44:7::/122", "metric": 1024}]);
    assert_json_subset(&want6, &got6);
    same_array_lengths(&want6, &got6);
    assert_eq!(own_count(&node), 0, "nothing in main with protocol 12");

    let dumped = fib.dump_own().unwrap();
    assert_eq!(dumped.len(), 2, "{dumped:?}");
    assert!(route.satisfied_by(&dumped[0]) && route6.satisfied_by(&dumped[1]));
    // A FIB with the default protocol and table sees none of them and cannot delete them.
    assert!(default_fib.dump_own().unwrap().is_empty());
    assert_eq!(
        default_fib.apply(&[FibOp::Delete(route.prefix)]),
        vec![(route.prefix, FibError::NotInstalled)]
    );
    no_errors(fib.apply(&[FibOp::Delete(route.prefix), FibOp::Delete(route6.prefix)]));
    assert!(fib.dump_own().unwrap().is_empty());
}
