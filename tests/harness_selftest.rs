//! Self-test of the namespace harness (`tests/common`), with real FRR only (no podbgp yet).
//!
//! Topology of the FRR pair tests (one bridge segment, two routers):
//!
//! ```text
//!   r1 eth0 198.18.0.1/24 2001:db8::1/64 ──┐            ┌── r2 eth0 198.18.0.2/24 2001:db8::2/64
//!   announces 10.244.1.0/26, 2001:db8:1::/64 └── lan br0 ─┘ announces 10.244.2.0/26, 2001:db8:2::/64
//! ```
//!
//! Each router has an IPv4-transport session (IPv4 unicast only) and an IPv6-transport session
//! (IPv6 unicast only, `no neighbor … activate` under IPv4: pitfall 5). The tests check, via
//! `vtysh … json` subset matches and `ip -j route`, that both sides are Established with one
//! prefix per session, that zebra installed the peer's routes in the namespace FIB, that the
//! sessions drop when one bgpd is stopped and come back when it restarts, and that nothing is
//! left behind (namespaces, processes, scratch directory).
//!
//! Run: `cargo nextest run --test harness_selftest` (as root, FRR installed).

mod common;

use common::netns::netns_list;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
const FIB_TIMEOUT: Duration = Duration::from_secs(15);

/// Router `i` (1 or 2) of the pair: addresses, announced prefixes.
struct Router {
    v4: String,
    v6: String,
    net4: String,
    net6: String,
}

fn router(i: u8) -> Router {
    Router {
        v4: format!("198.18.0.{i}"),
        v6: format!("2001:db8::{i}"),
        net4: format!("10.244.{i}.0/26"),
        net6: format!("2001:db8:{i}::/64"),
    }
}

/// What the lab left behind that cleanup must remove.
struct Footprint {
    namespaces: Vec<String>,
    dir: PathBuf,
}

/// Asserts that the namespaces, the scratch directory and every process whose command line
/// mentions the scratch directory (our FRR daemons) are gone.
fn assert_cleaned_up(fp: &Footprint) {
    let existing = netns_list();
    let left: Vec<_> = fp
        .namespaces
        .iter()
        .filter(|n| existing.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        !fp.dir.exists(),
        "lab directory left behind: {}",
        fp.dir.display()
    );
    let needle = fp.dir.to_string_lossy().into_owned();
    let mut stray = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            stray.push(format!("{}: {cmdline}", name.to_string_lossy()));
        }
    }
    assert!(stray.is_empty(), "processes left behind: {stray:?}");
}

/// The link-local address of `ifname` in `ns`.
fn link_local(ns: &Netns, ifname: &str) -> String {
    ns.addresses()
        .into_iter()
        .find(|(i, a)| i == ifname && a.starts_with("fe80:"))
        .map(|(_, a)| a.split('/').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("{}: no link-local address on {ifname}", ns.short_name()))
}

/// How [`pair_scenario`] stops r1's bgpd.
#[derive(Clone, Copy)]
enum Stop {
    /// [`Frr::stop`]: SIGTERM, bgpd sends a Cease NOTIFICATION.
    Graceful,
    /// [`Frr::kill_bgpd`]: SIGKILL, the kernel closes the TCP connections.
    Crash,
}

/// Builds the pair, checks sessions, prefixes and FIB, stops/restarts r1's bgpd, cleans up.
fn pair_scenario(test: &str, as1: u32, as2: u32, stop: Stop) {
    if !require_root_and_frr() {
        return;
    }
    let t0 = Instant::now();
    let ebgp = as1 != as2;
    let lab = Lab::new(test);
    let lan = lab.lan("lan");
    let (r1, r2) = (router(1), router(2));
    let n1 = lab.netns("r1");
    let n2 = lab.netns("r2");
    lan.attach(
        &n1,
        "eth0",
        &[&format!("{}/24", r1.v4), &format!("{}/64", r1.v6)],
    );
    lan.attach(
        &n2,
        "eth0",
        &[&format!("{}/24", r2.v4), &format!("{}/64", r2.v6)],
    );
    let conf = |me: &Router, my_as: u32, peer: &Router, peer_as: u32, host: &str| {
        BgpdConfig::new(my_as, &me.v4)
            .hostname(host)
            .neighbor(&peer.v4, peer_as)
            .neighbor(&peer.v6, peer_as)
            .network(&me.net4)
            .network(&me.net6)
            .render()
    };
    let mut f1 = Frr::new(&n1, &conf(&r1, as1, &r2, as2, "r1"));
    let f2 = Frr::new(&n2, &conf(&r2, as2, &r1, as1, "r2"));

    // Both sides Established, one prefix per session; each session only in its own family.
    let sides = [(&f1, as1, &r2, as2), (&f2, as2, &r1, as1)];
    for (frr, my_as, peer, peer_as) in sides {
        let session = json!({"remoteAs": peer_as, "state": "Established", "pfxRcd": 1});
        frr.wait_json(
            "show bgp summary json",
            &json!({
                "ipv4Unicast": {"as": my_as, "peers": {&peer.v4: session, &peer.v6: null}},
                "ipv6Unicast": {"as": my_as, "peers": {&peer.v6: session, &peer.v4: null}},
            }),
            SESSION_TIMEOUT,
        );
        // The harness's own helpers agree with the JSON.
        let mut want = vec![peer.v4.clone(), peer.v6.clone()];
        want.sort();
        assert_eq!(frr.established_peers().unwrap(), want);
        assert_eq!(frr.prefix_count(&peer.v4).unwrap(), 1);
        assert_eq!(frr.prefix_count(&peer.v6).unwrap(), 1);
        assert_eq!(frr.peer_state(&peer.v6).unwrap(), "Established");
        let link_kind = if ebgp {
            "nbrExternalLink"
        } else {
            "nbrInternalLink"
        };
        assert_json_subset(
            &json!({&peer.v4: {
                "localAs": my_as,
                link_kind: true,
                "neighborCapabilities": {"4byteAs": "advertisedAndReceived"},
            }}),
            &Value::Object(frr.neighbors().unwrap()),
        );
        // The peer's routes are best in the BGP tables, with the right AS path.
        let as_path = if ebgp {
            peer_as.to_string()
        } else {
            String::new()
        };
        let path = json!([{"valid": true, "bestpath": true, "path": as_path}]);
        assert_json_subset(
            &json!({&peer.net4: path, &peer.net4.replace("/26", "/27"): null}),
            &Value::Object(frr.routes(Afi::Ipv4).unwrap()),
        );
        assert_json_subset(
            &json!({&peer.net6: path}),
            &Value::Object(frr.routes(Afi::Ipv6).unwrap()),
        );
    }

    // zebra installed the peer's routes into each namespace's FIB.
    for (ns, peer_ns, peer) in [(&n1, &n2, &r2), (&n2, &n1, &r1)] {
        // FRR sends its link-local next hop too on a shared segment, and zebra prefers it.
        let v6_gateway = link_local(peer_ns, "eth0");
        for (dst, gateway) in [(&peer.net4, &peer.v4), (&peer.net6, &v6_gateway)] {
            let what = format!("{}: FIB route {dst} via {gateway}", ns.short_name());
            poll_until(FIB_TIMEOUT, &what, || {
                let route = ns.route(dst).ok_or("no such kernel route")?;
                json_subset(
                    &json!({"dst": dst, "protocol": "bgp", "dev": "eth0", "gateway": gateway}),
                    &route.raw,
                )
            });
        }
        assert_eq!(ns.routes_filtered(Afi::Ipv4, &["proto", "bgp"]).len(), 1);
        assert_eq!(ns.routes_filtered(Afi::Ipv6, &["proto", "bgp"]).len(), 1);
    }

    // Stop r1's bgpd: r2's sessions leave Established and r1's routes are withdrawn.
    let old_pid = f1.bgpd_pid().unwrap();
    match stop {
        Stop::Graceful => f1.stop(),
        Stop::Crash => f1.kill_bgpd(),
    }
    assert!(f1.bgpd_pid().is_none());
    poll_until(SESSION_TIMEOUT, "r2: both sessions to r1 down", || match f2
        .established_peers()?
        .as_slice()
    {
        [] => Ok(()),
        up => Err(format!("still Established: {up:?}")),
    });
    poll_until(FIB_TIMEOUT, "r2: r1's routes gone from BGP and FIB", || {
        for (afi, net) in [(Afi::Ipv4, &r1.net4), (Afi::Ipv6, &r1.net6)] {
            if f2.routes(afi)?.contains_key(net.as_str()) {
                return Err(format!("{net} still in r2's BGP table"));
            }
            if let Some(r) = n2.route(net) {
                return Err(format!("{net} still in r2's FIB: {}", r.raw));
            }
        }
        Ok(())
    });

    // Restart: Established again, prefixes and FIB routes back.
    f1.start();
    assert_ne!(f1.bgpd_pid(), Some(old_pid));
    for (frr, peer) in [(&f1, &r2), (&f2, &r1)] {
        frr.wait_established(&[&peer.v4, &peer.v6], SESSION_TIMEOUT);
        poll_until(
            SESSION_TIMEOUT,
            "one prefix per session after restart",
            || {
                for p in [&peer.v4, &peer.v6] {
                    match frr.prefix_count(p)? {
                        1 => {}
                        n => return Err(format!("{p}: {n} prefixes")),
                    }
                }
                Ok(())
            },
        );
    }
    poll_until(FIB_TIMEOUT, "r2: r1's IPv4 route back in the FIB", || {
        n2.route(&r1.net4).map(|_| ()).ok_or("missing".to_string())
    });
    eprintln!("{test}: scenario took {:.1?}", t0.elapsed());

    let fp = Footprint {
        namespaces: lab.namespace_names(),
        dir: lab.dir().to_path_buf(),
    };
    assert_eq!(fp.namespaces.len(), 3);
    drop((f1, f2, n1, n2, lan, lab));
    assert_cleaned_up(&fp);
}

#[test]
fn frr_ibgp_pair_v4_v6_sessions_fib_and_restart() {
    pair_scenario("ibgp", 65000, 65000, Stop::Graceful);
}

#[test]
fn frr_ebgp_4octet_pair_v4_v6_sessions_fib_and_restart() {
    pair_scenario("ebgp4", 4_200_000_001, 4_200_000_002, Stop::Crash);
}

/// Point-to-point veths carry IPv4 and IPv6 between two namespaces (the test process talks
/// through them with `in_netns`); a spawned process runs inside its namespace; nothing shows
/// up in the root namespace; everything is gone after drop.
#[test]
fn lab_p2p_link_spawn_and_cleanup() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("p2p");
    let a = lab.netns("a");
    let b = lab.netns("b");
    lab.p2p(
        &a,
        "eth1",
        &["198.18.1.1/30", "2001:db8:ff::1/64"],
        &b,
        "eth1",
        &["198.18.1.2/30", "2001:db8:ff::2/64"],
    );
    let addrs = b.addresses();
    assert!(
        addrs.contains(&("eth1".into(), "198.18.1.2/30".into())),
        "{addrs:?}"
    );
    assert!(
        addrs.contains(&("eth1".into(), "2001:db8:ff::2/64".into())),
        "{addrs:?}"
    );
    assert!(
        addrs.contains(&("lo".into(), "127.0.0.1/8".into())),
        "lo is up: {addrs:?}"
    );
    assert_eq!(b.routes(Afi::Ipv4)[0].dst, "198.18.1.0/30");

    for (listen, connect) in [
        ("198.18.1.1:0", "198.18.1.1"),
        ("[2001:db8:ff::1]:0", "2001:db8:ff::1"),
    ] {
        let listener = a.in_netns(|| TcpListener::bind(listen).unwrap());
        let port = listener.local_addr().unwrap().port();
        let target = if connect.contains(':') {
            format!("[{connect}]:{port}")
        } else {
            format!("{connect}:{port}")
        };
        let sent = b.in_netns(move || {
            let mut s = TcpStream::connect(&target).unwrap();
            s.write_all(b"hello").unwrap();
            s.local_addr().unwrap()
        });
        let (mut conn, peer) = listener.accept().unwrap();
        assert_eq!(peer, sent);
        let mut buf = String::new();
        conn.read_to_string(&mut buf).unwrap();
        assert_eq!(buf, "hello");
    }

    let mut sleeper = a.spawn("sleeper", &["sleep", "600"]);
    let pid = sleeper.pid();
    // `spawn` returns once `ip netns exec` is forked; it joins the namespace right after.
    poll_until(Duration::from_secs(5), "sleep inside netns a", || {
        let in_ns = common::netns::run_cmd("ip", &["netns", "pids", a.name()])
            .map_err(|e| e.to_string())?;
        match in_ns.split_whitespace().any(|p| p == pid.to_string()) {
            true => Ok(()),
            false => Err(format!("pid {pid} not in [{in_ns}]")),
        }
    });
    assert!(sleeper.is_running());
    let out = a.run(&["sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(out, "out\n");
    let err = a.exec(&["sh", "-c", "echo boom >&2; exit 3"]).unwrap_err();
    assert_eq!(err.code, Some(3));
    assert!(
        err.to_string().contains("boom") && err.to_string().contains("exited with code 3"),
        "{err}"
    );

    // The root namespace has none of the lab's links or addresses.
    let root = common::netns::run_cmd("ip", &["-j", "addr", "show"]).unwrap();
    assert!(
        !root.contains("198.18.1.") && !root.contains("2001:db8:ff::"),
        "root ns touched: {root}"
    );

    let fp = Footprint {
        namespaces: lab.namespace_names(),
        dir: lab.dir().to_path_buf(),
    };
    drop((sleeper, a, b, lab));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "sleep {pid} still running"
    );
    assert_cleaned_up(&fp);
}

/// A panic in the middle of building a topology (here: an address outside the test ranges)
/// still removes the namespaces and the scratch directory.
#[test]
fn lab_cleans_up_on_panic() {
    if !require_root_and_frr() {
        return;
    }
    let mut footprint = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new("panic");
        let a = lab.netns("a");
        let b = lab.netns("b");
        footprint = Some(Footprint {
            namespaces: lab.namespace_names(),
            dir: lab.dir().to_path_buf(),
        });
        let existing = netns_list();
        assert!(lab.namespace_names().iter().all(|n| existing.contains(n)));
        lab.p2p(&a, "eth1", &["198.18.2.1/30"], &b, "eth1", &["10.0.0.2/30"]);
    }));
    let msg = result.expect_err("a non-test address must panic");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("outside 198.18.0.0/15"), "{msg}");
    assert_cleaned_up(&footprint.unwrap());
}

#[test]
fn json_subset_semantics() {
    let actual = json!({
        "ipv4Unicast": {"peers": {"198.18.0.2": {"state": "Established", "pfxRcd": 1}}},
        "list": [{"a": 1, "b": 2}, {"a": 3}],
        "n": 1.0,
    });
    assert_json_subset(
        &json!({"ipv4Unicast": {"peers": {"198.18.0.2": {"state": "Established"}}}}),
        &actual,
    );
    assert_json_subset(
        &json!({"list": [{"a": 3}, {"b": 2}], "n": 1, "missing": null}),
        &actual,
    );
    assert_json_subset(
        &json!({"list": "*", "ipv4Unicast": {"peers": {"198.18.0.2": "*"}}}),
        &actual,
    );

    let err = json_subset(
        &json!({"ipv4Unicast": {"peers": {"198.18.0.2": {"state": "Active"}}}}),
        &actual,
    )
    .unwrap_err();
    assert_eq!(
        err,
        r#"$.ipv4Unicast.peers["198.18.0.2"].state: expected "Active", got "Established""#
    );
    let err = json_subset(&json!({"ipv4Unicast": {"nope": 1}}), &actual).unwrap_err();
    assert!(
        err.starts_with("$.ipv4Unicast.nope: key missing (present keys: peers)"),
        "{err}"
    );
    let err = json_subset(&json!({"n": null}), &actual).unwrap_err();
    assert!(
        err.starts_with("$.n: expected the key to be absent"),
        "{err}"
    );
    // Each expected element needs its own actual element.
    let err = json_subset(&json!({"list": [{"a": 3}, {"a": 3}]}), &actual).unwrap_err();
    assert!(err.contains("expected element #1"), "{err}");
    assert!(
        err.contains("closest mismatch: $.list[0].a: expected 3, got 1"),
        "{err}"
    );
}

#[test]
fn poll_until_returns_value_and_times_out_with_last_error() {
    let mut n = 0;
    let v = poll_until(Duration::from_secs(5), "third attempt", || {
        n += 1;
        if n == 3 {
            Ok(n * 10)
        } else {
            Err(format!("attempt {n}"))
        }
    });
    assert_eq!(v, 30);

    let started = Instant::now();
    let panic = std::panic::catch_unwind(|| {
        poll_until(
            Duration::from_millis(300),
            "the impossible",
            || -> Result<(), String> { Err("still impossible".into()) },
        )
    })
    .expect_err("must time out");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("waiting for: the impossible"), "{msg}");
    assert!(msg.contains("last error: still impossible"), "{msg}");
}

/// A config line bgpd rejects fails the test at once, naming the line, instead of leaving
/// a half-configured daemon to time out later.
#[test]
fn frr_rejects_bad_config_early() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("badconf");
    let ns = lab.netns("r1");
    let conf = BgpdConfig::new(65000, "198.18.0.1")
        .router_line("neighbor 198.18.0.2 remote-as sixty-five")
        .render();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Frr::new(&ns, &conf)))
        .err()
        .expect("bad config must panic");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("rejects") && msg.contains("remote-as sixty-five"),
        "{msg}"
    );
}
