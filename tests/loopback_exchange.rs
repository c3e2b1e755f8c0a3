//! Two podbgp processes on 127.0.0.1 (different ports) establish an eBGP session, exchange
//! 10,000 IPv4 and 10,000 IPv6 prefixes each way, withdraw them (config reload on SIGHUP), and
//! shut down cleanly on SIGTERM. Everything is observed through the operator CLI's `--json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const N: usize = 10_000;

/// A daemon child process, killed by PID if the test fails.
struct Daemon {
    child: Child,
    api: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!("--- log {}:\n{}", self.log.display(), tail(&self.log));
            }
        }
    }
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(
    asn: u32,
    id: u8,
    port: u16,
    peer_port: u16,
    peer_as: u32,
    passive: bool,
    originate: &[String],
) -> String {
    let mut s = format!(
        "local_as: {asn}\nrouter_id: 198.18.0.{id}\nlisten: {{ address: \"127.0.0.1\", port: {port} }}\n\
         next_hop_ipv4: 198.18.0.{id}\nnext_hop_ipv6: \"2001:db8::{id}\"\nconnect_retry: 1\n\
         idle_hold_min: 1\nidle_hold_max: 2\nneighbors:\n  - {{ address: 127.0.0.1, port: {peer_port}, \
         remote_as: {peer_as}, passive: {passive} }}\noriginate:{}\n",
        if originate.is_empty() { " []" } else { "" }
    );
    for p in originate {
        writeln!(s, "  - \"{p}\"").unwrap();
    }
    s
}

fn prefixes(node: usize) -> Vec<String> {
    let mut v = Vec::with_capacity(2 * N);
    for i in 0..N {
        v.push(format!("{}.{}.{}.0/24", 10 + node, i / 256, i % 256));
        v.push(format!("2001:db8:{node}:{i:x}::/64"));
    }
    v
}

fn start(dir: &Path, name: &str, cfg: &str) -> Daemon {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, cfg).unwrap();
    let api = dir.join(format!("{name}.sock"));
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_podbgp"))
        .args(["run", "-c"])
        .arg(&config)
        .arg("--api-listen")
        .arg(&api)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Daemon {
        child,
        api,
        config,
        log,
    }
}

fn cli(d: &Daemon, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_podbgp"))
        .arg("--api")
        .arg(&d.api)
        .args(args)
        .arg("--json")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// (state, received v4, received v6, advertised v4, advertised v6) of the daemon's one peer.
fn peer(d: &Daemon) -> Result<(String, u64, u64, u64, u64), String> {
    let v = cli(d, &["peers"])?;
    let p = &v[0];
    let fam = |f: &str, k: &str| {
        p["families"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["family"] == f))
            .and_then(|x| x[k].as_u64())
    };
    Ok((
        p["state"].as_str().unwrap_or("").to_string(),
        fam("ipv4-unicast", "received").unwrap_or(0),
        fam("ipv6-unicast", "received").unwrap_or(0),
        fam("ipv4-unicast", "advertised").unwrap_or(0),
        fam("ipv6-unicast", "advertised").unwrap_or(0),
    ))
}

fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn expect_counts(d: &Daemon, want: (u64, u64, u64, u64)) -> Result<(), String> {
    let (state, r4, r6, a4, a6) = peer(d)?;
    if state == "established" && (r4, r6, a4, a6) == want {
        Ok(())
    } else {
        Err(format!(
            "state {state}, received v4/v6 {r4}/{r6}, advertised v4/v6 {a4}/{a6}; want {want:?}"
        ))
    }
}

fn signal(d: &Daemon, sig: i32) {
    // SAFETY: plain kill(2) on our own child's PID.
    let rc = unsafe { libc::kill(d.child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({sig})");
}

#[test]
fn two_daemons_exchange_and_withdraw_20k_prefixes_each() {
    let dir = std::env::temp_dir().join(format!("podbgp-loopback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pa, pb) = (free_port(), free_port());
    let mut a = start(
        &dir,
        "a",
        &config(65001, 1, pa, pb, 65002, false, &prefixes(0)),
    );
    let mut b = start(
        &dir,
        "b",
        &config(65002, 2, pb, pa, 65001, true, &prefixes(1)),
    );

    let n = N as u64;
    poll(
        Duration::from_secs(60),
        "A to hold B's 20k prefixes",
        || expect_counts(&a, (n, n, n, n)),
    );
    poll(
        Duration::from_secs(60),
        "B to hold A's 20k prefixes",
        || expect_counts(&b, (n, n, n, n)),
    );

    // B's Loc-RIB: its own 2N plus A's 2N, A's with next hop = A's next-hop-self and AS path [65001].
    let routes = cli(&b, &["routes"]).unwrap();
    let routes = routes.as_array().unwrap();
    assert_eq!(routes.len(), 4 * N);
    let from_a: Vec<&Value> = routes.iter().filter(|r| r["peer"] == "127.0.0.1").collect();
    assert_eq!(from_a.len(), 2 * N);
    for r in &from_a {
        let v4 = r["prefix"].as_str().unwrap().contains('.');
        let nh = if v4 { "198.18.0.1" } else { "2001:db8::1" };
        assert_eq!(r["next_hops"], serde_json::json!([nh]), "{r}");
        assert_eq!(r["as_path"], serde_json::json!([65001]), "{r}");
        assert_eq!(r["best"], true);
    }
    let sample = cli(&b, &["routes", "--prefix", "10.39.15.0/24"]).unwrap();
    assert_eq!(
        sample.as_array().unwrap().len(),
        1,
        "10.39.15.0/24 is A's prefix number 9999"
    );

    // Withdraw everything A originates (reload on SIGHUP), then B's.
    std::fs::write(&a.config, config(65001, 1, pa, pb, 65002, false, &[])).unwrap();
    signal(&a, libc::SIGHUP);
    poll(Duration::from_secs(60), "B to see A's withdrawals", || {
        expect_counts(&b, (0, 0, n, n))
    });
    poll(Duration::from_secs(60), "A to advertise nothing", || {
        expect_counts(&a, (n, n, 0, 0))
    });
    std::fs::write(&b.config, config(65002, 2, pb, pa, 65001, true, &[])).unwrap();
    signal(&b, libc::SIGHUP);
    poll(Duration::from_secs(60), "A to see B's withdrawals", || {
        expect_counts(&a, (0, 0, 0, 0))
    });
    poll(Duration::from_secs(60), "B to be empty", || {
        expect_counts(&b, (0, 0, 0, 0))
    });
    // The session never flapped.
    for d in [&a, &b] {
        assert_eq!(cli(d, &["peers"]).unwrap()[0]["established_transitions"], 1);
    }

    // Clean shutdown: SIGTERM → the connection closed for a graceful restart, exit status 0.
    signal(&a, libc::SIGTERM);
    let status = poll(Duration::from_secs(10), "A to exit", || {
        a.child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_string())
    });
    assert!(status.success(), "A exited with {status}");
    poll(Duration::from_secs(10), "B to notice A's Cease", || {
        let (state, ..) = peer(&b)?;
        if state != "established" {
            Ok(())
        } else {
            Err(state)
        }
    });
    let info = cli(&b, &["peers"]).unwrap()[0]["last_error"].clone();
    // Both sides do graceful restart: a stop closes the connection without NOTIFICATION and
    // B keeps A's routes, stale, for A's restart time (RFC 4724).
    assert!(
        info.as_str()
            .unwrap_or("")
            .contains("tcp connection closed"),
        "B saw {info}"
    );
    signal(&b, libc::SIGTERM);
    let status = poll(Duration::from_secs(10), "B to exit", || {
        b.child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_string())
    });
    assert!(status.success(), "B exited with {status}");
    assert!(!b.api.exists(), "the API socket is removed on exit");
    let _ = std::fs::remove_dir_all(&dir);
}
