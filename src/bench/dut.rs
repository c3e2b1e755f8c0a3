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

use ipnet::Ipv4Net;

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
    /// Commands run once the device started, each retried until it succeeds (GoBGP's
    /// originated routes, added over its API); same substitutions as `args`.
    pub after_start: Vec<Vec<String>>,
    /// The command printing the size of the device's BGP table, and how to read it.
    pub rib_query: Option<RibQuery>,
}

/// What the device is in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DutRole {
    /// Route reflector: every client an iBGP route-reflector client (cluster id 198.18.0.1).
    Reflector,
    /// One node of an iBGP full mesh: every client a plain iBGP peer, nothing reflected.
    MeshNode,
}

/// What a device is configured with for one run.
#[derive(Clone, Debug)]
pub struct Setup {
    /// First line of the configuration (a comment).
    pub title: String,
    pub listen: SocketAddr,
    pub role: DutRole,
    /// Every client: address and a name for the configuration; all passive on the device.
    pub clients: Vec<(Ipv4Addr, String)>,
    /// Prefixes the device originates itself, with NEXT_HOP 198.18.0.1 (its router id; the
    /// session's own address, 127.0.0.1, is a martian receivers discard, RFC 4271 §6.3).
    pub originate: Vec<Ipv4Net>,
    pub hold_time: u16,
}

impl Setup {
    /// Route reflector for the injectors and monitors of `plan`.
    pub fn reflector(scenario: &str, listen: SocketAddr, plan: &Plan) -> Setup {
        Setup {
            title: format!(
                "podbgp bench {scenario}: {} injectors x {} prefixes -> {} monitors",
                plan.injectors, plan.prefixes, plan.monitors
            ),
            listen,
            role: DutRole::Reflector,
            clients: clients(plan),
            originate: Vec::new(),
            hold_time: plan.hold_time,
        }
    }
}

/// The clients of a plan: address and a name for the device's configuration, injectors first.
fn clients(plan: &Plan) -> Vec<(Ipv4Addr, String)> {
    (0..plan.injectors)
        .map(|i| (plan.injector_addr(i), format!("injector{}", i + 1)))
        .chain((0..plan.monitors).map(|j| (plan.monitor_addr(j), format!("monitor{}", j + 1))))
        .collect()
}

/// The specification of `kind` (running `program`) for `setup`.
pub fn spec(kind: DeviceKind, program: PathBuf, setup: &Setup) -> anyhow::Result<DeviceSpec> {
    Ok(match kind {
        DeviceKind::Podbgp => podbgp_device(program, setup),
        DeviceKind::Bird => bird_device(program, setup),
        DeviceKind::Frr => frr_device(program, setup),
        DeviceKind::Gobgp => gobgp_device(program, free_port()?, setup),
    })
}

/// The program of `kind`'s command-line client next to `program` (birdc, vtysh, gobgp).
fn sibling(program: &Path, name: &str, fallback: &str) -> String {
    program
        .parent()
        .map(|d| d.join(name))
        .filter(|p| is_exec(p))
        .unwrap_or_else(|| PathBuf::from(fallback))
        .display()
        .to_string()
}

/// podbgp: `podbgp run -c <yaml> --api-listen <dir>/api.sock --log warn`; route reflector
/// (`role: rr-client` clients) or mesh node (`role: mesh`), `originate:` for its own prefixes.
pub fn podbgp_device(program: PathBuf, setup: &Setup) -> DeviceSpec {
    let mut y = format!(
        "# {title}\n\
         local_as: {ASN}\nrouter_id: {DEVICE_ID}\ncluster_id: {DEVICE_ID}\n\
         listen: {{ address: \"{ip}\", port: {port} }}\nhold_time: {hold}\n\
         families: [ipv4-unicast]\n",
        title = setup.title,
        ip = setup.listen.ip(),
        port = setup.listen.port(),
        hold = setup.hold_time,
    );
    if !setup.originate.is_empty() {
        // NEXT_HOP of its own routes: not the session's 127.0.0.1, which receivers discard.
        y.push_str(&format!("next_hop_ipv4: {DEVICE_ID}\noriginate:\n"));
        for p in &setup.originate {
            y.push_str(&format!("  - {p}\n"));
        }
    }
    y.push_str("neighbors:\n");
    let role = match setup.role {
        DutRole::Reflector => "rr-client",
        DutRole::MeshNode => "mesh",
    };
    for (addr, desc) in &setup.clients {
        y.push_str(&format!(
            "  - {{ address: {addr}, remote_as: {ASN}, role: {role}, passive: true, description: {desc} }}\n"
        ));
    }
    let query = RibQuery {
        program: program.display().to_string(),
        args: ["speaker", "--json", "--api", "{dir}/api.sock"]
            .map(String::from)
            .to_vec(),
        parse: RibParse::Podbgp,
    };
    DeviceSpec {
        name: "podbgp".into(),
        program,
        args: [
            "run",
            "-c",
            "{config}",
            "--api-listen",
            "{dir}/api.sock",
            "--log",
            "warn",
        ]
        .map(String::from)
        .to_vec(),
        config_name: "podbgp.yaml".into(),
        config: y,
        after_start: Vec::new(),
        rib_query: Some(query),
    }
}

/// BIRD 2: `bird -f -c <conf> -s <dir>/bird.ctl -P <dir>/bird.pid`, one `bgp` protocol per
/// client from a template. The listening address and port are the template's `local … port`
/// (`strict bind`: that address only). iBGP next hops are kept (BIRD's default for iBGP); they
/// do not resolve (no IGP table routes), which BIRD exports all the same, with NEXT_HOP
/// unchanged. Originated prefixes are a `static` protocol of blackhole routes, exported with
/// `bgp_next_hop` set by the export filter; without any, no static protocol.
pub fn bird_device(program: PathBuf, setup: &Setup) -> DeviceSpec {
    let rr = match setup.role {
        DutRole::Reflector => format!("  rr client;\n  rr cluster id {DEVICE_ID};\n"),
        DutRole::MeshNode => String::new(),
    };
    let mut c = format!(
        "# {title}\n\
         log stderr {{ warning, error, fatal, bug }};\n\
         router id {DEVICE_ID};\n\
         protocol device {{ }}\n",
        title = setup.title,
    );
    if !setup.originate.is_empty() {
        c.push_str("protocol static originated {\n  ipv4;\n");
        for p in &setup.originate {
            c.push_str(&format!("  route {p} blackhole;\n"));
        }
        c.push_str("}\n");
    }
    c.push_str(&format!(
        "template bgp clients {{\n\
         \x20 local {ip} port {port} as {ASN};\n\
         \x20 strict bind on;\n\
         \x20 passive on;\n\
         {rr}\
         {hold}\
         \x20 ipv4 {{ import all; {export} }};\n\
         }}\n",
        export = if setup.originate.is_empty() {
            "export all;".to_string()
        } else {
            format!(
                "export filter {{ if source = RTS_STATIC then bgp_next_hop = {DEVICE_ID}; accept; }};"
            )
        },
        ip = setup.listen.ip(),
        port = setup.listen.port(),
        hold = if setup.hold_time == 0 {
            String::new()
        } else {
            format!(
                "  hold time {}; keepalive time {};\n",
                setup.hold_time,
                (setup.hold_time / 3).max(1)
            )
        },
    ));
    for (addr, name) in &setup.clients {
        c.push_str(&format!(
            "protocol bgp {name} from clients {{ neighbor {addr} as {ASN}; }}\n"
        ));
    }
    let query = RibQuery {
        program: sibling(&program, "birdc", "/usr/sbin/birdc"),
        args: ["-s", "{dir}/bird.ctl", "show", "route", "count"]
            .map(String::from)
            .to_vec(),
        parse: RibParse::Bird,
    };
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
        after_start: Vec::new(),
        rib_query: Some(query),
    }
}

/// FRR's bgpd alone: `bgpd -Z -S -p <port> -l <addr> -f <conf> -i <dir>/bgpd.pid
/// --vty_socket <dir> -P 0 --log stdout` (no zebra, so nothing reaches a FIB and next hops
/// count as reachable; `-S` keeps root instead of switching to user frr; `-P 0` opens no vty
/// port). Every client is in one peer group, so bgpd builds one update group. Originated
/// prefixes are `network` statements (`no bgp network import-check`: no IGP route needed)
/// with a route map setting their next hop.
pub fn frr_device(program: PathBuf, setup: &Setup) -> DeviceSpec {
    let keepalive = setup.hold_time / 3;
    let mut c = format!(
        "! {title}\n\
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
        title = setup.title,
        hold = setup.hold_time,
    );
    for (addr, _) in &setup.clients {
        c.push_str(&format!(" neighbor {addr} peer-group clients\n"));
    }
    c.push_str(" address-family ipv4 unicast\n");
    for p in &setup.originate {
        c.push_str(&format!("  network {p} route-map originated\n"));
    }
    if setup.role == DutRole::Reflector {
        c.push_str("  neighbor clients route-reflector-client\n");
    }
    c.push_str(" exit-address-family\n");
    if !setup.originate.is_empty() {
        c.push_str(&format!(
            "route-map originated permit 10\n set ip next-hop {DEVICE_ID}\nexit\n"
        ));
    }
    // Straight to bgpd's vty socket, as vtysh does: vtysh itself takes 70-120 ms to start.
    let query = RibQuery {
        program: "{dir}/bgpd.vty".into(),
        args: vec!["show bgp ipv4 unicast statistics json".into()],
        parse: RibParse::FrrVty,
    };
    DeviceSpec {
        name: "frr".into(),
        program,
        args: vec![
            "-Z".into(),
            "-S".into(),
            "-p".into(),
            setup.listen.port().to_string(),
            "-l".into(),
            setup.listen.ip().to_string(),
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
        after_start: Vec::new(),
        rib_query: Some(query),
    }
}

/// GoBGP: `gobgpd -f <toml> -t toml -p --pprof-disable --api-hosts 127.0.0.1:<api_port>
/// -l warn` (`-p`: plain-text log; no pprof listener; the gRPC API on a free port). Every
/// client passive, a route-reflector client with cluster id 198.18.0.1 on a reflector.
/// gobgpd accepts connections before it has added every neighbor and closes those it does not
/// know yet; the clients retry. Its configuration file cannot originate routes: they are added
/// once it runs with `gobgp global rib add P nexthop 198.18.0.1` (one command per prefix,
/// before the clock starts).
pub fn gobgp_device(program: PathBuf, api_port: u16, setup: &Setup) -> DeviceSpec {
    let mut c = format!(
        "# {title}\n\
         [global.config]\n\
         \x20 as = {ASN}\n\
         \x20 router-id = \"{DEVICE_ID}\"\n\
         \x20 port = {port}\n\
         \x20 local-address-list = [\"{ip}\"]\n",
        title = setup.title,
        ip = setup.listen.ip(),
        port = setup.listen.port(),
    );
    for (addr, name) in &setup.clients {
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
             \x20   passive-mode = true\n",
            hold = setup.hold_time,
            keepalive = setup.hold_time / 3,
        ));
        if setup.role == DutRole::Reflector {
            c.push_str(&format!(
                "\x20 [neighbors.route-reflector.config]\n\
                 \x20   route-reflector-client = true\n\
                 \x20   route-reflector-cluster-id = \"{DEVICE_ID}\"\n"
            ));
        }
    }
    let cli = sibling(&program, "gobgp", "/usr/bin/gobgp");
    let api = [
        "-u".to_string(),
        "127.0.0.1".into(),
        "-p".into(),
        api_port.to_string(),
    ];
    let after_start = setup
        .originate
        .iter()
        .map(|p| {
            let mut cmd = vec![cli.clone()];
            cmd.extend(api.iter().cloned());
            cmd.extend(["global", "rib", "add", "-a", "ipv4"].map(String::from));
            cmd.push(p.to_string());
            cmd.extend(["nexthop".to_string(), DEVICE_ID.to_string()]);
            cmd
        })
        .collect();
    let mut qargs: Vec<String> = api.to_vec();
    qargs.extend(["global", "rib", "summary", "-a", "ipv4"].map(String::from));
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
        after_start,
        rib_query: Some(RibQuery {
            program: cli,
            args: qargs,
            parse: RibParse::Gobgp,
        }),
    }
}

/// A command that prints the size of the device's BGP table.
#[derive(Clone, Debug)]
pub struct RibQuery {
    pub program: String,
    pub args: Vec<String>,
    pub parse: RibParse,
}

/// How to read a [`RibQuery`]'s output: the number of IPv4 unicast destinations (prefixes)
/// in the device's table, its own included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RibParse {
    /// `podbgp speaker --json`: `loc_rib_prefixes`.
    Podbgp,
    /// `birdc show route count`: the Z of "X of Y routes for Z networks in table master4".
    Bird,
    /// Not a program: `program` is bgpd's vty socket and `args[0]` the command, sent the way
    /// vtysh sends it (`show bgp ipv4 unicast statistics json`: `totalPrefixes`).
    FrrVty,
    /// `gobgp global rib summary -a ipv4`: the D of "Destination: D, Path: P".
    Gobgp,
}

impl RibParse {
    pub fn parse(self, out: &str) -> Option<u64> {
        match self {
            RibParse::Podbgp => serde_json::from_str::<serde_json::Value>(out)
                .ok()?
                .get("loc_rib_prefixes")?
                .as_u64(),
            RibParse::FrrVty => serde_json::from_str::<serde_json::Value>(out)
                .ok()?
                .get("ipv4Unicast")?
                .get(0)?
                .get("totalPrefixes")?
                .as_u64(),
            RibParse::Bird => out.lines().find_map(|l| {
                let rest = l.split(" routes for ").nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            }),
            RibParse::Gobgp => out.lines().find_map(|l| {
                let rest = l.split("Destination:").nth(1)?;
                rest.split(',').next()?.trim().parse().ok()
            }),
        }
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
    /// The run directory.
    dir: PathBuf,
    /// [`DeviceSpec::rib_query`] and [`DeviceSpec::after_start`], substituted.
    rib_query: Option<(Vec<String>, RibParse)>,
    after_start: Vec<Vec<String>>,
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
        let subst = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|a| a.replace("{config}", &cfg_s).replace("{dir}", &dir_s))
                .collect()
        };
        let args = subst(&spec.args);
        let rib_query = spec.rib_query.as_ref().map(|q| {
            let mut argv = subst(std::slice::from_ref(&q.program));
            argv.extend(subst(&q.args));
            (argv, q.parse)
        });
        let after_start = spec.after_start.iter().map(|c| subst(c)).collect();
        let mut cmd = Command::new(&spec.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group: Ctrl-C reaches only the benchmark, which stops the device.
            .process_group(0);
        super::die_with_parent(&mut cmd);
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
            dir: dir.to_path_buf(),
            rib_query,
            after_start,
        })
    }

    /// Runs the [`DeviceSpec::after_start`] commands, each retried every 100 ms until it
    /// succeeds or `deadline` passes (blocking).
    pub fn run_after_start(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let out = self.dir.join("after-start.out");
        for argv in self.after_start.clone() {
            loop {
                match run_tool(&argv, &out, Duration::from_secs(10)) {
                    Ok(_) => break,
                    Err(_) if Instant::now() < deadline => {
                        self.check_alive()?;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The device's count of IPv4 unicast destinations in its BGP table, from its CLI
    /// ([`DeviceSpec::rib_query`]; blocking, at most 10 s).
    pub fn rib_count(&self) -> anyhow::Result<u64> {
        let (argv, parse) = self
            .rib_query
            .as_ref()
            .with_context(|| format!("{} has no table query", self.name))?;
        let out = match (parse, &argv[..]) {
            (RibParse::FrrVty, [socket, command]) => vty_query(socket, command)?,
            _ => run_tool(
                argv,
                &self.dir.join("rib-query.out"),
                Duration::from_secs(10),
            )?,
        };
        parse
            .parse(&out)
            .with_context(|| format!("cannot read a route count in {out:?}"))
    }

    /// The table query as a command line, for the report.
    pub fn rib_query_command(&self) -> Option<String> {
        self.rib_query.as_ref().map(|(argv, parse)| match parse {
            RibParse::FrrVty => format!("vty {}", argv.join(" ")),
            _ => argv.join(" "),
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

/// Runs a device's command-line tool to its end, stdout into `out` (a file in the run
/// directory, so no pipe can fill up), and returns that output; fails on a non-zero exit or
/// after `limit`, when the tool is killed through its unreaped child handle.
pub fn run_tool(argv: &[String], out: &Path, limit: Duration) -> anyhow::Result<String> {
    let (program, args) = argv.split_first().context("empty command")?;
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0);
    super::die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{} timed out after {} s", argv.join(" "), limit.as_secs());
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let text = std::fs::read_to_string(out).unwrap_or_default();
    anyhow::ensure!(
        status.success(),
        "{} failed ({status}): {}",
        argv.join(" "),
        text.trim()
    );
    Ok(text)
}

/// Runs one command on an FRR daemon's vty socket the way vtysh does: the command and a NUL
/// out; the output back, ended by three NULs and a status octet (0: success).
pub fn vty_query(socket: &str, command: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {socket}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(command.as_bytes())?;
    s.write_all(&[0])?;
    let mut out = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "{socket} closed before the end of the output");
        out.extend_from_slice(&chunk[..n]);
        let len = out.len();
        if len >= 4 && out[len - 4..len - 1] == [0, 0, 0] {
            let status = out[len - 1];
            out.truncate(len - 4);
            let text = String::from_utf8_lossy(&out).into_owned();
            anyhow::ensure!(status == 0, "{command:?}: status {status}: {}", text.trim());
            return Ok(text);
        }
    }
}

/// Whether something listens on TCP `port` of 127.0.0.1 (or any address), from
/// /proc/net/tcp, without connecting to it.
pub fn listening(port: u16) -> bool {
    let Ok(t) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    t.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address is "HEXADDR:HEXPORT"; state 0A is LISTEN.
        f.len() > 3
            && f[3] == "0A"
            && f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port)
    })
}

/// The scratch directory of one run (device configuration, log, control sockets), removed on
/// drop unless `keep` was set (a failed run keeps it for its log).
pub struct RunDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl RunDir {
    pub fn new(tag: &str) -> anyhow::Result<RunDir> {
        let path = std::env::temp_dir().join(format!("podbgp-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(RunDir { path, keep: false })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// One device started for one run: the process, its directory and the run's label. Scenarios
/// work with `dev` and end with [`DeviceRun::finish`], which stops the device, keeps the
/// directory of a failed run, and prints the log's tail.
pub struct DeviceRun {
    pub dev: Option<Device>,
    dir: RunDir,
    pub label: String,
    pub name: String,
    pub command: String,
}

impl DeviceRun {
    /// Starts the device of `spec` in a fresh run directory named after `tag`.
    pub fn start(spec: &DeviceSpec, tag: &str, label: String) -> anyhow::Result<DeviceRun> {
        let dir = RunDir::new(tag)?;
        let dev = Device::spawn(spec, &dir.path)?;
        eprintln!("{label} device: {} (pid {})", dev.command, dev.pid);
        Ok(DeviceRun {
            name: dev.name.clone(),
            command: dev.command.clone(),
            dev: Some(dev),
            dir,
            label,
        })
    }

    /// Stops the device; on `Err`, keeps the run directory and names it in the error.
    pub fn finish<T>(mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        let log_path = self.dev.as_ref().map(|d| d.log.clone());
        if let Some(mut d) = self.dev.take() {
            d.stop();
        }
        self.dir.keep = result.is_err();
        let r = result.with_context(|| match &log_path {
            Some(p) => format!("{} failed (device log kept in {})", self.label, p.display()),
            None => format!("{} failed", self.label),
        })?;
        let log = log_path
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = log.trim_end().lines().collect();
        if !lines.is_empty() {
            // FRR without zebra logs an error per next-hop registration: the tail only.
            let shown = &lines[lines.len().saturating_sub(10)..];
            eprintln!(
                "{} device log ({} lines, last {}):\n{}",
                self.label,
                lines.len(),
                shown.len(),
                shown.join("\n")
            );
        }
        Ok(r)
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
