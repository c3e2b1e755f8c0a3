//! `podbgp bench fib`: installing, then deleting, N kernel routes with podbgp's netlink writer
//! ([`NetlinkFib`] through [`Fib::apply`]) against `ip -batch` of the same routes, on the same
//! machine in the same run.
//!
//! ```text
//!  network namespace pbfib<pid> (created and deleted by the benchmark):
//!    lo up;  veth0 198.18.0.1/24 up ── veth1 up (no address)
//!    routes: N distinct /32s (--prefix-len) from 10.0.0.0, via 198.18.0.2, proto 12, table main
//! ```
//!
//! Method:
//! * nothing is configured in the root namespace: links and addresses are made with
//!   `ip -n NS`, podbgp's writer runs in a dedicated thread that entered the namespace with
//!   `setns(CLONE_NEWNET)` before [`NetlinkFib::open`] (the socket stays bound to it), and
//!   `ip` runs as `ip -n NS -batch FILE`;
//! * **podbgp**: the [`FibOp`]s are built before the clock starts; `wall_s` runs from the
//!   first to the end of the last [`Fib::apply`] call, `--batch` operations per call
//!   (`FibConfig::default()`: protocol 12, main table), written the way the daemon writes a
//!   fresh table: [`FibOp::Add`] (`NLM_F_CREATE | NLM_F_EXCL`, which never overwrites a route
//!   it does not know) with the per-call table dump off ([`NetlinkFib::set_verify_replaces`]);
//! * **ip-batch**: the batch files (`route replace P via 198.18.0.2 proto 12`, then
//!   `route del P proto 12`) are written before the clock starts; `wall_s` runs from spawning
//!   `ip` to its exit (a pidfd makes the exit time exact), so it includes one `fork`/`exec`;
//! * after each install the namespace must hold exactly N IPv4 routes with protocol 12 in the
//!   main table, all via 198.18.0.2, and after each delete none: counted with
//!   `ip -n NS -4 route show table main proto 12`, outside the clock. Anything else fails the
//!   benchmark;
//! * each size runs `--runs` times; podbgp goes first in odd runs and `ip` in even runs, and
//!   the table shows the medians.
//!
//! Clean-up: the namespace and the scratch directory are guards whose `Drop` removes them
//! (after killing, by PID, any process left in the namespace), on success, on error and on
//! SIGINT/SIGTERM, which set a flag checked between steps, between batches and while waiting
//! for `ip`; the running `ip` is then killed by PID. A child `ip` also gets SIGKILL if the
//! benchmark dies (`PR_SET_PDEATHSIG`), and a namespace left by a benchmark that was killed
//! outright (`pbfib<pid>` with no such process any more) is deleted by the next run.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ipnet::{IpNet, Ipv4Net};

use super::thousands;
use crate::fib::{Fib, FibConfig, FibOp, FibRoute, NetlinkFib, NextHop};

/// Namespace name prefix: `pbfib<pid>` (at most 12 characters; the kernel allows 15).
const NS_PREFIX: &str = "pbfib";
/// The address of `veth0` in the namespace.
const LOCAL: &str = "198.18.0.1/24";
/// The gateway of every route.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The first prefix; the routes are consecutive prefixes of `--prefix-len` from here.
const BASE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);
/// Protocol of the routes (`FibConfig::default()`, `RTPROT_BIRD`).
const PROTO: u8 = crate::fib::RTPROT_BIRD;
/// How often a long step reports progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `podbgp bench fib …`
#[derive(clap::Args, Debug, Clone)]
pub struct FibArgs {
    /// Routes per measurement (N); a comma-separated list measures each size in turn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000",
        value_name = "N[,N…]"
    )]
    pub routes: Vec<u32>,
    /// Repetitions of each size; podbgp and ip -batch alternate within a run, and the table
    /// shows the medians.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Operations per `Fib::apply` call for podbgp's writer (which sends them 128 per netlink
    /// datagram and, before a call with replaces, dumps the table once).
    #[arg(long, default_value_t = 10_000)]
    pub batch: u32,
    /// Prefix length of the routes (8–32): N consecutive prefixes of this length from
    /// 10.0.0.0, so N is at most 2^(len − 8).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(8..=32))]
    pub prefix_len: u8,
    /// Print only the JSON lines on stdout (no table).
    #[arg(long)]
    pub json: bool,
    /// The iproute2 `ip` program.
    #[arg(long, default_value = "ip", value_name = "PATH")]
    pub ip: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    Podbgp,
    IpBatch,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::Podbgp => "podbgp",
            Writer::IpBatch => "ip-batch",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Install,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Install => "install",
            Op::Delete => "delete",
        }
    }
}

/// One timed step.
#[derive(Clone, Debug)]
struct Measurement {
    run: u32,
    writer: Writer,
    routes: u32,
    op: Op,
    wall_s: f64,
    batch: u32,
    prefix_len: u8,
}

impl Measurement {
    fn routes_per_s(&self) -> f64 {
        f64::from(self.routes) / self.wall_s
    }

    /// One JSON object, keys in a fixed order.
    fn json(&self) -> String {
        use serde_json::{Value, json};
        let fields: [(&str, Value); 9] = [
            ("scenario", json!("fib")),
            ("device", json!(self.writer.name())),
            ("routes", json!(self.routes)),
            ("op", json!(self.op.name())),
            ("wall_s", json!((self.wall_s * 1e6).round() / 1e6)),
            ("routes_per_s", json!(self.routes_per_s().round() as u64)),
            ("run", json!(self.run)),
            (
                "batch",
                match self.writer {
                    Writer::Podbgp => json!(self.batch),
                    Writer::IpBatch => Value::Null,
                },
            ),
            ("prefix_len", json!(self.prefix_len)),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// The `i`-th route's destination.
fn prefix(i: u32, len: u8) -> Ipv4Net {
    let step = 1u32 << (32 - u32::from(len));
    let addr = u32::from(BASE) + i * step;
    Ipv4Net::new(Ipv4Addr::from(addr), len).expect("prefix length checked by clap")
}

/// How many distinct prefixes of `len` 10.0.0.0/8 holds.
fn capacity(len: u8) -> u64 {
    1u64 << (u32::from(len) - 8)
}

/// Runs the scenario (no tokio: every step is a blocking call or a child process).
pub fn main(a: FibArgs) -> anyhow::Result<()> {
    ensure!(a.runs >= 1, "--runs must be at least 1");
    ensure!(a.batch >= 1, "--batch must be at least 1");
    ensure!(!a.routes.is_empty(), "--routes needs at least one size");
    for &n in &a.routes {
        ensure!(n >= 1, "--routes: every size must be at least 1");
        ensure!(
            u64::from(n) <= capacity(a.prefix_len),
            "--routes {n}: 10.0.0.0/8 holds only {} /{} prefixes",
            capacity(a.prefix_len),
            a.prefix_len
        );
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "podbgp bench fib needs root (it creates a network namespace and writes routes in it)"
        );
    }
    let ip = IpTool {
        program: a.ip.clone(),
    };
    ip.check()?;

    let _signals = SignalGuard::install().context("cannot install the SIGINT/SIGTERM handlers")?;
    reap_stale_namespaces(&ip);
    let scratch = Scratch::new()?;
    let ns = Netns::create(&ip, format!("{NS_PREFIX}{}", std::process::id()))?;
    ns.setup()?;
    let mut worker = Worker::spawn(&ns.name, a.prefix_len)?;
    eprintln!(
        "[fib] namespace {} ready: veth0 {LOCAL}, routes via {GATEWAY} proto {PROTO}, podbgp writer opened inside it",
        ns.name
    );
    ns.expect_routes(0, "at start")?;

    let mut results = Vec::new();
    for &n in &a.routes {
        interrupted()?;
        let files = write_batch_files(&scratch.path, n, a.prefix_len)?;
        for run in 1..=a.runs {
            let order = if run % 2 == 1 {
                [Writer::Podbgp, Writer::IpBatch]
            } else {
                [Writer::IpBatch, Writer::Podbgp]
            };
            for writer in order {
                for op in [Op::Install, Op::Delete] {
                    interrupted()?;
                    let label = format!(
                        "[fib {} routes, run {run}/{}] {} {}",
                        thousands(u64::from(n)),
                        a.runs,
                        writer.name(),
                        op.name()
                    );
                    eprintln!("{label}: measuring");
                    let wall = match writer {
                        Writer::Podbgp => worker.run(op, n, a.batch, &label)?,
                        Writer::IpBatch => {
                            let file = match op {
                                Op::Install => &files.install,
                                Op::Delete => &files.delete,
                            };
                            ip.batch(&ns.name, file, &scratch.path.join("ip-batch.log"), &label)?
                        }
                    };
                    let want = match op {
                        Op::Install => n,
                        Op::Delete => 0,
                    };
                    let m = Measurement {
                        run,
                        writer,
                        routes: n,
                        op,
                        wall_s: wall.as_secs_f64(),
                        batch: a.batch,
                        prefix_len: a.prefix_len,
                    };
                    eprintln!(
                        "{label}: {:.3} s ({} routes/s); verifying",
                        m.wall_s,
                        thousands(m.routes_per_s().round() as u64)
                    );
                    ns.expect_routes(
                        want,
                        &format!("after {} {} of {n} routes", writer.name(), op.name()),
                    )?;
                    println!("{}", m.json());
                    results.push(m);
                }
            }
        }
        files.remove();
    }
    worker.stop();
    if !a.json {
        print_table(&a, &ns.name, &results);
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn print_table(a: &FibArgs, ns: &str, results: &[Measurement]) {
    println!();
    println!(
        "fib: install then delete N IPv4 /{} routes via {GATEWAY} (proto {PROTO}, table main) in netns {ns}; \
         median of {} run{}; podbgp: Fib::apply, {} routes per call",
        a.prefix_len,
        a.runs,
        if a.runs == 1 { "" } else { "s" },
        thousands(u64::from(a.batch))
    );
    println!(
        "{:>10} {:<8} {:>10} {:>16} {:>12} {:>18} {:>16}",
        "routes",
        "op",
        "podbgp_s",
        "podbgp routes/s",
        "ip-batch_s",
        "ip-batch routes/s",
        "podbgp/ip-batch"
    );
    for &n in &a.routes {
        for op in [Op::Install, Op::Delete] {
            let med = |w: Writer| {
                median(
                    results
                        .iter()
                        .filter(|m| m.routes == n && m.op == op && m.writer == w)
                        .map(|m| m.wall_s)
                        .collect(),
                )
            };
            let (Some(p), Some(i)) = (med(Writer::Podbgp), med(Writer::IpBatch)) else {
                continue;
            };
            let rate = |s: f64| thousands((f64::from(n) / s).round() as u64);
            println!(
                "{:>10} {:<8} {:>10.3} {:>16} {:>12.3} {:>18} {:>15.2}x",
                thousands(u64::from(n)),
                op.name(),
                p,
                rate(p),
                i,
                rate(i),
                i / p
            );
        }
    }
    println!(
        "podbgp/ip-batch: podbgp's routes/s divided by ip -batch's (ip-batch_s / podbgp_s); \
         above 1 means podbgp is faster"
    );
}

// ───────────────────────────── interruption ─────────────────────────────

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// `Err` once SIGINT or SIGTERM arrived.
fn interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// SIGINT and SIGTERM set [`INTERRUPTED`] while this lives; the previous dispositions come
/// back on drop. No `SA_RESTART`, so a `poll` waiting for `ip` returns at once.
struct SignalGuard {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalGuard {
    fn install() -> std::io::Result<SignalGuard> {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let mut guard = SignalGuard { old: Vec::new() };
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is a valid value; the handler only stores to an
            // atomic (async-signal-safe); both structs live across the calls.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut old) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                guard.old.push((sig, old));
            }
        }
        Ok(guard)
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (sig, old) in &self.old {
            // SAFETY: restores a disposition sigaction returned earlier.
            unsafe {
                libc::sigaction(*sig, old, std::ptr::null_mut());
            }
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread, so they reach the main thread.
fn block_signals_in_this_thread() {
    // SAFETY: a sigset on the stack, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

// ───────────────────────────── ip and the namespace ─────────────────────────────

/// The `ip` program.
struct IpTool {
    program: PathBuf,
}

impl IpTool {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.stdin(Stdio::null());
        c
    }

    fn check(&self) -> anyhow::Result<()> {
        let out =
            self.command().arg("-V").output().with_context(|| {
                format!("cannot run {} (install iproute2)", self.program.display())
            })?;
        ensure!(out.status.success(), "{} -V failed", self.program.display());
        Ok(())
    }

    /// Runs `ip ARGS` to completion; its stdout, or an error with its stderr.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        if !out.status.success() {
            bail!(
                "`{} {}` failed ({}): {}",
                self.program.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Times `ip -n NS -batch FILE` from spawn to exit.
    fn batch(&self, ns: &str, file: &Path, log: &Path, label: &str) -> anyhow::Result<Duration> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = self.command();
        cmd.args(["-n", ns, "-batch"])
            .arg(file)
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group: Ctrl-C reaches only the benchmark, which kills it.
            .process_group(0);
        super::die_with_parent(&mut cmd);
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let mut child = ChildGuard(child);
        let (status, wall) = child.wait_interruptible(t0, label)?;
        if !status.success() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "`{} -n {ns} -batch {}` failed ({status}): {}",
                self.program.display(),
                file.display(),
                text.trim()
            );
        }
        Ok(wall)
    }
}

/// A child process, killed by PID (SIGKILL) and reaped on drop if it is still running.
struct ChildGuard(Child);

impl ChildGuard {
    /// Waits for the exit; returns the status and the time from `t0` to the exit. Gives up
    /// (and the drop kills the child) when the benchmark is interrupted.
    fn wait_interruptible(
        &mut self,
        t0: Instant,
        label: &str,
    ) -> anyhow::Result<(ExitStatus, Duration)> {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: pidfd_open on our own unreaped child; the result is checked before use.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
        // SAFETY: a fresh descriptor returned by the kernel, owned by nobody else.
        let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) });
        let mut next_report = t0 + PROGRESS_EVERY;
        loop {
            let exited_at = match &pidfd {
                Some(fd) => {
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, living across the call.
                    let rc = unsafe { libc::poll(&mut pfd, 1, 200) };
                    let now = Instant::now();
                    (rc > 0).then_some(now)
                }
                // No pidfd (old kernel): poll the exit every millisecond.
                None => {
                    let now = Instant::now();
                    if self.0.try_wait()?.is_some() {
                        Some(now)
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                        None
                    }
                }
            };
            if let Some(at) = exited_at {
                let status = self.0.wait()?;
                return Ok((status, at - t0));
            }
            interrupted()?;
            if Instant::now() >= next_report {
                eprintln!(
                    "{label}: {:.0} s, still running",
                    t0.elapsed().as_secs_f64()
                );
                next_report += PROGRESS_EVERY;
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SAFETY: kill has no memory preconditions; the PID is our own unreaped child,
            // so it cannot have been reused.
            unsafe {
                libc::kill(self.0.id() as libc::pid_t, libc::SIGKILL);
            }
            let _ = self.0.wait();
        }
    }
}

/// The benchmark's network namespace; deleted on drop.
struct Netns {
    ip: PathBuf,
    name: String,
}

impl Netns {
    fn create(ip: &IpTool, name: String) -> anyhow::Result<Netns> {
        ensure!(name.len() <= 15, "namespace name {name} is too long");
        ip.run(&["netns", "add", &name])?;
        Ok(Netns {
            ip: ip.program.clone(),
            name,
        })
    }

    fn tool(&self) -> IpTool {
        IpTool {
            program: self.ip.clone(),
        }
    }

    /// `ip -n NAME ARGS`.
    fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.tool().run(&all)
    }

    /// Loopback up, `veth0` (198.18.0.1/24) paired with `veth1`, both in here and up, so
    /// 198.18.0.2 is a reachable gateway on a connected subnet.
    fn setup(&self) -> anyhow::Result<()> {
        self.ip(&["link", "set", "lo", "up"])?;
        self.ip(&[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ])?;
        self.ip(&["addr", "add", LOCAL, "dev", "veth0"])?;
        self.ip(&["link", "set", "veth1", "up"])?;
        self.ip(&["link", "set", "veth0", "up"])?;
        Ok(())
    }

    /// Checks that the main table holds exactly `want` IPv4 routes with our protocol, all via
    /// the gateway; fails loudly otherwise.
    fn expect_routes(&self, want: u32, when: &str) -> anyhow::Result<()> {
        let proto = PROTO.to_string();
        let mut child = ChildGuard(
            self.tool()
                .command()
                .args(["-n", &self.name, "-4", "route", "show", "table", "main"])
                .args(["proto", &proto])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("cannot run ip route show")?,
        );
        let stdout = child.0.stdout.take().context("no stdout")?;
        let via = format!(" via {GATEWAY} ");
        let (mut total, mut other) = (0u64, 0u64);
        let mut first_other = None;
        for line in BufReader::with_capacity(1 << 20, stdout).lines() {
            let line = line.context("reading ip route show")?;
            total += 1;
            if !line.contains(&via) {
                other += 1;
                first_other.get_or_insert(line);
            }
        }
        let status = child.0.wait()?;
        interrupted()?;
        ensure!(
            status.success(),
            "ip route show in {} failed ({status})",
            self.name
        );
        if total != u64::from(want) || other != 0 {
            bail!(
                "{when}: namespace {} holds {total} IPv4 routes with proto {PROTO} in table main, \
                 expected {want}{}",
                self.name,
                match first_other {
                    Some(l) => format!("; {other} not via {GATEWAY}, e.g. `{l}`"),
                    None => String::new(),
                }
            );
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        destroy_namespace(&self.tool(), &self.name);
    }
}

/// Kills (by PID) any process left in `name` other than this one, then deletes it.
fn destroy_namespace(ip: &IpTool, name: &str) {
    let me = std::process::id();
    if let Ok(pids) = ip.run(&["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            if pid != me {
                eprintln!("[fib] killing leftover pid {pid} in namespace {name}");
                // SAFETY: kill has no memory preconditions; the process is inside a namespace
                // this benchmark created.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
    match ip.run(&["netns", "del", name]) {
        Ok(_) => eprintln!("[fib] namespace {name} deleted"),
        Err(e) => eprintln!("[fib] cannot delete namespace {name}: {e:#}"),
    }
}

/// Deletes the namespaces of earlier benchmarks that died without cleaning up
/// (`pbfib<pid>` where no process `pid` exists).
fn reap_stale_namespaces(ip: &IpTool) {
    let Ok(list) = ip.run(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("[fib] namespace {name} was left by a benchmark that is gone");
            destroy_namespace(ip, name);
        }
    }
}

// ───────────────────────────── batch files ─────────────────────────────

/// A scratch directory in the temp dir, removed on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let path = std::env::temp_dir().join(format!("podbgp-bench-fib-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

struct BatchFiles {
    install: PathBuf,
    delete: PathBuf,
}

impl BatchFiles {
    fn remove(self) {
        let _ = std::fs::remove_file(&self.install);
        let _ = std::fs::remove_file(&self.delete);
    }
}

/// Writes the install and delete batch files for `n` routes (outside any clock).
fn write_batch_files(dir: &Path, n: u32, len: u8) -> anyhow::Result<BatchFiles> {
    let t = Instant::now();
    let files = BatchFiles {
        install: dir.join(format!("install-{n}.batch")),
        delete: dir.join(format!("delete-{n}.batch")),
    };
    let write = |path: &Path, line: &dyn Fn(Ipv4Net) -> String| -> anyhow::Result<()> {
        let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        for i in 0..n {
            w.write_all(line(prefix(i, len)).as_bytes())?;
        }
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    };
    write(&files.install, &|p| {
        format!("route replace {p} via {GATEWAY} proto {PROTO}\n")
    })?;
    write(&files.delete, &|p| format!("route del {p} proto {PROTO}\n"))?;
    eprintln!(
        "[fib] wrote the ip batch files for {} routes in {:.2} s",
        thousands(u64::from(n)),
        t.elapsed().as_secs_f64()
    );
    Ok(files)
}

// ───────────────────────────── podbgp's writer ─────────────────────────────

/// One measurement for the writer thread.
struct Job {
    op: Op,
    routes: u32,
    batch: u32,
}

enum Report {
    /// The socket is open in the namespace (or why not).
    Ready(Result<(), String>),
    Progress {
        done: u32,
        elapsed: Duration,
    },
    /// Time from the first to the end of the last `apply`, or why the job failed.
    Done(Result<Duration, String>),
}

/// The thread that owns the [`NetlinkFib`], inside the namespace.
struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    reports: mpsc::Receiver<Report>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(ns: &str, prefix_len: u8) -> anyhow::Result<Worker> {
        let path = PathBuf::from(format!("/var/run/netns/{ns}"));
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (tx, reports) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("fib-writer".into())
            .spawn(move || writer_thread(&path, prefix_len, jobs_rx, tx))
            .context("cannot start the writer thread")?;
        let mut w = Worker {
            jobs: Some(jobs_tx),
            reports,
            handle: Some(handle),
        };
        match w.next_report()? {
            Report::Ready(Ok(())) => Ok(w),
            Report::Ready(Err(e)) => bail!("{e}"),
            _ => bail!("the writer thread did not start"),
        }
    }

    /// The next report, waiting with an eye on [`INTERRUPTED`].
    fn next_report(&mut self) -> anyhow::Result<Report> {
        loop {
            match self.reports.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => return Ok(r),
                Err(mpsc::RecvTimeoutError::Timeout) => interrupted()?,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    interrupted()?;
                    bail!("the writer thread ended unexpectedly (panic?)")
                }
            }
        }
    }

    /// Runs one install or delete of `routes` routes and returns its time.
    fn run(&mut self, op: Op, routes: u32, batch: u32, label: &str) -> anyhow::Result<Duration> {
        self.jobs
            .as_ref()
            .context("the writer thread is stopped")?
            .send(Job { op, routes, batch })
            .map_err(|_| anyhow::anyhow!("the writer thread ended unexpectedly"))?;
        loop {
            match self.next_report()? {
                Report::Progress { done, elapsed } => eprintln!(
                    "{label}: {:.0} s, {}/{} routes",
                    elapsed.as_secs_f64(),
                    thousands(u64::from(done)),
                    thousands(u64::from(routes))
                ),
                Report::Done(Ok(d)) => return Ok(d),
                Report::Done(Err(e)) => bail!("{label}: {e}"),
                Report::Ready(_) => {}
            }
        }
    }

    /// Ends the thread and waits for it (it stops between two `apply` calls when
    /// interrupted).
    fn stop(&mut self) {
        self.jobs = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn writer_thread(ns: &Path, prefix_len: u8, jobs: mpsc::Receiver<Job>, tx: mpsc::Sender<Report>) {
    block_signals_in_this_thread();
    let fib = File::open(ns)
        .with_context(|| format!("cannot open {}", ns.display()))
        .and_then(|f| {
            // SAFETY: setns on a valid namespace descriptor; it changes only this thread,
            // which is dedicated to the namespace for its whole life.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!(
                    "setns({}): {}",
                    ns.display(),
                    std::io::Error::last_os_error()
                );
            }
            NetlinkFib::open(FibConfig::default())
                .map(|mut f| {
                    // As the daemon writes: ownership is tracked by the FibManager (a route
                    // it does not know to be ours is added with NLM_F_EXCL), not by a dump
                    // of the table per call.
                    f.set_verify_replaces(false);
                    f
                })
                .map_err(|e| anyhow::anyhow!("cannot open the netlink FIB: {e}"))
        });
    let mut fib = match fib {
        Ok(f) => {
            let _ = tx.send(Report::Ready(Ok(())));
            f
        }
        Err(e) => {
            let _ = tx.send(Report::Ready(Err(format!("{e:#}"))));
            return;
        }
    };
    let gateway = IpAddr::V4(GATEWAY);
    for job in jobs {
        // Built before the clock starts, like the batch file for ip.
        let ops: Vec<FibOp> = (0..job.routes)
            .map(|i| {
                let p = IpNet::V4(prefix(i, prefix_len));
                match job.op {
                    Op::Install => FibOp::Add(FibRoute::unicast(p, vec![NextHop::via(gateway)])),
                    Op::Delete => FibOp::Delete(p),
                }
            })
            .collect();
        let _ = tx.send(Report::Done(apply_all(
            &mut fib,
            &ops,
            job.batch as usize,
            &tx,
        )));
    }
}

/// Applies `ops` in calls of `batch`, timed from the first call to the end of the last.
fn apply_all(
    fib: &mut NetlinkFib,
    ops: &[FibOp],
    batch: usize,
    tx: &mpsc::Sender<Report>,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut next_report = t0 + PROGRESS_EVERY;
    let mut done = 0;
    for chunk in ops.chunks(batch) {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        let failed = fib.apply(chunk);
        if let Some((p, e)) = failed.first() {
            return Err(format!(
                "Fib::apply failed for {} of {} routes in a call (first: {p}: {e})",
                failed.len(),
                chunk.len()
            ));
        }
        done += chunk.len();
        let now = Instant::now();
        if now >= next_report {
            let _ = tx.send(Report::Progress {
                done: done as u32,
                elapsed: now - t0,
            });
            next_report = now + PROGRESS_EVERY;
        }
    }
    Ok(t0.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_consecutive_and_distinct() {
        assert_eq!(prefix(0, 32).to_string(), "10.0.0.0/32");
        assert_eq!(prefix(1, 32).to_string(), "10.0.0.1/32");
        assert_eq!(prefix(65_536, 32).to_string(), "10.1.0.0/32");
        assert_eq!(prefix(1, 28).to_string(), "10.0.0.16/28");
        assert_eq!(prefix((1 << 20) - 1, 28).to_string(), "10.255.255.240/28");
        assert_eq!(capacity(32), 1 << 24);
        assert_eq!(capacity(8), 1);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn json_line_has_the_fields_in_order() {
        let m = Measurement {
            run: 2,
            writer: Writer::IpBatch,
            routes: 1000,
            op: Op::Delete,
            wall_s: 0.5,
            batch: 10_000,
            prefix_len: 32,
        };
        assert_eq!(
            m.json(),
            r#"{"scenario":"fib","device":"ip-batch","routes":1000,"op":"delete","wall_s":0.5,"routes_per_s":2000,"run":2,"batch":null,"prefix_len":32}"#
        );
    }
}
