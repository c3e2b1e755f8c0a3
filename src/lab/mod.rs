//! `podbgp lab up | down | status | test | stop FILE.clab.yml`: runs a containerlab topology
//! without Docker, one network namespace per node (issue 7).
//!
//! * **up**: a namespace `pl-<lab>-<node>` per node; a bridge (`br0`) in each `bridge` node's
//!   namespace; a veth per link, created directly inside the two namespaces (nothing is ever
//!   added to the root namespace); the nodes' `exec` lines (only `ip ...` and `sysctl -w ...`,
//!   addresses only from 198.18.0.0/15 and 2001:db8::/32); FRR nodes run zebra and bgpd with
//!   the bound `frr.conf` and their own state directory; podbgp nodes run their `cmd` (bind
//!   paths mapped to the host) with the API on `<state>/<node>.sock`. Everything created is
//!   recorded in `<state>/state.json` before it is created, so `down` can undo a run that
//!   failed or was killed half-way.
//! * **down**: stops every recorded process (by PID, checked against its command line), then
//!   anything still running inside the lab's namespaces, deletes the namespaces and the state.
//! * **test**: `up` (unless already up), then polls until a deadline: every BGP session of
//!   every running podbgp and FRR node is Established, every podbgp node's kernel holds a
//!   `proto bird` route for every other running podbgp node's IPv4 blocks and a blackhole for
//!   its own, and every pod host pings every other pod; prints a pass/fail line per check,
//!   then `down` (unless `--keep`). Exit 0 only when every check passed.
//! * **stop NODE**: stops one node's daemons (a failure test: a reflector or a ToR going away).
//!
//! The state lives in `$PODBGP_LAB_DIR/<lab>` (default `/run/podbgp-lab/<lab>`). SIGINT or
//! SIGTERM during `up` or `test` tears the lab down before exiting.

pub mod clab;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use clab::{LabFile, Node, Role};

/// `podbgp lab ...`
#[derive(clap::Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    pub cmd: LabCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum LabCmd {
    /// Create the lab's namespaces and links and start its daemons.
    Up { file: PathBuf },
    /// Stop everything the lab started and remove its namespaces (also after a failed or
    /// interrupted run).
    Down { file: PathBuf },
    /// Show each node: namespace, processes, BGP sessions.
    Status {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Bring the lab up (unless it is), check sessions, kernel routes and pod reachability,
    /// print a line per check, and tear it down (unless --keep). Exit 0 when all pass.
    Test {
        file: PathBuf,
        /// Leave the lab running afterwards.
        #[arg(long)]
        keep: bool,
        /// Seconds to wait for every check to pass.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// After the checks, print each podbgp node's status table and the routes podbgp
        /// installed in its namespace.
        #[arg(long)]
        show: bool,
    },
    /// Stop one node's daemons (its namespace stays); later checks skip it.
    Stop { file: PathBuf, node: String },
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs a lab command; the exit code.
pub fn main(args: LabArgs) -> anyhow::Result<i32> {
    match args.cmd {
        LabCmd::Up { file } => {
            let lab = LabFile::load(&file)?;
            catch_signals();
            match up(&lab) {
                Ok(()) => {
                    eprintln!(
                        "lab {} is up; `podbgp lab down {}` removes it",
                        lab.name,
                        file.display()
                    );
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("lab {}: {e:#}; tearing down", lab.name);
                    down(&lab)?;
                    Err(e)
                }
            }
        }
        LabCmd::Down { file } => {
            let lab = LabFile::load(&file)?;
            down(&lab)?;
            eprintln!("lab {} is down", lab.name);
            Ok(0)
        }
        LabCmd::Status { file, json } => {
            let lab = LabFile::load(&file)?;
            status(&lab, json)
        }
        LabCmd::Test {
            file,
            keep,
            timeout,
            show,
        } => {
            let lab = LabFile::load(&file)?;
            catch_signals();
            let was_up = state_dir(&lab).join("state.json").exists();
            let result = (|| -> anyhow::Result<bool> {
                if !was_up {
                    let t = Instant::now();
                    up(&lab)?;
                    eprintln!("lab {} up in {:.1?}", lab.name, t.elapsed());
                }
                let ok = run_checks(&lab, Duration::from_secs(timeout))?;
                if show {
                    show_nodes(&lab);
                }
                Ok(ok)
            })();
            let interrupted = INTERRUPTED.load(Ordering::SeqCst);
            if !keep || interrupted || result.is_err() {
                down(&lab)?;
            }
            match result {
                Ok(true) => Ok(0),
                Ok(false) => Ok(1),
                Err(e) => Err(e),
            }
        }
        LabCmd::Stop { file, node } => {
            let lab = LabFile::load(&file)?;
            stop_node(&lab, &node)?;
            eprintln!("{node} stopped");
            Ok(0)
        }
    }
}

// ---------------------------------------------------------------------------------------
// State

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    namespaces: Vec<String>,
    procs: Vec<ProcEntry>,
    #[serde(default)]
    stopped: BTreeSet<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProcEntry {
    node: String,
    /// What its command line must contain for the PID to still be ours.
    program: String,
    pid: u32,
}

fn state_root() -> PathBuf {
    std::env::var_os("PODBGP_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/podbgp-lab"))
}

fn state_dir(lab: &LabFile) -> PathBuf {
    state_root().join(&lab.name)
}

fn load_state(lab: &LabFile) -> State {
    std::fs::read_to_string(state_dir(lab).join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_state(lab: &LabFile, s: &State) -> anyhow::Result<()> {
    let dir = state_dir(lab);
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)?;
    std::fs::rename(&tmp, dir.join("state.json"))?;
    Ok(())
}

fn ns_name(lab: &LabFile, node: &str) -> String {
    format!("pl-{}-{node}", lab.name)
}

// ---------------------------------------------------------------------------------------
// Commands

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

fn in_ns(ns: &str, argv: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(argv);
    run("ip", &full)
}

fn lab_addr_ok(addr: &str) -> bool {
    let ip_part = addr.split('/').next().unwrap_or(addr);
    match ip_part.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            let o = a.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        Ok(IpAddr::V6(a)) => {
            let s = a.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
        Err(_) => false,
    }
}

/// Runs one `exec` line of `node` in its namespace (see the module documentation).
fn exec_line(ns: &str, node: &str, line: &str) -> anyhow::Result<()> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["ip", rest @ ..] => {
            // Addresses added must be lab addresses.
            let args: Vec<&str> = rest
                .iter()
                .copied()
                .filter(|w| !w.starts_with('-'))
                .collect();
            if let [obj, "add", addr, ..] = args.as_slice()
                && obj.starts_with("addr")
                && !lab_addr_ok(addr)
            {
                bail!("{node}: exec {line:?}: {addr} is outside 198.18.0.0/15 and 2001:db8::/32");
            }
            ip(ns, rest)?;
        }
        ["sysctl", "-w", kv] => {
            in_ns(ns, &["sysctl", "-q", "-w", kv])?;
        }
        _ => bail!(
            "{node}: exec {line:?}: the namespace runner runs only `ip ...` and `sysctl -w KEY=VALUE`"
        ),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// up / down

fn up(lab: &LabFile) -> anyhow::Result<()> {
    let dir = state_dir(lab);
    if dir.join("state.json").exists() {
        bail!(
            "lab {} is already up (state in {}); run `podbgp lab down {}` first",
            lab.name,
            dir.display(),
            lab.path.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut state = State::default();
    save_state(lab, &state)?;

    // Namespaces.
    for n in &lab.nodes {
        check_interrupt()?;
        let ns = ns_name(lab, &n.name);
        state.namespaces.push(ns.clone());
        save_state(lab, &state)?;
        run("ip", &["netns", "add", &ns])?;
        ip(&ns, &["link", "set", "lo", "up"])?;
        if n.role == Role::Bridge {
            ip(&ns, &["link", "add", "br0", "type", "bridge"])?;
            ip(&ns, &["link", "set", "br0", "up"])?;
        } else {
            for key in [
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ] {
                in_ns(&ns, &["sysctl", "-q", "-w", key])?;
            }
            if matches!(n.role, Role::Frr { .. } | Role::Podbgp { .. }) {
                for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
                    in_ns(&ns, &["sysctl", "-q", "-w", key])?;
                }
            }
        }
    }
    // Links.
    for (a, b) in &lab.links {
        check_interrupt()?;
        let (na, nb) = (lab.node(&a.node).unwrap(), lab.node(&b.node).unwrap());
        if na.role == Role::Bridge && nb.role == Role::Bridge {
            bail!(
                "link {}:{} - {}:{}: two bridges",
                a.node,
                a.iface,
                b.node,
                b.iface
            );
        }
        let (nsa, nsb) = (ns_name(lab, &a.node), ns_name(lab, &b.node));
        ip(
            &nsa,
            &[
                "link", "add", &a.iface, "type", "veth", "peer", "name", &b.iface, "netns", &nsb,
            ],
        )?;
        for (n, ns, ep) in [(na, &nsa, a), (nb, &nsb, b)] {
            if n.role == Role::Bridge {
                ip(ns, &["link", "set", &ep.iface, "master", "br0"])?;
            }
            ip(ns, &["link", "set", &ep.iface, "up"])?;
        }
    }
    // Exec lines.
    for n in &lab.nodes {
        let ns = ns_name(lab, &n.name);
        for line in &n.exec {
            check_interrupt()?;
            exec_line(&ns, &n.name, line)?;
        }
    }
    // Daemons: FRR first, so podbgp finds its peers listening.
    for n in &lab.nodes {
        check_interrupt()?;
        if let Role::Frr { config } = &n.role {
            start_frr(lab, &mut state, n, config)?;
        }
    }
    for n in &lab.nodes {
        check_interrupt()?;
        if let Role::Podbgp { args } = &n.role {
            start_podbgp(lab, &mut state, n, args)?;
        }
    }
    Ok(())
}

const ZEBRA: &str = "/usr/lib/frr/zebra";
const BGPD: &str = "/usr/lib/frr/bgpd";

fn frr_dir(lab: &LabFile, node: &str) -> PathBuf {
    state_dir(lab).join(node)
}

fn start_frr(lab: &LabFile, state: &mut State, n: &Node, config: &Path) -> anyhow::Result<()> {
    if !Path::new(BGPD).exists() {
        bail!(
            "{}: FRR is not installed ({BGPD} missing; apt-get install frr)",
            n.name
        );
    }
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("{}: reading {}", n.name, config.display()))?;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let ["ip" | "ipv6", "address", addr] = w.as_slice()
            && !lab_addr_ok(addr)
        {
            bail!(
                "{}: {}: address {addr} is outside 198.18.0.0/15 and 2001:db8::/32",
                n.name,
                config.display()
            );
        }
    }
    let dir = frr_dir(lab, &n.name);
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("frr.conf");
    std::fs::write(&conf, &text)?;
    run("chown", &["-R", "frr:frr", &dir.display().to_string()])?;
    let ns = ns_name(lab, &n.name);
    let d = |f: &str| dir.join(f).display().to_string();
    for (daemon, bin) in [("zebra", ZEBRA), ("bgpd", BGPD)] {
        let pidfile = d(&format!("{daemon}.pid"));
        let log = format!("file:{}", d(&format!("{daemon}.log")));
        in_ns(
            &ns,
            &[
                bin,
                "-d",
                "-f",
                &d("frr.conf"),
                "-i",
                &pidfile,
                "--vty_socket",
                &dir.display().to_string(),
                "-z",
                &d("zserv.api"),
                "-A",
                "127.0.0.1",
                "--log",
                &log,
            ],
        )
        .with_context(|| format!("{}: starting {daemon}", n.name))?;
        let pid = wait_for(
            Duration::from_secs(10),
            &format!("{} {daemon} pid file", n.name),
            || {
                std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok())
            },
        )?;
        state.procs.push(ProcEntry {
            node: n.name.clone(),
            program: daemon.to_string(),
            pid,
        });
        save_state(lab, state)?;
        let probe = if daemon == "bgpd" {
            "show bgp summary json"
        } else {
            "show version"
        };
        wait_for(
            Duration::from_secs(10),
            &format!("{} {daemon} answering", n.name),
            || vtysh(&dir, daemon, probe).ok(),
        )?;
    }
    eprintln!("  {}: FRR (zebra + bgpd) up", n.name);
    Ok(())
}

fn vtysh(dir: &Path, daemon: &str, cmd: &str) -> anyhow::Result<String> {
    run(
        "vtysh",
        &[
            "--vty_socket",
            &dir.display().to_string(),
            "-d",
            daemon,
            "-c",
            cmd,
        ],
    )
}

fn api_sock(lab: &LabFile, node: &str) -> PathBuf {
    state_dir(lab).join(format!("{node}.sock"))
}

fn start_podbgp(lab: &LabFile, state: &mut State, n: &Node, args: &[String]) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the podbgp binary")?;
    let ns = ns_name(lab, &n.name);
    let sock = api_sock(lab, &n.name);
    let log = state_dir(lab).join(format!("{}.log", n.name));
    let out = std::fs::File::create(&log)?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns])
        .arg(&exe)
        .args(args)
        .arg("--api-listen")
        .arg(&sock)
        .envs(&n.env)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    if !n.env.contains_key("NODENAME") && !args.iter().any(|a| a == "--node") {
        cmd.env("NODENAME", &n.name);
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().context("starting podbgp")?;
    state.procs.push(ProcEntry {
        node: n.name.clone(),
        program: "podbgp".into(),
        pid: child.id(),
    });
    save_state(lab, state)?;
    // Reaped by whoever: the lab command may exit before the daemon does.
    std::mem::forget(child);
    wait_for(
        Duration::from_secs(20),
        &format!("{} API socket", n.name),
        || sock.exists().then_some(()),
    )
    .map_err(|e| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        anyhow!("{e}\n--- {} ---\n{text}", log.display())
    })?;
    eprintln!("  {}: podbgp up", n.name);
    Ok(())
}

fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        check_interrupt()?;
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is alive and its command line mentions `program`.
fn pid_is(pid: u32, program: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(program))
        .unwrap_or(false)
}

fn kill_pids(pids: &[u32]) {
    for &pid in pids {
        // SAFETY: plain syscall on a PID we started (checked by the caller).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in pids {
        if Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    // Reap our own children (a lab started by this process).
    for &pid in pids {
        // SAFETY: WNOHANG wait on a possibly-not-our-child PID just fails with ECHILD.
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn stop_node(lab: &LabFile, node: &str) -> anyhow::Result<()> {
    let mut state = load_state(lab);
    if lab.node(node).is_none() {
        bail!("no node {node:?} in {}", lab.path.display());
    }
    let pids: Vec<u32> = state
        .procs
        .iter()
        .filter(|p| p.node == node && pid_is(p.pid, &p.program))
        .map(|p| p.pid)
        .collect();
    kill_pids(&pids);
    state.stopped.insert(node.to_string());
    save_state(lab, &state)
}

fn down(lab: &LabFile) -> anyhow::Result<()> {
    let state = load_state(lab);
    let pids: Vec<u32> = state
        .procs
        .iter()
        .filter(|p| pid_is(p.pid, &p.program))
        .map(|p| p.pid)
        .collect();
    kill_pids(&pids);
    // Our namespaces: the recorded ones, plus any of this lab's name left by a lost state.
    let prefix = format!("pl-{}-", lab.name);
    let mut namespaces: BTreeSet<String> = state.namespaces.into_iter().collect();
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for line in list.lines() {
            if let Some(name) = line.split_whitespace().next()
                && name.starts_with(&prefix)
                && lab.nodes.iter().any(|n| name == ns_name(lab, &n.name))
            {
                namespaces.insert(name.to_string());
            }
        }
    }
    for ns in &namespaces {
        // Anything still running inside a namespace we created is ours.
        if let Ok(out) = run("ip", &["netns", "pids", ns]) {
            let left: Vec<u32> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
            kill_pids(&left);
        }
        let _ = run("ip", &["netns", "del", ns]);
    }
    let dir = state_dir(lab);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// status and checks

/// The lab-visible addresses of each node (exec `ip addr add` lines and FRR `ip address`).
fn node_addresses(lab: &LabFile) -> BTreeMap<String, Vec<IpAddr>> {
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut add = |node: &str, a: &str| {
        if let Ok(n) = a.parse::<IpNet>() {
            out.entry(node.to_string()).or_default().push(n.addr());
        }
    };
    for n in &lab.nodes {
        for line in &n.exec {
            let w: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with('-'))
                .collect();
            if let ["ip", obj, "add", addr, ..] = w.as_slice()
                && obj.starts_with("addr")
            {
                add(&n.name, addr);
            }
        }
        if let Role::Frr { config } = &n.role {
            for line in std::fs::read_to_string(config).unwrap_or_default().lines() {
                let w: Vec<&str> = line.split_whitespace().collect();
                if let ["ip" | "ipv6", "address", addr] = w.as_slice() {
                    add(&n.name, addr);
                }
            }
        }
    }
    out
}

/// A podbgp node's datastore file and node name, from its arguments.
fn podbgp_identity(n: &Node, args: &[String]) -> Option<(PathBuf, String)> {
    let mut ds = None;
    let mut name = n.env.get("NODENAME").cloned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--datastore" => ds = it.next().cloned(),
            "--node" => name = it.next().cloned(),
            _ => {
                if let Some(v) = a.strip_prefix("--datastore=") {
                    ds = Some(v.to_string());
                } else if let Some(v) = a.strip_prefix("--node=") {
                    name = Some(v.to_string());
                }
            }
        }
    }
    let path = ds?.strip_prefix("file:")?.to_string();
    Some((PathBuf::from(path), name.unwrap_or_else(|| n.name.clone())))
}

/// Each podbgp node's IPv4 blocks (advertised) and blackholes, from its datastore file.
/// Node → (advertised blocks, blackholes).
type Blocks = BTreeMap<String, (Vec<IpNet>, Vec<IpNet>)>;

fn podbgp_blocks(lab: &LabFile) -> anyhow::Result<Blocks> {
    let mut out = BTreeMap::new();
    for n in &lab.nodes {
        let Role::Podbgp { args } = &n.role else {
            continue;
        };
        let Some((path, name)) = podbgp_identity(n, args) else {
            bail!("{}: cannot find --datastore file:PATH in its cmd", n.name);
        };
        let view = crate::datastore::file::load(&path)
            .with_context(|| format!("{}: datastore {}", n.name, path.display()))?;
        let d = crate::calico::derive(&view, &name, &crate::calico::DeriveOptions::default())
            .with_context(|| format!("{}: deriving node {name}", n.name))?;
        let v4 = |v: &[IpNet]| {
            v.iter()
                .filter(|p| matches!(p, IpNet::V4(_)))
                .copied()
                .collect()
        };
        out.insert(n.name.clone(), (v4(&d.config.originate), v4(&d.blackholes)));
    }
    Ok(out)
}

/// One podbgp node's peers as `podbgp peers --json` reports them: (address, state).
fn podbgp_peers(lab: &LabFile, node: &str) -> anyhow::Result<Vec<(String, String)>> {
    let exe = std::env::current_exe()?;
    let sock = api_sock(lab, node);
    let out = run(
        &exe.display().to_string(),
        &["--api", &sock.display().to_string(), "peers", "--json"],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["address"].as_str().unwrap_or("?").to_string(),
                        p["state"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// One FRR node's neighbors: (address, state).
fn frr_peers(lab: &LabFile, node: &str) -> anyhow::Result<Vec<(String, String)>> {
    let out = vtysh(&frr_dir(lab, node), "bgpd", "show bgp neighbors json")?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| {
                    (
                        k.clone(),
                        n["bgpState"].as_str().unwrap_or("?").to_lowercase(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn kernel_has(ns: &str, prefix: &IpNet, blackhole: bool) -> bool {
    let p = prefix.to_string();
    let mut args = vec!["-4", "route", "show", "exact", p.as_str(), "proto", "bird"];
    if blackhole {
        args.extend(["type", "blackhole"]);
    }
    ip(ns, &args).is_ok_and(|o| !o.trim().is_empty())
}

/// A named check and its last result.
struct Check {
    name: String,
    result: Result<(), String>,
}

fn evaluate(lab: &LabFile, stopped: &BTreeSet<String>) -> anyhow::Result<Vec<Check>> {
    let addrs = node_addresses(lab);
    let stopped_addrs: BTreeSet<String> = stopped
        .iter()
        .flat_map(|n| addrs.get(n).into_iter().flatten())
        .map(|a| a.to_string())
        .collect();
    let blocks = podbgp_blocks(lab)?;
    let mut checks = Vec::new();
    let running = |n: &Node| !stopped.contains(&n.name);
    for n in lab.nodes.iter().filter(|n| running(n)) {
        let peers = match &n.role {
            Role::Podbgp { .. } => Some(podbgp_peers(lab, &n.name)),
            Role::Frr { .. } => Some(frr_peers(lab, &n.name)),
            _ => None,
        };
        if let Some(peers) = peers {
            let result = peers.map_err(|e| e.to_string()).and_then(|ps| {
                let down: Vec<String> = ps
                    .iter()
                    .filter(|(a, s)| s != "established" && !stopped_addrs.contains(a))
                    .map(|(a, s)| format!("{a} {s}"))
                    .collect();
                if ps.is_empty() {
                    Err("no peers".into())
                } else if down.is_empty() {
                    Ok(())
                } else {
                    Err(down.join(", "))
                }
            });
            checks.push(Check {
                name: format!("{}: BGP sessions established", n.name),
                result,
            });
        }
    }
    for (node, (_, holes)) in blocks.iter().filter(|(n, _)| !stopped.contains(*n)) {
        let ns = ns_name(lab, node);
        let mut missing: Vec<String> = Vec::new();
        for (other, (adv, _)) in blocks
            .iter()
            .filter(|(o, _)| *o != node && !stopped.contains(*o))
        {
            for p in adv {
                if !kernel_has(&ns, p, false) {
                    missing.push(format!("{p} (from {other})"));
                }
            }
        }
        for p in holes {
            if !kernel_has(&ns, p, true) {
                missing.push(format!("blackhole {p}"));
            }
        }
        checks.push(Check {
            name: format!("{node}: kernel routes for the other nodes' blocks"),
            result: if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {}", missing.join(", ")))
            },
        });
    }
    // Pods: hosts with a /32 (or /128) address; each pings every other pod.
    let pods: Vec<(&Node, IpAddr)> = lab
        .nodes
        .iter()
        .filter(|n| n.role == Role::Host)
        .filter_map(|n| {
            let a = addrs.get(&n.name)?.first()?;
            Some((n, *a))
        })
        .collect();
    for (from, _) in &pods {
        for (to, addr) in &pods {
            if from.name == to.name {
                continue;
            }
            let a = addr.to_string();
            let result = in_ns(
                &ns_name(lab, &from.name),
                &["ping", "-c", "1", "-W", "1", &a],
            )
            .map(|_| ())
            .map_err(|_| "no reply".to_string());
            checks.push(Check {
                name: format!("{} pings {} ({a})", from.name, to.name),
                result,
            });
        }
    }
    Ok(checks)
}

fn run_checks(lab: &LabFile, timeout: Duration) -> anyhow::Result<bool> {
    let state = load_state(lab);
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last_report = Instant::now();
    loop {
        check_interrupt()?;
        let checks = evaluate(lab, &state.stopped)?;
        let failing = checks.iter().filter(|c| c.result.is_err()).count();
        if failing == 0 || Instant::now() >= deadline {
            for c in &checks {
                match &c.result {
                    Ok(()) => println!("PASS  {}", c.name),
                    Err(e) => println!("FAIL  {}: {e}", c.name),
                }
            }
            println!(
                "lab {}: {} of {} checks passed in {:.1?}",
                lab.name,
                checks.len() - failing,
                checks.len(),
                start.elapsed()
            );
            return Ok(failing == 0);
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  waiting: {failing} of {} checks not passing yet",
                checks.len()
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Each podbgp node's `podbgp status` and its `proto bird` kernel routes.
fn show_nodes(lab: &LabFile) {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    for n in &lab.nodes {
        if !matches!(n.role, Role::Podbgp { .. }) {
            continue;
        }
        let sock = api_sock(lab, &n.name).display().to_string();
        println!("\n== {}: podbgp status ==", n.name);
        match run(&exe, &["--api", &sock, "status"]) {
            Ok(t) => print!("{t}"),
            Err(e) => println!("({e})"),
        }
        println!(
            "== {}: kernel routes installed by podbgp (ip route show proto bird) ==",
            n.name
        );
        let ns = ns_name(lab, &n.name);
        for fam in ["-4", "-6"] {
            match ip(&ns, &[fam, "route", "show", "proto", "bird"]) {
                Ok(t) => print!("{t}"),
                Err(e) => println!("({e})"),
            }
        }
    }
}

fn status(lab: &LabFile, json: bool) -> anyhow::Result<i32> {
    let state = load_state(lab);
    let mut rows = Vec::new();
    for n in &lab.nodes {
        let ns = ns_name(lab, &n.name);
        let exists = Path::new("/run/netns").join(&ns).exists();
        let procs: Vec<String> = state
            .procs
            .iter()
            .filter(|p| p.node == n.name)
            .map(|p| {
                let alive = pid_is(p.pid, &p.program);
                format!(
                    "{}[{}]{}",
                    p.program,
                    p.pid,
                    if alive { "" } else { " (dead)" }
                )
            })
            .collect();
        let peers = match &n.role {
            Role::Podbgp { .. } => podbgp_peers(lab, &n.name).ok(),
            Role::Frr { .. } => frr_peers(lab, &n.name).ok(),
            _ => None,
        };
        let sessions = peers.map(|ps| {
            let up = ps.iter().filter(|(_, s)| s == "established").count();
            format!("{up}/{} established", ps.len())
        });
        let role = match &n.role {
            Role::Bridge => "bridge",
            Role::Frr { .. } => "frr",
            Role::Podbgp { .. } => "podbgp",
            Role::Host => "host",
        };
        rows.push(serde_json::json!({
            "node": n.name, "role": role, "namespace": ns, "namespace_exists": exists,
            "processes": procs, "sessions": sessions,
            "stopped": state.stopped.contains(&n.name),
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<14} {:<7} {:<26} {:<30} SESSIONS",
            "NODE", "ROLE", "NAMESPACE", "PROCESSES"
        );
        for r in &rows {
            let ns = if r["namespace_exists"].as_bool() == Some(true) {
                r["namespace"].as_str().unwrap_or("").to_string()
            } else {
                "-".to_string()
            };
            let procs: Vec<&str> = r["processes"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                .unwrap_or_default();
            println!(
                "{:<14} {:<7} {:<26} {:<30} {}",
                r["node"].as_str().unwrap_or(""),
                r["role"].as_str().unwrap_or(""),
                ns,
                if procs.is_empty() {
                    "-".to_string()
                } else {
                    procs.join(" ")
                },
                r["sessions"].as_str().unwrap_or("-"),
            );
        }
    }
    Ok(0)
}
