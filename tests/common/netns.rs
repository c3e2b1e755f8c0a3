//! Network namespaces, links and processes for one test: [`Lab`], [`Netns`], [`Lan`], [`Proc`].
//!
//! Ownership and cleanup: a [`Lab`] and every [`Netns`], [`Lan`] and [`Proc`] made from it
//! share one reference-counted inner state. When the last of them drops (normally at the end
//! of the test, also while unwinding from a panic):
//! 1. if the thread is panicking, the tail of every log and config file in the lab directory
//!    is printed to stderr (the test output shows it on failure);
//! 2. any process still inside one of the lab's namespaces is killed by PID (there should
//!    be none: each [`Proc`] kills its own process when it drops, and it keeps the lab alive
//!    until then);
//! 3. the namespaces are deleted (veth pairs and bridges go with them);
//! 4. the lab directory is removed, unless `PODBGP_KEEP_LAB=1`.
//!
//! All link and address commands run as `ip -n <ns> …`; veth pairs are created inside a
//! namespace with the peer end placed directly into the other namespace, so nothing ever
//! appears in the root namespace, and interface names only need to be unique per namespace.

use super::{Afi, check_lab_addr};
use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prefix of every namespace the harness creates: `pbt<pid>-<lab counter>-<name>`.
const NS_PREFIX: &str = "pbt";

/// Prefix of the scratch directories in the temp dir: `podbgp-pbt<pid>-<counter>-<label>`.
const DIR_PREFIX: &str = "podbgp-";

/// Lines of each file printed when a test fails.
const DUMP_LINES: usize = 80;

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A failed command: what ran, how it ended and what it printed.
#[derive(Debug, Clone)]
pub struct CmdError {
    /// The command line, shell-quoted for copy and paste.
    pub cmd: String,
    /// Exit code; `None` if it could not start or was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "`{}` exited with code {code}", self.cmd)?,
            None => write!(f, "`{}` did not exit normally", self.cmd)?,
        }
        for (name, text) in [("stderr", &self.stderr), ("stdout", &self.stdout)] {
            let text = text.trim_end();
            if !text.is_empty() {
                write!(f, "\n--- {name} ---\n{text}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for CmdError {}

/// Quotes a command line for messages.
fn render_cmd<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut out = String::from(program);
    for a in args {
        let a = a.as_ref().to_string_lossy();
        out.push(' ');
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
        {
            out.push_str(&a);
        } else {
            out.push('\'');
            out.push_str(&a.replace('\'', r"'\''"));
            out.push('\'');
        }
    }
    out
}

/// Runs a program to completion (stdin closed) and returns its stdout, or a [`CmdError`].
pub fn run_cmd<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String, CmdError> {
    let cmd = render_cmd(program, args);
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CmdError {
            cmd: cmd.clone(),
            code: None,
            stdout: String::new(),
            stderr: format!("failed to start: {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(CmdError {
            cmd,
            code: out.status.code(),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Names of all network namespaces (`ip netns list`).
pub fn netns_list() -> Vec<String> {
    run_cmd("ip", &["netns", "list"])
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// PIDs of the processes inside namespace `ns` (`ip netns pids`).
fn netns_pids(ns: &str) -> Vec<i32> {
    run_cmd("ip", &["netns", "pids", ns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process inside `ns` (SIGKILL, by PID) and deletes the namespace.
fn destroy_netns(ns: &str) {
    for pid in netns_pids(ns) {
        eprintln!("lab cleanup: killing leftover pid {pid} in netns {ns}");
        // SAFETY: plain syscall; the process is inside a namespace this harness created.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if let Err(e) = run_cmd("ip", &["netns", "del", ns]) {
        eprintln!("lab cleanup: {e}");
    }
}

/// Whether `name` (`pbt<pid>-…`, possibly after `strip`) belongs to a test process that no
/// longer exists. A recycled PID makes a leftover look alive: it is then left alone.
fn owner_is_dead(name: &str, strip: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(strip)
        .and_then(|r| r.strip_prefix(NS_PREFIX))
    else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes namespaces (killing the processes inside) and scratch directories left by
/// harness processes that died without cleaning up, e.g. killed by a test timeout.
fn reap_stale_labs() {
    for ns in netns_list() {
        if owner_is_dead(&ns, "") {
            eprintln!("lab: reaping namespace {ns} left by a dead test process");
            destroy_netns(&ns);
        }
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if owner_is_dead(&name, DIR_PREFIX) {
            eprintln!(
                "lab: removing {} left by a dead test process",
                e.path().display()
            );
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

struct LabInner {
    /// `pbt<pid>-<counter>`.
    prefix: String,
    dir: PathBuf,
    /// Namespaces in creation order.
    namespaces: Mutex<Vec<String>>,
}

impl LabInner {
    fn dump_files(&self) {
        let mut files = Vec::new();
        collect_files(&self.dir, &mut files);
        files.sort();
        eprintln!(
            "===== lab {} failed; files in {} =====",
            self.prefix,
            self.dir.display()
        );
        for f in files {
            let name = f.file_name().and_then(OsStr::to_str).unwrap_or("");
            if !(name.ends_with(".log") || name.ends_with(".conf") || name.ends_with(".out")) {
                continue;
            }
            let Ok(file) = File::open(&f) else { continue };
            let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
            let skip = lines.len().saturating_sub(DUMP_LINES);
            eprintln!(
                "----- {} ({} lines{}) -----",
                f.display(),
                lines.len(),
                if skip > 0 {
                    format!(", last {DUMP_LINES}")
                } else {
                    String::new()
                }
            );
            for line in &lines[skip..] {
                eprintln!("{line}");
            }
        }
        eprintln!("===== end of lab {} files =====", self.prefix);
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            collect_files(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

impl Drop for LabInner {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_files();
        }
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in namespaces.iter().rev() {
            destroy_netns(ns);
        }
        if std::env::var_os("PODBGP_KEEP_LAB").is_some_and(|v| v == "1") {
            eprintln!(
                "lab {}: kept {} (PODBGP_KEEP_LAB=1)",
                self.prefix,
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("lab cleanup: removing {}: {e}", self.dir.display());
        }
    }
}

/// One test's topology: unique namespace names, a scratch directory, cleanup on drop.
///
/// Cheap handles ([`Netns`], [`Lan`], [`Proc`]) keep the lab alive; everything is removed
/// when the last one drops (see the module docs).
pub struct Lab {
    inner: Arc<LabInner>,
}

impl Lab {
    /// Creates an empty lab. `name` (e.g. the test name) only labels the scratch directory.
    ///
    /// Also reaps namespaces and directories left by test processes that no longer exist.
    pub fn new(name: &str) -> Lab {
        reap_stale_labs();
        Lab::create(name)
    }

    /// A lab for processes that run in the test's own network namespace on loopback
    /// addresses (127.0.0.0/8): a scratch directory and process cleanup, no namespaces (so
    /// neither root nor `ip` is needed, and nothing is reaped). Start processes with
    /// [`Lab::spawn`].
    pub fn loopback(name: &str) -> Lab {
        Lab::create(name)
    }

    /// Starts a long-running process in the test's own network namespace (see
    /// [`Netns::spawn`] for output and cleanup: `<lab dir>/<name>.out`, killed by PID on drop).
    pub fn spawn(&self, name: &str, argv: &[&str]) -> Proc {
        let log = self.dir().join(format!("{name}.out"));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let err_file = file.try_clone().expect("dup log file");
        let (program, args) = argv.split_first().expect("spawn: empty argv");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", render_cmd(program, args)));
        Proc {
            name: name.to_string(),
            child,
            log,
            _lab: self.inner.clone(),
        }
    }

    fn create(name: &str) -> Lab {
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NS_PREFIX}{}-{n}", std::process::id());
        let label: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(24)
            .collect();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{prefix}-{label}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("clearing {}: {e}", dir.display()));
        }
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Lab {
            inner: Arc::new(LabInner {
                prefix,
                dir,
                namespaces: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The lab's scratch directory (logs, configs, daemon state).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Full names of the namespaces created so far.
    pub fn namespace_names(&self) -> Vec<String> {
        self.inner
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Creates namespace `<prefix>-<name>` with `lo` up and IPv6 DAD disabled.
    ///
    /// `name` is short (it also names the namespace's scratch subdirectory) and unique
    /// within the lab.
    pub fn netns(&self, name: &str) -> Netns {
        assert!(
            !name.is_empty()
                && name.len() <= 16
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "namespace name {name:?}: use 1-16 characters [A-Za-z0-9_]"
        );
        let full = format!("{}-{name}", self.inner.prefix);
        {
            let mut list = self.inner.namespaces.lock().unwrap();
            assert!(
                !list.contains(&full),
                "namespace {name:?} already exists in this lab"
            );
            run_cmd("ip", &["netns", "add", &full]).unwrap_or_else(|e| panic!("{e}"));
            list.push(full.clone());
        }
        let ns = Netns {
            name: full,
            short: name.to_string(),
            lab: self.inner.clone(),
        };
        fs::create_dir_all(ns.dir())
            .unwrap_or_else(|e| panic!("creating {}: {e}", ns.dir().display()));
        // Addresses are usable at once (no tentative state), link-locals included.
        for key in ["all", "default"] {
            ns.write_proc_sys(&format!("net/ipv6/conf/{key}/accept_dad"), "0");
        }
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Creates a bridge segment `br0` in its own namespace `<prefix>-<name>`; attach hosts
    /// with [`Lan::attach`]. Multicast snooping is off, so IPv6 neighbour discovery floods.
    pub fn lan(&self, name: &str) -> Lan {
        let ns = self.netns(name);
        ns.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ns.ip(&["link", "set", "br0", "up"]);
        Lan {
            ns,
            ports: AtomicU32::new(0),
        }
    }

    /// A point-to-point veth link: `a_if` in `a` with `a_addrs`, `b_if` in `b` with `b_addrs`.
    pub fn p2p(
        &self,
        a: &Netns,
        a_if: &str,
        a_addrs: &[&str],
        b: &Netns,
        b_if: &str,
        b_addrs: &[&str],
    ) {
        a.ip(&[
            "link",
            "add",
            a_if,
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ]);
        a.ip(&["link", "set", a_if, "up"]);
        b.ip(&["link", "set", b_if, "up"]);
        for addr in a_addrs {
            a.add_addr(a_if, addr);
        }
        for addr in b_addrs {
            b.add_addr(b_if, addr);
        }
    }
}

/// A bridge segment (`br0` in its own namespace) that namespaces attach to with veths.
pub struct Lan {
    ns: Netns,
    ports: AtomicU32,
}

impl Lan {
    /// The namespace holding the bridge.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Connects `host` to the bridge: interface `ifname` in `host` (up, with `addrs`, e.g.
    /// `["198.18.0.1/24", "2001:db8::1/64"]`), its peer `p<N>` enslaved to `br0`.
    pub fn attach(&self, host: &Netns, ifname: &str, addrs: &[&str]) {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        host.ip(&[
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            self.ns.name(),
        ]);
        self.ns.ip(&["link", "set", &port, "master", "br0", "up"]);
        host.ip(&["link", "set", ifname, "up"]);
        for addr in addrs {
            host.add_addr(ifname, addr);
        }
    }
}

/// A network namespace of a [`Lab`]. Cloning is cheap; the namespace lives until the lab
/// and all handles are gone.
#[derive(Clone)]
pub struct Netns {
    name: String,
    short: String,
    lab: Arc<LabInner>,
}

impl fmt::Debug for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Netns({})", self.name)
    }
}

impl Netns {
    /// Full namespace name (`ip netns exec <name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The short name given to [`Lab::netns`].
    pub fn short_name(&self) -> &str {
        &self.short
    }

    /// This namespace's scratch directory inside the lab directory.
    pub fn dir(&self) -> PathBuf {
        self.lab.dir.join(&self.short)
    }

    /// Runs `argv` inside the namespace (`ip netns exec`); stdout on success.
    pub fn exec(&self, argv: &[&str]) -> Result<String, CmdError> {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(argv);
        run_cmd("ip", &args)
    }

    /// Like [`Netns::exec`], panicking with the command, exit code and output on failure.
    #[track_caller]
    pub fn run(&self, argv: &[&str]) -> String {
        self.exec(argv)
            .unwrap_or_else(|e| panic!("in netns {}: {e}", self.short))
    }

    /// Runs `ip -n <ns> <args>` (panics on failure) and returns stdout.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_cmd("ip", &full).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `ip -j -n <ns> <args>` and parses the JSON.
    #[track_caller]
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.ip(&full);
        if out.trim().is_empty() {
            return Value::Array(Vec::new());
        }
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ip -j -n {} {args:?}: bad JSON ({e}): {out}", self.name))
    }

    /// Adds `addr` (with prefix length) to `ifname`; IPv6 addresses get `nodad`.
    /// Panics if the address is outside the test ranges (see [`check_lab_addr`]).
    #[track_caller]
    pub fn add_addr(&self, ifname: &str, addr: &str) {
        check_lab_addr(addr);
        let mut args = vec!["addr", "add", addr, "dev", ifname];
        if Afi::of(addr) == Afi::Ipv6 {
            args.push("nodad");
        }
        self.ip(&args);
    }

    /// Writes `value` to `/proc/sys/<key>` as seen from inside the namespace
    /// (e.g. `net/ipv4/ip_forward`); no `sysctl` binary needed.
    #[track_caller]
    pub fn write_proc_sys(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        self.run(&[
            "sh",
            "-c",
            r#"printf '%s\n' "$1" > "$2""#,
            "sh",
            value,
            &path,
        ]);
    }

    /// Kernel routes of the main table (`ip -j -4|-6 route show`).
    pub fn routes(&self, afi: Afi) -> Vec<KernelRoute> {
        self.routes_filtered(afi, &[])
    }

    /// Kernel routes with extra selectors, e.g. `&["proto", "bgp"]` or `&["table", "all"]`.
    pub fn routes_filtered(&self, afi: Afi, selectors: &[&str]) -> Vec<KernelRoute> {
        let mut args = vec![afi.ip_flag(), "route", "show"];
        args.extend_from_slice(selectors);
        match self.ip_json(&args) {
            Value::Array(items) => items.into_iter().map(KernelRoute::from_json).collect(),
            other => panic!("ip route: expected a JSON array, got {other}"),
        }
    }

    /// The kernel route for exactly `dst` (e.g. `10.244.1.0/26`), if any.
    pub fn route(&self, dst: &str) -> Option<KernelRoute> {
        self.routes(Afi::of(dst)).into_iter().find(|r| r.dst == dst)
    }

    /// Starts a long-running process inside the namespace. stdin is closed; stdout and
    /// stderr go to `<ns dir>/<name>.out` (printed if the test fails). The process is
    /// killed (by PID) when the returned [`Proc`] drops. It returns as soon as the process
    /// is forked: wait for readiness (a socket, a log line) with [`super::poll_until`].
    pub fn spawn(&self, name: &str, argv: &[&str]) -> Proc {
        let log = self.dir().join(format!("{name}.out"));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let err_file = file.try_clone().expect("dup log file");
        let (program, args) = argv.split_first().expect("spawn: empty argv");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "spawning {} in {}: {e}",
                    render_cmd(program, args),
                    self.name
                )
            });
        // `ip netns exec` execs the program, so the child PID is the program's PID.
        Proc {
            name: format!("{}/{name}", self.short),
            child,
            log,
            _lab: self.lab.clone(),
        }
    }

    /// Runs `f` on a new thread that has joined this namespace (`setns`), e.g. to open
    /// sockets from the test process itself. The calling thread is unaffected.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on a valid namespace fd; it only affects this scoped thread,
                // which ends when `f` returns.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// All interface addresses as sorted `(ifname, "addr/len")` pairs (`ip -j addr show`),
    /// link-locals included.
    pub fn addresses(&self) -> Vec<(String, String)> {
        let mut out = BTreeSet::new();
        if let Value::Array(links) = self.ip_json(&["addr", "show"]) {
            for link in links {
                let ifname = link["ifname"].as_str().unwrap_or_default().to_string();
                for a in link["addr_info"].as_array().into_iter().flatten() {
                    if let (Some(local), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64())
                    {
                        out.insert((ifname.clone(), format!("{local}/{len}")));
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}

/// One entry of `ip -j route show`.
#[derive(Debug, Clone)]
pub struct KernelRoute {
    /// Destination prefix as printed by `ip` (`10.244.1.0/26`, `default`, or a host address).
    pub dst: String,
    /// `via` address (`gateway`), if any.
    pub gateway: Option<String>,
    pub dev: Option<String>,
    /// `proto` (`bgp`, `kernel`, `static`, …).
    pub protocol: Option<String>,
    /// The whole JSON object, for [`super::json_subset`] (nexthop id, metric, multipath…).
    pub raw: Value,
}

impl KernelRoute {
    fn from_json(raw: Value) -> KernelRoute {
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        KernelRoute {
            dst: s("dst").unwrap_or_default(),
            gateway: s("gateway"),
            dev: s("dev"),
            protocol: s("protocol"),
            raw,
        }
    }
}

/// A process started with [`Netns::spawn`]; killed with SIGKILL (by PID) when dropped.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    _lab: Arc<LabInner>,
}

impl Proc {
    /// The process ID (valid until the process is reaped by one of the methods below).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// File receiving the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Current content of the output file.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `None` while running, the exit status once it has exited (the process is reaped).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Sends `signal` if the process has not been reaped yet (so the PID is still ours).
    /// Never panics (it runs in `Drop`).
    pub fn signal(&mut self, signal: i32) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: plain syscall; the PID belongs to our unreaped child.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Graceful stop: SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_timeout(grace) {
            return status;
        }
        eprintln!(
            "{}: still running {grace:?} after SIGTERM, sending SIGKILL",
            self.name
        );
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}
