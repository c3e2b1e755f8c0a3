//! FRR peers for namespace tests: [`Frr`] runs `zebra` + `bgpd` in one [`Netns`] and queries
//! them with `vtysh … json`; [`BgpdConfig`] renders the usual `bgpd.conf`.
//!
//! Layout ("variant A" of `dependencies.md` §8): every instance has its own state directory
//! `<ns dir>/frr` (owned by `frr:frr`, because the daemons drop to that user) holding
//! `zebra.conf`, `bgpd.conf`, pid files, the vty sockets, `zserv.api` and the logs. Daemons
//! run in the foreground as children of the test (`-f -i --vty_socket -z -A 127.0.0.1
//! --log file:…`), so they are stopped by PID; nothing under `/etc/frr` or `/run/frr` is used.
//!
//! zebra runs in every instance: it installs BGP routes into the namespace FIB (checked with
//! `ip -j route`), and IPv6 routes with link-local next hops need it (pitfall 2).
//!
//! Query helpers return `Result<_, String>` so they can be used directly inside
//! [`super::poll_until`] checks; `vtysh`/`vtysh_json` panic instead.

use super::netns::{CmdError, Netns, Proc, run_cmd};
use super::{Afi, BGPD, VTYSH, ZEBRA, json_subset, poll_until};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a daemon may take to come up (vty socket answering).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Grace period between SIGTERM and SIGKILL in [`Frr::stop`].
const STOP_GRACE: Duration = Duration::from_secs(5);

/// zebra + bgpd in one namespace. Both daemons are killed (SIGKILL, by PID) on drop.
pub struct Frr {
    // Field order is drop order: bgpd goes first.
    bgpd: Option<Proc>,
    zebra: Option<Proc>,
    ns: Netns,
    dir: PathBuf,
}

impl Frr {
    /// Writes `bgpd_conf` (and a minimal `zebra.conf`), starts zebra and bgpd in `ns` and
    /// waits until both answer on their vty sockets.
    ///
    /// The config is checked with `bgpd -C` first: any complaint fails the test.
    pub fn new(ns: &Netns, bgpd_conf: &str) -> Frr {
        Frr::with_zebra_conf(ns, &format!("hostname {}\n", ns.short_name()), bgpd_conf)
    }

    /// Like [`Frr::new`] with an explicit `zebra.conf`.
    pub fn with_zebra_conf(ns: &Netns, zebra_conf: &str, bgpd_conf: &str) -> Frr {
        let dir = ns.dir().join("frr");
        assert!(
            !dir.exists(),
            "an FRR instance already exists in {}",
            ns.short_name()
        );
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // Unix socket paths are limited to 107 bytes.
        let longest = dir.join("zserv.api");
        assert!(
            longest.as_os_str().len() < 100,
            "FRR socket path {} is too long; use a shorter TMPDIR",
            longest.display()
        );
        run_cmd("chown", &["frr:frr", path_str(&dir)]).unwrap_or_else(|e| panic!("{e}"));
        let mut frr = Frr {
            bgpd: None,
            zebra: None,
            ns: ns.clone(),
            dir,
        };
        frr.write_config("zebra", zebra_conf);
        frr.write_config("bgpd", bgpd_conf);
        frr.start();
        frr
    }

    /// Replaces `<daemon>.conf` after checking it with `<daemon> -C`; used at the next start.
    pub fn write_config(&self, daemon: &str, conf: &str) {
        let binary = match daemon {
            "bgpd" => BGPD,
            "zebra" => ZEBRA,
            _ => panic!("unknown FRR daemon {daemon:?}"),
        };
        let path = self.dir.join(format!("{daemon}.conf"));
        fs::write(&path, conf).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        // `-C` exits 0 even on errors, but reports every line it rejects ("% …" or "… on
        // config line N: …"); other output (zclient, MPLS support) is noise.
        let scratch = self.dir.join("check");
        let args = [
            "-C",
            "-f",
            path_str(&path),
            "-i",
            &format!("{}.pid", scratch.display()),
            "--vty_socket",
            path_str(&self.dir),
            "-z",
            &format!("{}.api", scratch.display()),
        ];
        let out = std::process::Command::new(binary)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {binary} -C: {e}"));
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let complaints: Vec<&str> = output
            .lines()
            .filter(|l| l.starts_with('%') || l.contains("config line"))
            .collect();
        if !out.status.success() || !complaints.is_empty() {
            let complaints = complaints.join("\n");
            panic!(
                "{binary} rejects {} ({}):\n{complaints}\n--- config ---\n{conf}",
                path.display(),
                out.status
            );
        }
    }

    /// Starts whichever of zebra and bgpd is not running and waits until it answers.
    /// After [`Frr::stop`], this is the restart.
    pub fn start(&mut self) {
        let zserv = self.dir.join("zserv.api");
        if self.zebra.as_mut().is_none_or(|p| !p.is_running()) {
            let _ = fs::remove_file(&zserv);
            let proc = self.spawn_daemon("zebra", ZEBRA);
            self.zebra = Some(proc);
            self.wait_ready("zebra", "show version");
        }
        if self.bgpd.as_mut().is_none_or(|p| !p.is_running()) {
            let proc = self.spawn_daemon("bgpd", BGPD);
            self.bgpd = Some(proc);
            self.wait_ready("bgpd", "show bgp summary json");
        }
    }

    fn spawn_daemon(&self, daemon: &str, binary: &str) -> Proc {
        let d = |name: &str| self.dir.join(name).display().to_string();
        let (conf, pid, zserv, log) = (
            d(&format!("{daemon}.conf")),
            d(&format!("{daemon}.pid")),
            d("zserv.api"),
            format!("file:{}", d(&format!("{daemon}.log"))),
        );
        let argv = [
            binary,
            "-f",
            &conf,
            "-i",
            &pid,
            "--vty_socket",
            path_str(&self.dir),
            "-z",
            &zserv,
            "-A",
            "127.0.0.1",
            "--log",
            &log,
        ];
        self.ns.spawn(&format!("frr-{daemon}"), &argv)
    }

    fn wait_ready(&mut self, daemon: &str, probe: &str) {
        let what = format!("{daemon} in {} to answer `{probe}`", self.ns.short_name());
        let dir = self.dir.clone();
        let slot = if daemon == "bgpd" {
            &mut self.bgpd
        } else {
            &mut self.zebra
        };
        let proc = slot.as_mut().expect("daemon just started");
        poll_until(START_TIMEOUT, &what, || {
            if let Some(status) = proc.try_status() {
                let log = fs::read_to_string(dir.join(format!("{daemon}.log"))).unwrap_or_default();
                panic!(
                    "{daemon} in {} exited during start-up ({status})\n--- output ---\n{}\n--- log ---\n{log}",
                    dir.display(),
                    proc.output()
                );
            }
            vtysh_raw(&dir, daemon, &[probe]).map_err(|e| e.to_string())
        });
    }

    /// Graceful bgpd stop (SIGTERM to its PID, SIGKILL after 5 s): the sessions drop, with a
    /// Cease NOTIFICATION. zebra keeps running. [`Frr::start`] restarts bgpd.
    pub fn stop(&mut self) {
        if let Some(mut bgpd) = self.bgpd.take() {
            bgpd.terminate(STOP_GRACE);
        }
    }

    /// Crash-like bgpd stop: SIGKILL to its PID (no NOTIFICATION; the kernel closes the TCP
    /// connections).
    pub fn kill_bgpd(&mut self) {
        if let Some(mut bgpd) = self.bgpd.take() {
            bgpd.kill();
        }
    }

    /// PID of the running bgpd, if any.
    pub fn bgpd_pid(&self) -> Option<u32> {
        self.bgpd.as_ref().map(Proc::pid)
    }

    /// PID of the running zebra, if any.
    pub fn zebra_pid(&self) -> Option<u32> {
        self.zebra.as_ref().map(Proc::pid)
    }

    /// The namespace this instance runs in.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The instance's state directory (configs, logs, sockets).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current `bgpd.log`.
    pub fn bgpd_log(&self) -> String {
        fs::read_to_string(self.dir.join("bgpd.log")).unwrap_or_default()
    }

    /// Runs one or more CLI commands against `daemon` (`bgpd`, `zebra`).
    pub fn vtysh_daemon(&self, daemon: &str, cmds: &[&str]) -> Result<String, CmdError> {
        vtysh_raw(&self.dir, daemon, cmds)
    }

    /// Runs a bgpd command; `Err` carries the command, exit code and output.
    pub fn try_vtysh(&self, cmd: &str) -> Result<String, String> {
        self.vtysh_daemon("bgpd", &[cmd])
            .map_err(|e| format!("{}: {e}", self.ns.short_name()))
    }

    /// Runs a bgpd command, panicking on failure.
    #[track_caller]
    pub fn vtysh(&self, cmd: &str) -> String {
        self.try_vtysh(cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a bgpd `… json` command and parses the output.
    pub fn try_vtysh_json(&self, cmd: &str) -> Result<Value, String> {
        let out = self.try_vtysh(cmd)?;
        serde_json::from_str(&out).map_err(|e| {
            format!(
                "{}: `{cmd}` printed invalid JSON ({e}):\n{out}",
                self.ns.short_name()
            )
        })
    }

    /// Runs a bgpd `… json` command (e.g. `show bgp summary json`, `show bgp ipv4 unicast
    /// json`, `show bgp neighbors json`), panicking on failure.
    #[track_caller]
    pub fn vtysh_json(&self, cmd: &str) -> Value {
        self.try_vtysh_json(cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Applies configuration lines in `configure terminal` mode, e.g.
    /// `&["router bgp 65000", "neighbor 198.18.0.2 shutdown"]`.
    #[track_caller]
    pub fn configure(&self, lines: &[&str]) {
        let mut cmds = vec!["configure terminal"];
        cmds.extend_from_slice(lines);
        self.vtysh_daemon("bgpd", &cmds)
            .unwrap_or_else(|e| panic!("{}: {e}", self.ns.short_name()));
    }

    /// `show bgp neighbors json`: peer address → neighbor object.
    pub fn neighbors(&self) -> Result<Map<String, Value>, String> {
        match self.try_vtysh_json("show bgp neighbors json")? {
            Value::Object(map) => Ok(map),
            other => Err(format!("show bgp neighbors json: not an object: {other}")),
        }
    }

    /// FSM state of `peer` (`Established`, `Active`, `Idle`, …).
    pub fn peer_state(&self, peer: &str) -> Result<String, String> {
        let neighbors = self.neighbors()?;
        let n = neighbors.get(peer).ok_or_else(|| {
            format!(
                "{}: no neighbor {peer} (have: {:?})",
                self.ns.short_name(),
                neighbors.keys()
            )
        })?;
        Ok(n["bgpState"].as_str().unwrap_or("?").to_string())
    }

    /// Addresses of the Established neighbors, sorted.
    pub fn established_peers(&self) -> Result<Vec<String>, String> {
        Ok(self
            .neighbors()?
            .into_iter()
            .filter(|(_, n)| n["bgpState"] == "Established")
            .map(|(addr, _)| addr)
            .collect())
    }

    /// Prefixes accepted from `peer`, summed over its address families (FRR's
    /// `acceptedPrefixCounter`, the `pfxRcd` of `show bgp summary`).
    pub fn prefix_count(&self, peer: &str) -> Result<u64, String> {
        let neighbors = self.neighbors()?;
        let n = neighbors
            .get(peer)
            .ok_or_else(|| format!("{}: no neighbor {peer}", self.ns.short_name()))?;
        Ok(n["addressFamilyInfo"]
            .as_object()
            .into_iter()
            .flat_map(|afs| afs.values())
            .filter_map(|af| af["acceptedPrefixCounter"].as_u64())
            .sum())
    }

    /// The BGP table of `afi` unicast (`show bgp <afi> unicast json` → `routes`):
    /// prefix → array of paths.
    pub fn routes(&self, afi: Afi) -> Result<Map<String, Value>, String> {
        let cmd = format!("show bgp {} unicast json", afi.frr_name());
        let mut v = self.try_vtysh_json(&cmd)?;
        match v.get_mut("routes").map(Value::take) {
            Some(Value::Object(map)) => Ok(map),
            None => Ok(Map::new()),
            Some(other) => Err(format!("{cmd}: `routes` is not an object: {other}")),
        }
    }

    /// Polls until every peer in `peers` is Established; panics after `timeout`.
    #[track_caller]
    pub fn wait_established(&self, peers: &[&str], timeout: Duration) {
        let what = format!("{}: {peers:?} Established", self.ns.short_name());
        poll_until(timeout, &what, || {
            let neighbors = self.neighbors()?;
            for p in peers {
                let state = neighbors
                    .get(*p)
                    .map(|n| n["bgpState"].as_str().unwrap_or("?"));
                if state != Some("Established") {
                    return Err(format!("{p} is {}", state.unwrap_or("not configured")));
                }
            }
            Ok(())
        })
    }

    /// Polls `cmd` until its JSON output contains `expected` (see [`super::json_subset`]) and
    /// returns the matching output; panics after `timeout` with the last mismatch.
    #[track_caller]
    pub fn wait_json(&self, cmd: &str, expected: &Value, timeout: Duration) -> Value {
        let what = format!("{}: `{cmd}` ⊇ {expected}", self.ns.short_name());
        poll_until(timeout, &what, || {
            let actual = self.try_vtysh_json(cmd)?;
            json_subset(expected, &actual)?;
            Ok(actual)
        })
    }
}

fn vtysh_raw(dir: &Path, daemon: &str, cmds: &[&str]) -> Result<String, CmdError> {
    let mut args = vec!["--vty_socket", path_str(dir), "-d", daemon];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    run_cmd(VTYSH, &args)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("lab paths are UTF-8")
}

/// Renders a `bgpd.conf` for the common case, applying the FRR pitfalls of
/// `dependencies.md` §8:
/// * `no bgp ebgp-requires-policy` (eBGP exchanges nothing without policy otherwise);
/// * `no bgp network import-check` (`network` statements need no matching RIB route);
/// * each neighbor is activated only in the address family of its transport address
///   (`no neighbor <v6> activate` under IPv4, `neighbor <v6> activate` under IPv6);
/// * `neighbor X timers connect 5`, so a restarted peer is retried within seconds;
/// * `debug bgp neighbor-events`, so `bgpd.log` (printed on failure) shows session changes.
///
/// ```ignore
/// let conf = BgpdConfig::new(65000, "198.18.0.1")
///     .hostname("r1")
///     .neighbor("198.18.0.2", 65000)
///     .neighbor("2001:db8::2", 65000)
///     .network("10.244.1.0/26")
///     .network("2001:db8:1::/64")
///     .render();
/// ```
#[derive(Debug, Clone)]
pub struct BgpdConfig {
    asn: u32,
    router_id: String,
    hostname: Option<String>,
    neighbors: Vec<(String, u32)>,
    networks: Vec<String>,
    router_lines: Vec<String>,
    af_lines: Vec<(Afi, String)>,
}

impl BgpdConfig {
    pub fn new(asn: u32, router_id: &str) -> BgpdConfig {
        BgpdConfig {
            asn,
            router_id: router_id.to_string(),
            hostname: None,
            neighbors: Vec::new(),
            networks: Vec::new(),
            router_lines: Vec::new(),
            af_lines: Vec::new(),
        }
    }

    /// FRR's hostname (logs, hostname capability).
    pub fn hostname(mut self, name: &str) -> BgpdConfig {
        self.hostname = Some(name.to_string());
        self
    }

    /// A neighbor, activated in the family of its address only.
    pub fn neighbor(mut self, addr: &str, remote_as: u32) -> BgpdConfig {
        self.neighbors.push((addr.to_string(), remote_as));
        self
    }

    /// A `network` statement in the prefix's family.
    pub fn network(mut self, prefix: &str) -> BgpdConfig {
        self.networks.push(prefix.to_string());
        self
    }

    /// An extra line under `router bgp` (before the address families).
    pub fn router_line(mut self, line: &str) -> BgpdConfig {
        self.router_lines.push(line.to_string());
        self
    }

    /// An extra line under `address-family <afi> unicast`.
    pub fn af_line(mut self, afi: Afi, line: &str) -> BgpdConfig {
        self.af_lines.push((afi, line.to_string()));
        self
    }

    pub fn render(&self) -> String {
        let mut c = String::new();
        if let Some(h) = &self.hostname {
            writeln!(c, "hostname {h}").unwrap();
        }
        c.push_str("debug bgp neighbor-events\n");
        writeln!(c, "router bgp {}", self.asn).unwrap();
        writeln!(c, " bgp router-id {}", self.router_id).unwrap();
        c.push_str(" no bgp ebgp-requires-policy\n no bgp network import-check\n");
        for (addr, asn) in &self.neighbors {
            writeln!(c, " neighbor {addr} remote-as {asn}").unwrap();
            writeln!(c, " neighbor {addr} timers connect 5").unwrap();
        }
        for line in &self.router_lines {
            writeln!(c, " {line}").unwrap();
        }
        for afi in Afi::ALL {
            writeln!(c, " address-family {} unicast", afi.frr_name()).unwrap();
            for (addr, _) in &self.neighbors {
                let same = Afi::of(addr) == afi;
                // IPv4 is activated by default (`bgp default ipv4-unicast`), IPv6 is not.
                match (afi, same) {
                    (Afi::Ipv4, false) => writeln!(c, "  no neighbor {addr} activate").unwrap(),
                    (Afi::Ipv6, true) => writeln!(c, "  neighbor {addr} activate").unwrap(),
                    _ => {}
                }
            }
            for n in self.networks.iter().filter(|n| Afi::of(n) == afi) {
                writeln!(c, "  network {n}").unwrap();
            }
            for (_, line) in self.af_lines.iter().filter(|(a, _)| *a == afi) {
                writeln!(c, "  {line}").unwrap();
            }
            c.push_str(" exit-address-family\n");
        }
        c
    }
}
