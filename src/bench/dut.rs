//! The device under test: its configuration, its process, and what /proc says about it.
//!
//! Every device is a [`DeviceSpec`]: a program, its arguments and a configuration text that
//! make it listen on the plan's address and port, passive toward every client, AS 64512,
//! router id and cluster id 198.18.0.1, every client an iBGP route-reflector client, nothing
//! installed in a kernel FIB. Four are described: podbgp ([`podbgp_device`]), BIRD 2
//! ([`bird_device`]), FRR's bgpd without zebra ([`frr_device`]) and GoBGP ([`gobgp_device`]).

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::plan::{ASN, DEVICE_ID, Plan};

/// The speakers `--device` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum DeviceKind {
    Podbgp,
    Bird,
    Frr,
    Gobgp,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Podbgp => "podbgp",
            DeviceKind::Bird => "bird",
            DeviceKind::Frr => "frr",
            DeviceKind::Gobgp => "gobgp",
        }
    }

    /// Where the Debian package puts the program (searched on `PATH` first, except FRR's
    /// bgpd, which is not on it); `None` for podbgp (this executable or `--device-bin`).
    pub fn find_program(self) -> Option<PathBuf> {
        let (name, fallback) = match self {
            DeviceKind::Podbgp => return None,
            DeviceKind::Bird => ("bird", "/usr/sbin/bird"),
            DeviceKind::Frr => {
                return Some(PathBuf::from("/usr/lib/frr/bgpd")).filter(|p| is_exec(p));
            }
            DeviceKind::Gobgp => ("gobgpd", "/usr/bin/gobgpd"),
        };
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| is_exec(p))
        });
        on_path.or_else(|| Some(PathBuf::from(fallback)).filter(|p| is_exec(p)))
    }

    /// The package to install for this device.
    pub fn package(self) -> &'static str {
        match self {
            DeviceKind::Podbgp => "podbgp",
            DeviceKind::Bird => "bird2",
            DeviceKind::Frr => "frr",
            DeviceKind::Gobgp => "gobgpd",
        }
    }
}

fn is_exec(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How to start one device.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    /// Name in the report (`podbgp`, `bird`, `frr`, `gobgp`).
    pub name: String,
    pub program: PathBuf,
    /// Arguments; `{config}` is replaced by the configuration file's path and `{dir}` by the
    /// run directory (pid files, control sockets).
    pub args: Vec<String>,
    /// File name of the configuration inside the run directory.
    pub config_name: String,
    pub config: String,
}

/// The clients of a plan: address and a name for the device's configuration, injectors first.
fn clients(plan: &Plan) -> Vec<(Ipv4Addr, String)> {
    (0..plan.injectors)
        .map(|i| (plan.injector_addr(i), format!("injector{}", i + 1)))
        .chain((0..plan.monitors).map(|j| (plan.monitor_addr(j), format!("monitor{}", j + 1))))
        .collect()
}

/// podbgp as a route reflector: `podbgp run -c <yaml> --api-listen none --log warn`.
pub fn podbgp_device(program: PathBuf, listen: SocketAddr, plan: &Plan) -> DeviceSpec {
    let mut y = format!(
        "# podbgp bench rr-fanin: {k} injectors x {p} prefixes -> {m} monitors\n\
         local_as: {ASN}\nrouter_id: {DEVICE_ID}\ncluster_id: {DEVICE_ID}\n\
         listen: {{ address: \"{ip}\", port: {port} }}\nhold_time: {hold}\n\
         families: [ipv4-unicast]\nneighbors:\n",
        k = plan.injectors,
        p = plan.prefixes,
        m = plan.monitors,
        ip = listen.ip(),
        port = listen.port(),
        hold = plan.hold_time,
    );
    for (addr, desc) in clients(plan) {
        y.push_str(&format!(
            "  - {{ address: {addr}, remote_as: {ASN}, role: rr-client, passive: true, description: {desc} }}\n"
        ));
    }
    DeviceSpec {
        name: "podbgp".into(),
        program,
        args: [
            "run",
            "-c",
            "{config}",
            "--api-listen",
            "none",
            "--log",
            "warn",
        ]
        .map(String::from)
        .to_vec(),
        config_name: "podbgp.yaml".into(),
        config: y,
    }
}

/// BIRD 2: `bird -f -c <conf> -s <dir>/bird.ctl -P <dir>/bird.pid`, one `bgp` protocol per
/// client from a template. The listening address and port are the template's `local … port`
/// (`strict bind`: that address only). iBGP next hops are kept (BIRD's default for iBGP); they
/// do not resolve (no IGP table routes), which BIRD exports all the same, with NEXT_HOP
/// unchanged. No static route: BIRD would export it to the clients too.
pub fn bird_device(program: PathBuf, listen: SocketAddr, plan: &Plan) -> DeviceSpec {
    let mut c = format!(
        "# podbgp bench rr-fanin: {k} injectors x {p} prefixes -> {m} monitors\n\
         log stderr {{ warning, error, fatal, bug }};\n\
         router id {DEVICE_ID};\n\
         protocol device {{ }}\n\
         template bgp rrclient {{\n\
         \x20 local {ip} port {port} as {ASN};\n\
         \x20 strict bind on;\n\
         \x20 passive on;\n\
         \x20 rr client;\n\
         \x20 rr cluster id {DEVICE_ID};\n\
         {hold}\
         \x20 ipv4 {{ import all; export all; }};\n\
         }}\n",
        k = plan.injectors,
        p = plan.prefixes,
        m = plan.monitors,
        ip = listen.ip(),
        port = listen.port(),
        hold = if plan.hold_time == 0 {
            String::new()
        } else {
            format!(
                "  hold time {}; keepalive time {};\n",
                plan.hold_time,
                (plan.hold_time / 3).max(1)
            )
        },
    );
    for (addr, name) in clients(plan) {
        c.push_str(&format!(
            "protocol bgp {name} from rrclient {{ neighbor {addr} as {ASN}; }}\n"
        ));
    }
    DeviceSpec {
        name: "bird".into(),
        program,
        args: [
            "-f",
            "-c",
            "{config}",
            "-s",
            "{dir}/bird.ctl",
            "-P",
            "{dir}/bird.pid",
        ]
        .map(String::from)
        .to_vec(),
        config_name: "bird.conf".into(),
        config: c,
    }
}

/// FRR's bgpd alone: `bgpd -Z -S -p <port> -l <addr> -f <conf> -i <dir>/bgpd.pid
/// --vty_socket <dir> -P 0 --log stdout` (no zebra, so nothing reaches a FIB and next hops
/// count as reachable; `-S` keeps root instead of switching to user frr; `-P 0` opens no vty
/// port). Every client is in one peer group, so bgpd builds one update group.
pub fn frr_device(program: PathBuf, listen: SocketAddr, plan: &Plan) -> DeviceSpec {
    let keepalive = plan.hold_time / 3;
    let mut c = format!(
        "! podbgp bench rr-fanin: {k} injectors x {p} prefixes -> {m} monitors\n\
         log stdout warnings\n\
         router bgp {ASN}\n\
         \x20bgp router-id {DEVICE_ID}\n\
         \x20bgp cluster-id {DEVICE_ID}\n\
         \x20no bgp ebgp-requires-policy\n\
         \x20no bgp network import-check\n\
         \x20neighbor clients peer-group\n\
         \x20neighbor clients remote-as {ASN}\n\
         \x20neighbor clients passive\n\
         \x20neighbor clients timers {keepalive} {hold}\n",
        k = plan.injectors,
        p = plan.prefixes,
        m = plan.monitors,
        hold = plan.hold_time,
    );
    for (addr, _) in clients(plan) {
        c.push_str(&format!(" neighbor {addr} peer-group clients\n"));
    }
    c.push_str(
        " address-family ipv4 unicast\n  neighbor clients route-reflector-client\n exit-address-family\n",
    );
    DeviceSpec {
        name: "frr".into(),
        program,
        args: vec![
            "-Z".into(),
            "-S".into(),
            "-p".into(),
            listen.port().to_string(),
            "-l".into(),
            listen.ip().to_string(),
            "-f".into(),
            "{config}".into(),
            "-i".into(),
            "{dir}/bgpd.pid".into(),
            "--vty_socket".into(),
            "{dir}".into(),
            "-P".into(),
            "0".into(),
            "--log".into(),
            "stdout".into(),
            "--log-level".into(),
            "warnings".into(),
        ],
        config_name: "bgpd.conf".into(),
        config: c,
    }
}

/// GoBGP: `gobgpd -f <toml> -t toml -p --pprof-disable --api-hosts 127.0.0.1:<api_port>
/// -l warn` (`-p`: plain-text log; no pprof listener; the gRPC API on a free port). Every
/// client a passive route-reflector client with cluster id 198.18.0.1. gobgpd accepts
/// connections before it has added every neighbor and closes those it does not know yet; the
/// clients retry.
pub fn gobgp_device(
    program: PathBuf,
    listen: SocketAddr,
    api_port: u16,
    plan: &Plan,
) -> DeviceSpec {
    let mut c = format!(
        "# podbgp bench rr-fanin: {k} injectors x {p} prefixes -> {m} monitors\n\
         [global.config]\n\
         \x20 as = {ASN}\n\
         \x20 router-id = \"{DEVICE_ID}\"\n\
         \x20 port = {port}\n\
         \x20 local-address-list = [\"{ip}\"]\n",
        k = plan.injectors,
        p = plan.prefixes,
        m = plan.monitors,
        ip = listen.ip(),
        port = listen.port(),
    );
    for (addr, name) in clients(plan) {
        c.push_str(&format!(
            "\n[[neighbors]]\n\
             \x20 [neighbors.config]\n\
             \x20   neighbor-address = \"{addr}\"\n\
             \x20   peer-as = {ASN}\n\
             \x20   description = \"{name}\"\n\
             \x20 [neighbors.timers.config]\n\
             \x20   hold-time = {hold}\n\
             \x20   keepalive-interval = {keepalive}\n\
             \x20 [neighbors.transport.config]\n\
             \x20   passive-mode = true\n\
             \x20 [neighbors.route-reflector.config]\n\
             \x20   route-reflector-client = true\n\
             \x20   route-reflector-cluster-id = \"{DEVICE_ID}\"\n",
            hold = plan.hold_time,
            keepalive = plan.hold_time / 3,
        ));
    }
    DeviceSpec {
        name: "gobgp".into(),
        program,
        args: vec![
            "-f".into(),
            "{config}".into(),
            "-t".into(),
            "toml".into(),
            "-p".into(),
            "--pprof-disable".into(),
            "--api-hosts".into(),
            format!("127.0.0.1:{api_port}"),
            "-l".into(),
            "warn".into(),
        ],
        config_name: "gobgpd.toml".into(),
        config: c,
    }
}

/// CPU time and memory of a process, from /proc.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// utime + stime, seconds (all threads).
    pub cpu_s: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS), KiB.
    pub hwm_kib: u64,
}

/// Reads /proc/`pid`/stat and /proc/`pid`/status (`pid` "self" for this process).
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / tck,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// A running device. Dropping it stops the process (SIGTERM, then SIGKILL), by PID.
#[derive(Debug)]
pub struct Device {
    child: Child,
    pub pid: u32,
    pub name: String,
    pub log: PathBuf,
    pub command: String,
}

impl Device {
    /// Writes the configuration into `dir` and starts the device with stdout and stderr in
    /// `dir/device.log`. Must be called from the thread that lives as long as the run (the
    /// child gets SIGKILL when that thread exits, so a killed benchmark leaves no device).
    pub fn spawn(spec: &DeviceSpec, dir: &Path) -> anyhow::Result<Device> {
        let cfg = dir.join(&spec.config_name);
        std::fs::write(&cfg, &spec.config)
            .with_context(|| format!("cannot write {}", cfg.display()))?;
        let log = dir.join("device.log");
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let cfg_s = cfg.display().to_string();
        let dir_s = dir.display().to_string();
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.replace("{config}", &cfg_s).replace("{dir}", &dir_s))
            .collect();
        let mut cmd = Command::new(&spec.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group: Ctrl-C reaches only the benchmark, which stops the device.
            .process_group(0);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", spec.program.display()))?;
        let command = std::iter::once(spec.program.display().to_string())
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Device {
            pid: child.id(),
            child,
            name: spec.name.clone(),
            log,
            command,
        })
    }

    pub fn sample(&self) -> Option<ProcSample> {
        sample(&self.pid.to_string())
    }

    /// `Err` with the exit status and the log's tail if the device has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => anyhow::bail!(
                "device {} exited ({st}); last log lines:\n{}",
                self.name,
                self.log_tail(20)
            ),
            Err(e) => anyhow::bail!("device {}: {e}", self.name),
        }
    }

    /// The last `n` lines of the device's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, up to 2 s for a clean exit, then SIGKILL; idempotent.
    pub fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.pid as libc::pid_t;
        // SAFETY: kill has no memory preconditions; `pid` is our own unreaped child, so the
        // PID cannot have been reused by another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
