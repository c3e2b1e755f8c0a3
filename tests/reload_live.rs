//! Live reload of real daemons (`podbgp run -c FILE` + SIGHUP) on loopback addresses: a reload
//! changes exactly what the new file changes and leaves every other session running.
//!
//! ```text
//!   A 127.0.0.1 ── B 127.0.0.2        iBGP AS 64512, full mesh of A, B, C; Calico's passive
//!        │  ╲     ╱                   rule (passive toward lower addresses: A connects).
//!        │   C 127.0.0.3              D 127.0.0.4 peers with A only; A does not know D yet.
//!   D 127.0.0.4 (joins on reload)
//! ```
//! Reload 1 rewrites A's file: + prefix 10.244.1.64/26, + neighbour D, − neighbour C.
//! Reload 2 moves A's listener to another port.
//! Everything is observed through `podbgp --api SOCK … --json`, polling with deadlines.

mod common;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

use common::{Duration, Lab, Podbgp, Value, poll_until};

const AS: u32 = 64512;
const TIMEOUT: Duration = Duration::from_secs(30);

fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A free TCP port on `addr` (bound and released; the daemon binds it with SO_REUSEADDR).
fn free_port(addr: Ipv4Addr) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("no free port on {addr}: {e}"))
        .port()
}

/// Node `me`'s YAML: listens on 127.0.0.<me>:<port of me>, connects from that address, fast
/// retry timers, one /26 per entry of `originate`.
fn config(me: u8, port: u16, ports: &[(u8, u16)], neighbors: &[u8], originate: &[u8]) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "local_as: {AS}\nrouter_id: 198.18.0.{me}");
    let _ = writeln!(y, "listen: {{ address: \"{}\", port: {port} }}", lo(me));
    let _ = writeln!(
        y,
        "next_hop_ipv4: 198.18.0.{me}\nconnect_retry: 1\nidle_hold_min: 1\nidle_hold_max: 2"
    );
    let blocks: Vec<String> = originate
        .iter()
        .map(|k| format!("\"10.244.{me}.{}/26\"", 64 * u32::from(*k)))
        .collect();
    let _ = writeln!(y, "originate: [{}]\nneighbors:", blocks.join(", "));
    for &n in neighbors {
        let port = ports
            .iter()
            .find(|(x, _)| *x == n)
            .map(|(_, p)| *p)
            .unwrap();
        let _ = writeln!(
            y,
            "  - {{ address: {}, port: {port}, remote_as: {AS}, local_address: {}, passive: {} }}",
            lo(n),
            lo(me),
            n < me
        );
    }
    y
}

fn peers(d: &Podbgp) -> Result<Vec<Value>, String> {
    d.peers()
}

fn peer(d: &Podbgp, addr: Ipv4Addr) -> Result<Value, String> {
    peers(d)?
        .into_iter()
        .find(|p| p["address"] == addr.to_string())
        .ok_or_else(|| format!("{}: no peer {addr}", d.name))
}

fn established(d: &Podbgp, addr: Ipv4Addr) -> Result<Value, String> {
    let p = peer(d, addr)?;
    if p["state"] == "established" {
        Ok(p)
    } else {
        Err(format!(
            "{}: {addr} is {} ({})",
            d.name, p["state"], p["info"]
        ))
    }
}

fn has_route(d: &Podbgp, prefix: &str) -> Result<(), String> {
    let routes = d.loc_rib()?;
    if routes
        .iter()
        .any(|r| r["prefix"] == prefix && r["best"] == true)
    {
        Ok(())
    } else {
        Err(format!("{}: no best route for {prefix}", d.name))
    }
}

/// (since_unix, established_transitions, state) of one session: what must not move.
fn session_key(p: &Value) -> (Value, Value, Value) {
    (
        p["since_unix"].clone(),
        p["established_transitions"].clone(),
        p["state"].clone(),
    )
}

#[test]
fn sighup_reload_changes_only_what_the_file_changes() {
    let lab = Lab::loopback("reload_live");
    let ports: Vec<(u8, u16)> = (1..=4).map(|n| (n, free_port(lo(n)))).collect();
    let port = |n: u8| ports[usize::from(n) - 1].1;

    let mut a = Podbgp::start_loopback(&lab, "a", &config(1, port(1), &ports, &[2, 3], &[0]));
    let b = Podbgp::start_loopback(&lab, "b", &config(2, port(2), &ports, &[1, 3], &[0]));
    let c = Podbgp::start_loopback(&lab, "c", &config(3, port(3), &ports, &[1, 2], &[0]));
    let d = Podbgp::start_loopback(&lab, "d", &config(4, port(4), &ports, &[1], &[0]));

    poll_until(TIMEOUT, "the A-B-C mesh established", || {
        for (x, others) in [(&a, [2, 3]), (&b, [1, 3]), (&c, [1, 2])] {
            for o in others {
                established(x, lo(o))?;
            }
        }
        has_route(&b, "10.244.1.0/26")?;
        has_route(&c, "10.244.1.0/26")
    });
    // D waits for A (passive), which does not know it yet.
    assert_ne!(peer(&d, lo(1)).unwrap()["state"], "established");

    let a_b = session_key(&peer(&a, lo(2)).unwrap());
    let b_a = session_key(&peer(&b, lo(1)).unwrap());
    let b_c = session_key(&peer(&b, lo(3)).unwrap());

    // Reload 1: + prefix, + neighbour D, − neighbour C.
    a.reload(&config(1, port(1), &ports, &[2, 4], &[0, 1]));
    poll_until(
        TIMEOUT,
        "A peers with B and D only, A-D established",
        || {
            let mut set: Vec<String> = peers(&a)?
                .iter()
                .map(|p| p["address"].as_str().unwrap_or("?").to_string())
                .collect();
            set.sort();
            if set != ["127.0.0.2", "127.0.0.4"] {
                return Err(format!("A's peers: {set:?}"));
            }
            established(&a, lo(4))?;
            established(&d, lo(1))?;
            Ok(())
        },
    );
    poll_until(TIMEOUT, "B and D learn A's new prefix", || {
        has_route(&b, "10.244.1.64/26")?;
        has_route(&d, "10.244.1.64/26")?;
        has_route(&d, "10.244.1.0/26")
    });
    poll_until(TIMEOUT, "C sees A's Cease (peer de-configured)", || {
        let p = peer(&c, lo(1))?;
        let err = p["last_error"].as_str().unwrap_or("");
        // With graceful restart's N bit on both sides the Cease travels wrapped in Hard
        // Reset (RFC 8538 §5.1); the subcode is 6/3 either way.
        if p["state"] != "established" && (err.contains("6/3") || err.contains("6/9")) {
            Ok(())
        } else {
            Err(format!("C's session with A: {} / {err:?}", p["state"]))
        }
    });
    poll_until(TIMEOUT, "C's block withdrawn at A", || {
        match has_route(&a, "10.244.3.0/26") {
            Ok(()) => Err("A still routes 10.244.3.0/26".into()),
            Err(_) => Ok(()),
        }
    });
    // The untouched sessions never moved (both ends), and B-C is unaffected too.
    assert_eq!(
        session_key(&peer(&a, lo(2)).unwrap()),
        a_b,
        "A's session with B"
    );
    assert_eq!(
        session_key(&peer(&b, lo(1)).unwrap()),
        b_a,
        "B's session with A"
    );
    assert_eq!(
        session_key(&peer(&b, lo(3)).unwrap()),
        b_c,
        "B's session with C"
    );
    assert_eq!(peer(&d, lo(1)).unwrap()["established_transitions"], 1);
    assert!(
        a.proc
            .output()
            .lines()
            .any(|l| l.contains("configuration reloaded") && l.contains("added [127.0.0.4]")),
        "A logs one summary line:\n{}",
        a.proc.output()
    );

    // Reload 2: A listens on another port. Nothing else changes; the old port is closed.
    let old = SocketAddr::from((lo(1), port(1)));
    let new_port = free_port(lo(1));
    a.reload(&config(1, new_port, &ports, &[2, 4], &[0, 1]));
    poll_until(TIMEOUT, "A's listener moved", || {
        let s = a.cli(&["speaker"])?;
        if s["listen_port"] != new_port {
            return Err(format!("A listens on {}", s["listen_port"]));
        }
        TcpStream::connect((lo(1), new_port)).map_err(|e| format!("new port: {e}"))?;
        match TcpStream::connect(old) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            Err(e) => Err(format!("old port: {e}")),
            Ok(_) => Err("the old port still accepts".into()),
        }
    });
    assert_eq!(
        session_key(&peer(&a, lo(2)).unwrap()),
        a_b,
        "A-B after the rebind"
    );
    assert_eq!(
        session_key(&peer(&b, lo(1)).unwrap()),
        b_a,
        "B-A after the rebind"
    );
    for p in peers(&a).unwrap() {
        assert_eq!(p["state"], "established", "{p}");
    }
    a.assert_running();
}
