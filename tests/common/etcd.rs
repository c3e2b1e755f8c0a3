//! A real etcd server for one test ([`Etcd`]), optionally with TLS and client-certificate
//! authentication, and a TCP proxy that can cut connections on demand ([`TcpProxy`]).
//!
//! [`Etcd`] runs Debian's `etcd` (package `etcd-server`, 3.4) as a plain child process on
//! 127.0.0.1 with free ports and a scratch data directory: no root and no namespace needed.
//! [`Etcd::stop`] and [`Etcd::start`] stop and restart the same member on the same data
//! directory and ports (the data survives). Dropping the handle kills the process (by PID)
//! and removes the directory (kept with `PODBGP_KEEP_LAB=1`); when the test is panicking, the
//! tail of etcd's log is printed first.
//!
//! [`Etcd::new_tls`] also generates a throw-away CA, a server certificate for IP 127.0.0.1
//! and a client certificate with the `openssl` CLI, and runs etcd with
//! `--client-cert-auth`.
//!
//! Readiness and all other waits poll with a deadline (`etcdctl endpoint health`).

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use podbgp::datastore::etcd::EtcdConfig;

use super::netns::{CmdError, run_cmd};
use super::poll_until;

/// The etcd server binary (Debian `etcd-server`).
pub const ETCD: &str = "/usr/bin/etcd";
/// The etcd CLI (Debian `etcd-client`).
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

static ETCD_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Panics with what to do unless `etcd` and `etcdctl` are installed. etcd needs no root,
/// so there is no skipping: a missing binary is a failure.
pub fn require_etcd() {
    let missing: Vec<&str> = [ETCD, ETCDCTL, "/usr/bin/openssl"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "etcd tests need {}: run `bash .ci/test.sh` (it installs etcd-server, etcd-client) \
         or `apt-get install etcd-server etcd-client openssl`",
        missing.join(", ")
    );
}

/// Files of the throw-away PKI made by [`Etcd::new_tls`].
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// One single-member etcd cluster.
pub struct Etcd {
    name: String,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    tls: Option<EtcdTls>,
    /// `user:password` for [`Etcd::etcdctl`], once the test enabled authentication.
    ctl_user: Option<String>,
    /// Run inside this namespace, also listening on this LAN address (for podbgp nodes in
    /// other namespaces); `127.0.0.1` stays the control address.
    netns: Option<(String, String)>,
    child: Option<Child>,
}

impl Etcd {
    /// Starts a plain-text etcd and waits until it answers.
    pub fn new(label: &str) -> Etcd {
        let mut etcd = Etcd::prepare(label);
        etcd.start();
        etcd
    }

    /// Starts an etcd that requires TLS with a client certificate, and waits until it answers.
    pub fn new_tls(label: &str) -> Etcd {
        let mut etcd = Etcd::prepare(label);
        etcd.tls = Some(make_pki(&etcd.dir.join("pki")));
        etcd.start();
        etcd
    }

    /// Starts a plain-text etcd inside namespace `ns` (full name), listening on 127.0.0.1
    /// there and on `lan_addr` (an address of that namespace), and waits until it answers.
    pub fn new_in_netns(label: &str, ns: &str, lan_addr: &str) -> Etcd {
        let mut etcd = Etcd::prepare(label);
        etcd.netns = Some((ns.to_string(), lan_addr.to_string()));
        etcd.start();
        etcd
    }

    /// The URL other namespaces reach this member at (`http://LAN_ADDR:PORT`); the control
    /// endpoint when not in a namespace.
    pub fn lan_endpoint(&self) -> String {
        match &self.netns {
            Some((_, addr)) => format!("http://{addr}:{}", self.client_port),
            None => self.endpoint(),
        }
    }

    fn prepare(label: &str) -> Etcd {
        require_etcd();
        let n = ETCD_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("pbt{}-{n}-{label}", std::process::id());
        let dir = std::env::temp_dir().join(format!("podbgp-etcd-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let (client_port, peer_port) = free_ports();
        Etcd {
            name,
            dir,
            client_port,
            peer_port,
            tls: None,
            ctl_user: None,
            netns: None,
            child: None,
        }
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The client address (for a [`TcpProxy`] in front of it).
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// The PKI files, for a TLS member.
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// A podbgp client configuration for this member (with the client certificate, if TLS).
    pub fn config(&self) -> EtcdConfig {
        let mut cfg = EtcdConfig::new([self.endpoint()]);
        if let Some(tls) = &self.tls {
            cfg.ca_cert = Some(tls.ca.clone());
            cfg.client_cert = Some(tls.client_cert.clone());
            cfg.client_key = Some(tls.client_key.clone());
        }
        cfg
    }

    /// etcd's stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the member (again: same data directory and ports) and waits until it answers.
    pub fn start(&mut self) {
        assert!(!self.is_running(), "{}: etcd is already running", self.name);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.endpoint();
        let (listen, advertise) = match &self.netns {
            Some(_) => (
                format!("{client},{}", self.lan_endpoint()),
                self.lan_endpoint(),
            ),
            None => (client.clone(), client.clone()),
        };
        let data = self.dir.join("data");
        let mut args: Vec<String> = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={listen}"),
            format!("--advertise-client-urls={advertise}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}={peer}", self.name),
            format!("--initial-cluster-token={}", self.name),
            "--initial-cluster-state=new".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        if let Some(tls) = &self.tls {
            args.extend([
                format!("--cert-file={}", tls.server_cert.display()),
                format!("--key-file={}", tls.server_key.display()),
                format!("--trusted-ca-file={}", tls.ca.display()),
                "--client-cert-auth".into(),
            ]);
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("opening etcd.log");
        let log2 = log.try_clone().expect("cloning the etcd.log handle");
        let mut cmd = match &self.netns {
            // `ip netns exec` execs etcd: the child's PID is etcd's.
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ETCD]);
                c
            }
            None => Command::new(ETCD),
        };
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: starting {ETCD}: {e}", self.name));
        self.child = Some(child);
        let what = format!("{}: etcd answering on {}", self.name, self.endpoint());
        poll_until(Duration::from_secs(30), &what, || {
            if !self.is_running() {
                panic!(
                    "{}: etcd exited during start-up:\n{}",
                    self.name,
                    self.log()
                );
            }
            self.etcdctl(&["endpoint", "health"])
                .map_err(|e| e.to_string())
        });
    }

    /// Stops the member: SIGTERM, then SIGKILL after 10 s; waits until it is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: plain syscall on our own unreaped child's PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!(
                    "{}: etcd still running 10 s after SIGTERM, killing",
                    self.name
                );
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }

    /// Makes [`etcdctl`](Self::etcdctl) (readiness checks included) log in as
    /// `user:password`: needed once the test has run `etcdctl auth enable`.
    pub fn set_etcdctl_user(&mut self, user_password: &str) {
        self.ctl_user = Some(user_password.to_string());
    }

    /// Runs `etcdctl` against this member (TLS and user flags added), with a 5 s command
    /// timeout.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, CmdError> {
        let mut all = vec![
            format!("--endpoints={}", self.endpoint()),
            "--command-timeout=5s".to_string(),
        ];
        if let Some(user) = &self.ctl_user {
            all.push(format!("--user={user}"));
        }
        if let Some(tls) = &self.tls {
            all.push(format!("--cacert={}", tls.ca.display()));
            all.push(format!("--cert={}", tls.client_cert.display()));
            all.push(format!("--key={}", tls.client_key.display()));
        }
        all.extend(args.iter().map(|a| a.to_string()));
        match &self.netns {
            Some((ns, _)) => {
                let mut argv = vec![
                    "netns".to_string(),
                    "exec".into(),
                    ns.clone(),
                    ETCDCTL.into(),
                ];
                argv.extend(all);
                run_cmd("ip", &argv)
            }
            None => run_cmd(ETCDCTL, &all),
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- {}: tail of etcd.log ---\n{}",
                self.name,
                tail.join("\n")
            );
        }
        if std::env::var_os("PODBGP_KEEP_LAB").is_some_and(|v| v == "1") {
            eprintln!(
                "{}: kept {} (PODBGP_KEEP_LAB=1)",
                self.name,
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Two distinct free TCP ports on 127.0.0.1 (both held while choosing).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    let port = |l: &TcpListener| l.local_addr().expect("local_addr").port();
    (port(&a), port(&b))
}

/// Generates a CA, a server certificate (SAN IP 127.0.0.1) and a client certificate, all
/// P-256 and valid for 2 days, into `dir`.
pub fn make_pki(dir: &Path) -> EtcdTls {
    fs::create_dir_all(dir).expect("creating the PKI directory");
    let p = |f: &str| dir.join(f);
    let s = |f: &str| p(f).display().to_string();
    let openssl = |args: &[&str]| {
        run_cmd("openssl", args).unwrap_or_else(|e| panic!("generating test certificates: {e}"))
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (s("ca.key"), s("ca.pem"));
    ca.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-days",
        "2",
        "-subj",
        "/CN=podbgp-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&ca);
    for (name, serial, ext) in [
        (
            "server",
            "4097",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        ),
        ("client", "4098", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, pem, extfile) = (
            s(&format!("{name}.key")),
            s(&format!("{name}.csr")),
            s(&format!("{name}.pem")),
            p(&format!("{name}.ext")),
        );
        fs::write(
            &extfile,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"
            ),
        )
        .expect("writing the extension file");
        let subj = format!("/CN=podbgp-test-{name}");
        let mut req = vec!["req", "-new"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&req);
        let extfile = extfile.display().to_string();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            serial,
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ]);
    }
    EtcdTls {
        ca: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server.key"),
        client_cert: p("client.pem"),
        client_key: p("client.key"),
    }
}

/// A TCP proxy on 127.0.0.1 in front of one upstream address, with a switch: [`cut`]
/// closes every proxied connection and makes new ones fail at once (accepted, then closed),
/// [`restore`] lets connections through again. Lets a test take etcd away from one client
/// while it stays reachable for others. Threads and sockets end when the proxy drops.
///
/// [`cut`]: TcpProxy::cut
/// [`restore`]: TcpProxy::restore
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    accept: Option<JoinHandle<()>>,
}

struct ProxyShared {
    upstream: SocketAddr,
    up: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every live proxied connection, to shut them down on `cut`.
    conns: Mutex<Vec<TcpStream>>,
}

impl ProxyShared {
    fn shutdown_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for c in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl TcpProxy {
    /// Listens on a free port and forwards to `upstream`; starts passing traffic.
    pub fn new(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy port");
        let addr = listener.local_addr().expect("proxy local_addr");
        let shared = Arc::new(ProxyShared {
            upstream,
            up: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                if !sh.up.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(sh.upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                sh.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend([c3, s3]);
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || pipe(s2, c2));
            }
        });
        TcpProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://` with `tls`).
    pub fn endpoint(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Closes all proxied connections and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        self.shared.shutdown_all();
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.shutdown_all();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Copies `from` to `to` until EOF or an error, then closes `to` for writing.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
