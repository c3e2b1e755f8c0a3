//! Transport security against real FRR in network namespaces (issue 9): TCP MD5 (RFC 2385),
//! GTSM (RFC 5082), passwords from Calico Secrets, and running with only `CAP_NET_ADMIN` +
//! `CAP_NET_BIND_SERVICE`.
//!
//! `md5_with_frr` — YAML configuration, one LAN:
//! ```text
//!   pod 198.18.0.1 (podbgp AS 64512) ── lan ── good 198.18.0.2  both "s3cret"
//!                                          ├── wrong 198.18.0.3 podbgp "s3cret", FRR "other"
//!                                          ├── nokey 198.18.0.4 podbgp none, FRR "s3cret"
//!                                          └── onesided 198.18.0.5 podbgp "s3cret", FRR none
//! ```
//! Only `good` comes up (FRR passive there: podbgp's outgoing socket signs); the kernel counts the dropped segments of the three others
//! (`TCPMD5Failure`, `TCPMD5NotFound`, `TCPMD5Unexpected`). A live reload that fixes the three
//! passwords (change, add, remove a key on the listener) brings them up without touching
//! `good`.
//!
//! `gtsm_two_hops` — a router namespace forwards between two segments:
//! ```text
//!   near 198.18.0.2 ── lan ── pod 198.18.0.1
//!                             pod 198.18.1.1 ── router 198.18.1.2 │ 198.18.2.1 ── farlan ── far1 198.18.2.2
//!                                                                                     └── far2 198.18.2.3
//! ```
//! Every FRR uses `ttl-security hops` (1 for near, 2 for the far ones). With `ttl_security: 1`
//! on podbgp, near establishes and neither far peer does: far1 only connects to podbgp (podbgp
//! passive: the listener's filter drops its SYNs), podbgp only connects to far2 (FRR passive:
//! `IP_MINTTL` drops the SYN-ACK, `TCPMinTTLDrop`). A reload to `ttl_security: 2` brings both
//! up, so nothing else was in the way.
//!
//! `calico_secrets` — datastore mode: a BGPPeer password from a `kind: Secret` document
//! (`data`, base64), the mesh password (`nodeMeshPassword`) from `stringData`, and a BGPPeer
//! whose Secret is missing: that peer stays down with an error naming the BGPPeer and the
//! Secret, the others come up, and mounting the Secret under `--secrets-dir` brings it up.
//!
//! `least_privilege` — the same kind of node run by `setpriv` as `nobody` with only
//! `CAP_NET_ADMIN` + `CAP_NET_BIND_SERVICE`: it listens on port 179, establishes an MD5 session
//! with FRR and installs the received route in the kernel.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const TIMEOUT: Duration = Duration::from_secs(45);

/// `TcpExt` counters of a namespace (`/proc/net/netstat`).
fn tcp_ext(ns: &Netns) -> BTreeMap<String, u64> {
    let text = ns.run(&["cat", "/proc/net/netstat"]);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let [names, values] = lines.as_slice() else {
        panic!("no TcpExt lines in /proc/net/netstat:\n{text}");
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .map(|(n, v)| (n.to_string(), v.parse().unwrap_or(0)))
        .collect()
}

/// Checks `check` again and again for `how_long`; panics the first time it fails. For "never
/// happens" assertions, after the attempts were seen to happen.
#[track_caller]
fn holds_for(how_long: Duration, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        if let Err(e) = check() {
            panic!("{what}: {e}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn peer(pod: &Podbgp, addr: &str) -> Result<Value, String> {
    pod.peers()?
        .into_iter()
        .find(|p| p["address"] == addr)
        .ok_or_else(|| format!("{}: no peer {addr}", pod.name))
}

fn established(pod: &Podbgp, addr: &str) -> Result<Value, String> {
    let p = peer(pod, addr)?;
    if p["state"] == "established" {
        Ok(p)
    } else {
        Err(format!("{addr}: {p}"))
    }
}

/// Neither end ever reached Established with `addr`/`frr`.
fn never_established(pod: &Podbgp, addr: &str, frr: &Frr) -> Result<(), String> {
    let p = peer(pod, addr)?;
    if p["established_transitions"] != 0 || p["state"] == "established" {
        return Err(format!("podbgp: {addr} came up: {p}"));
    }
    let n = frr.neighbors()?;
    let (me, f) = n.iter().next().ok_or("FRR has no neighbor")?;
    let count = f["connectionsEstablished"].as_u64().unwrap_or(0);
    if f["bgpState"] == "Established" || count > 0 {
        return Err(format!(
            "FRR {}: {me} is {} ({count} connections established)",
            frr.netns().short_name(),
            f["bgpState"]
        ));
    }
    Ok(())
}

fn frr_conf(asn: u32, me: &str, pod: &str, prefix: &str, lines: &[String]) -> String {
    let mut c = BgpdConfig::new(asn, me)
        .neighbor(pod, 64512)
        .router_line(&format!("neighbor {pod} timers connect 2"))
        .network(prefix);
    for l in lines {
        c = c.router_line(l);
    }
    c.render()
}

#[test]
fn md5_with_frr() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("md5");
    let lan = lab.lan("lan");
    let pod_ns = lab.netns("pod");
    lan.attach(&pod_ns, "eth0", &["198.18.0.1/24"]);
    // (name, last octet, FRR password, podbgp password before, after the reload)
    let peers = [
        ("good", 2, Some("s3cret"), Some("s3cret"), Some("s3cret")),
        ("wrong", 3, Some("other"), Some("s3cret"), Some("other")),
        ("nokey", 4, Some("s3cret"), None, Some("s3cret")),
        ("onesided", 5, None, Some("s3cret"), None),
    ];
    let pod_config = |after: bool| {
        let mut c =
            String::from("local_as: 64512\nrouter_id: 198.18.0.1\nconnect_retry: 2\nneighbors:\n");
        for (_, last, _, before, later) in &peers {
            let pw = if after { later } else { before };
            let pw = pw
                .map(|p| format!(", password: \"{p}\""))
                .unwrap_or_default();
            c.push_str(&format!(
                "  - {{ address: 198.18.0.{last}, remote_as: 650{last:02}{pw} }}\n"
            ));
        }
        c
    };
    let mut frrs = Vec::new();
    for (name, last, frr_pw, _, _) in &peers {
        let ns = lab.netns(name);
        let me = format!("198.18.0.{last}");
        lan.attach(&ns, "eth0", &[&format!("{me}/24")]);
        let mut lines: Vec<String> = frr_pw
            .iter()
            .map(|p| format!("neighbor 198.18.0.1 password {p}"))
            .collect();
        if *name == "good" {
            // Only podbgp connects: its outgoing socket signs.
            lines.push("neighbor 198.18.0.1 passive".into());
        }
        let asn = 65000 + last;
        let prefix = format!("198.19.{last}.0/24");
        frrs.push(Frr::new(
            &ns,
            &frr_conf(asn, &me, "198.18.0.1", &prefix, &lines),
        ));
    }
    let mut pod = Podbgp::start(&pod_ns, "pod", &pod_config(false));

    frrs[0].wait_established(&["198.18.0.1"], TIMEOUT);
    poll_until(TIMEOUT, "good established with its route", || {
        let p = established(&pod, "198.18.0.2")?;
        if p["families"][0]["received"] == 1 {
            Ok(())
        } else {
            Err(format!("{p}"))
        }
    });
    // The other three tried and were dropped by the kernel, one kind of mismatch each.
    poll_until(TIMEOUT, "MD5 drops of each kind in pod", || {
        let c = tcp_ext(&pod_ns);
        let want = ["TCPMD5Failure", "TCPMD5NotFound", "TCPMD5Unexpected"];
        if want.iter().all(|k| c.get(*k).copied().unwrap_or(0) > 0) {
            Ok(())
        } else {
            Err(format!("{:?}", want.map(|k| (k, c.get(k).copied()))))
        }
    });
    holds_for(
        Duration::from_secs(6),
        "a mismatched password never establishes",
        || {
            for (i, (_, last, ..)) in peers.iter().enumerate().skip(1) {
                never_established(&pod, &format!("198.18.0.{last}"), &frrs[i])?;
            }
            Ok(())
        },
    );
    pod.assert_running();

    // Live: a changed key, a new key and a removed key on the listener and the connectors.
    let good_before = peer(&pod, "198.18.0.2").unwrap()["established_transitions"].clone();
    pod.reload(&pod_config(true));
    for (i, (_, last, ..)) in peers.iter().enumerate() {
        frrs[i].wait_established(&["198.18.0.1"], TIMEOUT);
        poll_until(TIMEOUT, &format!("198.18.0.{last} established"), || {
            established(&pod, &format!("198.18.0.{last}"))
        });
    }
    assert_eq!(
        peer(&pod, "198.18.0.2").unwrap()["established_transitions"],
        good_before,
        "the unchanged session was reset"
    );
    // Passwords are never shown.
    let cfg = pod.cli(&["config"]).unwrap().to_string();
    assert!(!cfg.contains("s3cret") && !cfg.contains("other"), "{cfg}");
}

#[test]
fn gtsm_two_hops() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("gtsm");
    let lan = lab.lan("lan");
    let far_lan = lab.lan("farlan");
    let pod_ns = lab.netns("pod");
    let near_ns = lab.netns("near");
    let router = lab.netns("router");
    let far1_ns = lab.netns("far1");
    let far2_ns = lab.netns("far2");
    lan.attach(&pod_ns, "eth0", &["198.18.0.1/24"]);
    lan.attach(&near_ns, "eth0", &["198.18.0.2/24"]);
    lab.p2p(
        &pod_ns,
        "eth1",
        &["198.18.1.1/24"],
        &router,
        "eth0",
        &["198.18.1.2/24"],
    );
    far_lan.attach(&router, "eth1", &["198.18.2.1/24"]);
    far_lan.attach(&far1_ns, "eth0", &["198.18.2.2/24"]);
    far_lan.attach(&far2_ns, "eth0", &["198.18.2.3/24"]);
    router.write_proc_sys("net/ipv4/ip_forward", "1");
    pod_ns.ip(&["route", "add", "198.18.2.0/24", "via", "198.18.1.2"]);
    for ns in [&far1_ns, &far2_ns] {
        ns.ip(&["route", "add", "198.18.1.0/24", "via", "198.18.2.1"]);
    }
    // Two hops, and reachable.
    pod_ns.run(&["ping", "-c", "1", "-W", "5", "198.18.2.2"]);

    let pod_config = |far_hops: u8| {
        format!(
            "local_as: 64512\nrouter_id: 198.18.0.1\nconnect_retry: 2\nneighbors:\n\
             \x20 - {{ address: 198.18.0.2, remote_as: 65002, ttl_security: 1 }}\n\
             \x20 - {{ address: 198.18.2.2, remote_as: 65012, ttl_security: {far_hops}, passive: true }}\n\
             \x20 - {{ address: 198.18.2.3, remote_as: 65013, ttl_security: {far_hops} }}\n"
        )
    };
    let near = Frr::new(
        &near_ns,
        &frr_conf(
            65002,
            "198.18.0.2",
            "198.18.0.1",
            "198.19.2.0/24",
            &["neighbor 198.18.0.1 ttl-security hops 1".into()],
        ),
    );
    let far1 = Frr::new(
        &far1_ns,
        &frr_conf(
            65012,
            "198.18.2.2",
            "198.18.1.1",
            "198.19.12.0/24",
            &["neighbor 198.18.1.1 ttl-security hops 2".into()],
        ),
    );
    let far2 = Frr::new(
        &far2_ns,
        &frr_conf(
            65013,
            "198.18.2.3",
            "198.18.1.1",
            "198.19.13.0/24",
            &[
                "neighbor 198.18.1.1 ttl-security hops 2".into(),
                "neighbor 198.18.1.1 passive".into(),
            ],
        ),
    );
    let mut pod = Podbgp::start(&pod_ns, "pod", &pod_config(1));

    // Directly connected with `ttl-security hops 1` at both ends: our packets arrive with 255.
    near.wait_established(&["198.18.0.1"], TIMEOUT);
    poll_until(TIMEOUT, "near established", || {
        established(&pod, "198.18.0.2")
    });
    // far2's SYN-ACKs arrive with TTL 254 and are dropped by IP_MINTTL 255.
    poll_until(TIMEOUT, "SYN-ACKs from far2 dropped for their TTL", || {
        let n = tcp_ext(&pod_ns).get("TCPMinTTLDrop").copied().unwrap_or(0);
        if n > 0 {
            Ok(n)
        } else {
            Err("TCPMinTTLDrop 0".into())
        }
    });
    // far1 connects every 2 s, podbgp to far2 every 2 s (plus a 10 s connect timeout).
    holds_for(
        Duration::from_secs(12),
        "a peer two hops away never establishes with ttl_security 1",
        || {
            never_established(&pod, "198.18.2.2", &far1)?;
            never_established(&pod, "198.18.2.3", &far2)
        },
    );
    pod.assert_running();

    let near_before = peer(&pod, "198.18.0.2").unwrap()["established_transitions"].clone();
    pod.reload(&pod_config(2));
    far1.wait_established(&["198.18.1.1"], TIMEOUT);
    far2.wait_established(&["198.18.1.1"], TIMEOUT);
    for a in ["198.18.2.2", "198.18.2.3"] {
        poll_until(TIMEOUT, &format!("{a} established"), || {
            established(&pod, a)
        });
    }
    assert_eq!(
        peer(&pod, "198.18.0.2").unwrap()["established_transitions"],
        near_before,
        "near was reset"
    );
}

/// A Calico cluster file: node `pod` (198.18.0.1, mesh with the FRR node at .4), BGPPeers
/// `tor` (.2, Secret in the file) and `ext` (.3, Secret `ext-secrets` not in the file), an IP
/// pool for the routes FRR announces.
fn cluster_yaml() -> String {
    [
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n\
         spec: {asNumber: 64512, nodeMeshPassword: {secretKeyRef: {name: mesh, key: password}}}",
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: pod}\n\
         spec: {bgp: {ipv4Address: 198.18.0.1/24}}",
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: frr-node}\n\
         spec: {bgp: {ipv4Address: 198.18.0.4/24}}",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n\
         spec: {peerIP: 198.18.0.2, asNumber: 65002, password: {secretKeyRef: {name: bgp-secrets, key: tor}}}",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: ext}\n\
         spec: {peerIP: 198.18.0.3, asNumber: 65003, password: {secretKeyRef: {name: ext-secrets, key: password}}}",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool}\n\
         spec: {cidr: 198.19.0.0/16}",
        // base64("tor-pw")
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp-secrets, namespace: calico-system}\n\
         type: Opaque\ndata: {tor: dG9yLXB3}",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: mesh, namespace: calico-system}\n\
         stringData: {password: mesh-pw}",
    ]
    .join("\n---\n")
}

#[test]
fn calico_secrets() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("secrets");
    let lan = lab.lan("lan");
    let pod_ns = lab.netns("pod");
    lan.attach(&pod_ns, "eth0", &["198.18.0.1/24"]);
    let mut frrs = Vec::new();
    for (name, last, asn, pw) in [
        ("tor", 2, 65002, "tor-pw"),
        ("ext", 3, 65003, "ext-pw"),
        ("node", 4, 64512, "mesh-pw"),
    ] {
        let ns = lab.netns(name);
        let me = format!("198.18.0.{last}");
        lan.attach(&ns, "eth0", &[&format!("{me}/24")]);
        // `node` is iBGP as a Calico node: podbgp is passive toward it (calico-bgp.md §3.3).
        let c = BgpdConfig::new(asn, &me)
            .neighbor("198.18.0.1", 64512)
            .router_line("neighbor 198.18.0.1 timers connect 2")
            .router_line(&format!("neighbor 198.18.0.1 password {pw}"))
            .network(&format!("198.19.{last}.0/24"));
        frrs.push(Frr::new(&ns, &c.render()));
    }
    let file = lab.dir().join("cluster.yaml");
    std::fs::write(&file, cluster_yaml()).unwrap();
    let secrets = lab.dir().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let pod = Podbgp::start_datastore_with(
        &pod_ns,
        "pod",
        &format!("file:{}", file.display()),
        &[],
        &["--fib", "off", "--secrets-dir", secrets.to_str().unwrap()],
    );

    // The password from `data` and the mesh password from `stringData`.
    frrs[0].wait_established(&["198.18.0.1"], TIMEOUT);
    frrs[2].wait_established(&["198.18.0.1"], TIMEOUT);
    for a in ["198.18.0.2", "198.18.0.4"] {
        poll_until(TIMEOUT, &format!("{a} established"), || {
            established(&pod, a)
        });
    }
    // ext's Secret is missing: an error naming the BGPPeer and the Secret; down, and podbgp
    // never connects to it unsigned.
    poll_until(TIMEOUT, "the missing Secret is reported", || {
        let log = pod.proc.output();
        let want = "BGPPeer ext: password from Secret \"ext-secrets\" key \"password\": the Secret does not exist";
        if log.contains(want) {
            Ok(())
        } else {
            Err("not logged yet".to_string())
        }
    });
    let cfg = pod.cli(&["config"]).unwrap().to_string();
    assert!(cfg.contains("ext-secrets"), "{cfg}");
    assert!(!cfg.contains("tor-pw") && !cfg.contains("mesh-pw"), "{cfg}");
    holds_for(Duration::from_secs(5), "ext stays down", || {
        never_established(&pod, "198.18.0.3", &frrs[1])
    });
    // podbgp never sent ext an unsigned SYN (FRR's kernel would have dropped and counted it).
    let c = tcp_ext(frrs[1].netns());
    let md5_drops: u64 = ["TCPMD5Failure", "TCPMD5NotFound", "TCPMD5Unexpected"]
        .iter()
        .map(|k| c.get(*k).copied().unwrap_or(0))
        .sum();
    assert_eq!(md5_drops, 0, "{c:?}");

    // Mount the Secret (kubelet layout): ext comes up, the others are not touched.
    let marks: Vec<Value> = ["198.18.0.2", "198.18.0.4"]
        .iter()
        .map(|a| peer(&pod, a).unwrap()["established_transitions"].clone())
        .collect();
    let dir = secrets.join("ext-secrets");
    let ts = dir.join("..2026_01_01_00_00_00.1");
    std::fs::create_dir_all(&ts).unwrap();
    std::fs::write(ts.join("password"), "ext-pw").unwrap();
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/password", dir.join("password")).unwrap();
    frrs[1].wait_established(&["198.18.0.1"], TIMEOUT);
    poll_until(TIMEOUT, "ext established", || {
        established(&pod, "198.18.0.3")
    });
    for (a, before) in ["198.18.0.2", "198.18.0.4"].iter().zip(marks) {
        assert_eq!(
            peer(&pod, a).unwrap()["established_transitions"],
            before,
            "{a} was reset"
        );
    }
}

#[test]
fn least_privilege() {
    if !require_root_and_frr() {
        return;
    }
    let lab = Lab::new("privs");
    let lan = lab.lan("lan");
    let pod_ns = lab.netns("pod");
    let tor_ns = lab.netns("tor");
    lan.attach(&pod_ns, "eth0", &["198.18.0.1/24"]);
    lan.attach(&tor_ns, "eth0", &["198.18.0.2/24"]);
    let tor = Frr::new(
        &tor_ns,
        &BgpdConfig::new(65002, "198.18.0.2")
            .neighbor("198.18.0.1", 64512)
            .router_line("neighbor 198.18.0.1 timers connect 2")
            .router_line("neighbor 198.18.0.1 password tor-pw")
            .network("198.19.7.0/26")
            .render(),
    );
    let yaml = [
        "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false}",
        "kind: Node\nmetadata: {name: pod}\nspec: {bgp: {ipv4Address: 198.18.0.1/24}}",
        "kind: BGPPeer\nmetadata: {name: tor}\n\
         spec: {peerIP: 198.18.0.2, asNumber: 65002, password: {secretKeyRef: {name: bgp-secrets, key: tor}}}",
        "kind: IPPool\nmetadata: {name: pool}\nspec: {cidr: 198.19.0.0/16}",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp-secrets}\nstringData: {tor: tor-pw}",
    ]
    .join("\n---\n");
    let file = pod_ns.dir().join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    // Only the API socket's directory is writable by the daemon's user.
    let run = pod_ns.dir().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
    let api = run.join("api.sock");
    let bin = podbgp_bin();
    let caps = "-all,+net_admin,+net_bind_service";
    let mut pod = Podbgp {
        name: "pod",
        proc: pod_ns.spawn(
            "podbgp",
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                &format!("--inh-caps={caps}"),
                &format!("--ambient-caps={caps}"),
                &format!("--bounding-set={caps}"),
                "--",
                bin.to_str().unwrap(),
                "run",
                "--datastore",
                &format!("file:{}", file.display()),
                "--node",
                "pod",
                "--hold-time",
                "30",
                "--api-listen",
                api.to_str().unwrap(),
                "--log",
                "info,podbgp=debug",
            ],
        ),
        api,
        config: std::path::PathBuf::new(),
    };
    poll_until(TIMEOUT, "podbgp API answering", || {
        pod.assert_running();
        pod.peers()
    });
    // It really runs as nobody with exactly the two capabilities.
    let status = std::fs::read_to_string(format!("/proc/{}/status", pod.proc.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert!(field("Uid:").starts_with("65534"), "{status}");
    // CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12).
    assert_eq!(field("CapEff:"), "0000000000001400", "{status}");
    assert_eq!(field("CapPrm:"), "0000000000001400", "{status}");

    tor.wait_established(&["198.18.0.1"], TIMEOUT);
    poll_until(TIMEOUT, "the received route in the kernel", || {
        let r = pod_ns
            .route("198.19.7.0/26")
            .ok_or_else(|| "no route".to_string())?;
        if r.gateway.as_deref() == Some("198.18.0.2") {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    // Listening on 179 as nobody.
    let ss = pod_ns.run(&["ss", "-Htln", "sport", "= :179"]);
    assert!(!ss.trim().is_empty(), "not listening on 179");
    pod.assert_running();
}
