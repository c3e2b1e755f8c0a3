//! Maximum-prefix limits against real FRR (issue 9): a peer that sends more prefixes than its
//! limit is closed with Cease / Maximum Number of Prefixes Reached (RFC 4486 subcode 1, data
//! AFI/SAFI/limit), its routes are withdrawn, the session stays down (no restart configured),
//! and another peer's session and routes are untouched. A limit with a restart interval
//! brings the session back by itself.
//!
//! ```text
//!   pod 198.18.0.1 (podbgp AS 64512) ── lan ── big 198.18.0.2 (FRR AS 65002, 12 prefixes)
//!                                          └── small 198.18.0.3 (FRR AS 65003, 2 prefixes)
//! ```

mod common;

use std::time::Duration;

use common::*;

const TIMEOUT: Duration = Duration::from_secs(30);

fn frr_conf(asn: u32, me: &str, prefixes: &[String]) -> String {
    let mut c = BgpdConfig::new(asn, me)
        .neighbor("198.18.0.1", 64512)
        .router_line("neighbor 198.18.0.1 timers connect 1");
    for p in prefixes {
        c = c.network(p);
    }
    c.render()
}

fn pod_config(restart: Option<u64>) -> String {
    let restart = restart
        .map(|s| format!(", max_prefixes_restart: {s}"))
        .unwrap_or_default();
    format!(
        "local_as: 64512\nrouter_id: 198.18.0.1\nlisten: {{ address: 198.18.0.1, port: 179 }}\n\
         neighbors:\n\
         \x20 - {{ address: 198.18.0.2, remote_as: 65002, max_prefixes: 10{restart} }}\n\
         \x20 - {{ address: 198.18.0.3, remote_as: 65003, max_prefixes: 10 }}\n"
    )
}

fn peer<'a>(peers: &'a [Value], addr: &str) -> &'a Value {
    peers
        .iter()
        .find(|p| p["address"] == addr)
        .unwrap_or_else(|| panic!("no peer {addr} in {peers:?}"))
}

#[test]
fn max_prefixes_closes_only_the_offending_session() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("limits");
    let lan = lab.lan("lan");
    let pod_ns = lab.netns("pod");
    let big_ns = lab.netns("big");
    let small_ns = lab.netns("small");
    lan.attach(&pod_ns, "eth0", &["198.18.0.1/24"]);
    lan.attach(&big_ns, "eth0", &["198.18.0.2/24"]);
    lan.attach(&small_ns, "eth0", &["198.18.0.3/24"]);
    let many: Vec<String> = (0..12).map(|i| format!("198.19.{i}.0/24")).collect();
    let two: Vec<String> = (100..102).map(|i| format!("198.19.{i}.0/24")).collect();
    let pod = Podbgp::start(&pod_ns, "pod", &pod_config(None));
    let big = Frr::new(&big_ns, &frr_conf(65002, "198.18.0.2", &many));
    let _small = Frr::new(&small_ns, &frr_conf(65003, "198.18.0.3", &two));

    // big exceeds the limit: FRR sees the Cease/1 NOTIFICATION.
    poll_until(TIMEOUT, "big receives Cease/1 from podbgp", || {
        let n = big.vtysh_json("show bgp neighbors 198.18.0.1 json");
        let n = &n["198.18.0.1"];
        let reason = n["lastNotificationReason"].as_str().unwrap_or("");
        let code = n["lastErrorCodeSubcode"].as_str().unwrap_or("");
        if code == "0601" || reason.contains("Maximum Number of Prefixes") {
            Ok(())
        } else {
            Err(format!(
                "last notification: {code} {reason:?}; {}",
                n["bgpState"]
            ))
        }
    });
    // podbgp: big is down for good (no restart configured) with nothing kept; small is up
    // with its two prefixes.
    poll_until(TIMEOUT, "small established with its routes", || {
        let peers = pod.peers()?;
        let s = peer(&peers, "198.18.0.3");
        if s["state"] == "established" && s["families"][0]["received"] == 2 {
            Ok(())
        } else {
            Err(format!("{s}"))
        }
    });
    let transitions_small =
        peer(&pod.peers().unwrap(), "198.18.0.3")["established_transitions"].clone();
    std::thread::sleep(Duration::from_secs(3)); // long enough for FRR's 1 s connect retry
    let peers = pod.peers().unwrap();
    let b = peer(&peers, "198.18.0.2");
    assert_ne!(
        b["state"], "established",
        "big came back without a restart interval: {b}"
    );
    assert_eq!(b["families"][0]["received"], 0, "big's routes kept: {b}");
    // Why it is down (FRR's reconnects since are refused with Cease/5 and show as the last
    // error; the state's cause stays the max-prefix stop).
    assert!(
        b["info"].as_str().unwrap_or("").contains("cease/1"),
        "info: {b}"
    );
    assert_eq!(
        peer(&peers, "198.18.0.3")["established_transitions"],
        transitions_small,
        "small's session moved"
    );
    let loc = pod.cli(&["routes", "--table", "loc-rib"]).unwrap();
    let prefixes: Vec<&str> = loc
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["prefix"].as_str())
        .collect();
    assert_eq!(prefixes, vec!["198.19.100.0/24", "198.19.101.0/24"]);

    // An operator reset clears it (it then exceeds again).
    let before = big.vtysh_json("show bgp neighbors 198.18.0.1 json")["198.18.0.1"]
        ["connectionsEstablished"]
        .as_u64()
        .unwrap_or(0);
    pod.cli(&["reset", "198.18.0.2"]).unwrap();
    poll_until(TIMEOUT, "big connects again after the reset", || {
        let n = big.vtysh_json("show bgp neighbors 198.18.0.1 json");
        let now = n["198.18.0.1"]["connectionsEstablished"]
            .as_u64()
            .unwrap_or(0);
        if now > before {
            Ok(())
        } else {
            Err(format!("{now} <= {before}"))
        }
    });
}

#[test]
fn max_prefixes_with_restart_comes_back_by_itself() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("limits_restart");
    let lan = lab.lan("lan");
    let pod_ns = lab.netns("pod");
    let big_ns = lab.netns("big");
    lan.attach(&pod_ns, "eth0", &["198.18.0.1/24"]);
    lan.attach(&big_ns, "eth0", &["198.18.0.2/24"]);
    let many: Vec<String> = (0..12).map(|i| format!("198.19.{i}.0/24")).collect();
    let pod = Podbgp::start(&pod_ns, "pod", &pod_config(Some(2)));
    let big = Frr::new(&big_ns, &frr_conf(65002, "198.18.0.2", &many));
    // Exceeds, is closed, restarts after 2 s, exceeds again: FRR counts several sessions.
    poll_until(TIMEOUT, "big is closed at least twice", || {
        let n = big.vtysh_json("show bgp neighbors 198.18.0.1 json");
        let dropped = n["198.18.0.1"]["connectionsDropped"].as_u64().unwrap_or(0);
        if dropped >= 2 {
            Ok(())
        } else {
            Err(format!("dropped {dropped}"))
        }
    });
    let _ = pod;
}
