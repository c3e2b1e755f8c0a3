//! Bad input: a raw-socket injector feeds one running podbgp daemon a corpus of malformed BGP
//! messages (header, OPEN, FSM, UPDATE framing, path attributes, NLRI, MP attributes,
//! ROUTE-REFRESH) and asserts the exact reaction to each one, as pinned in
//! `shared/reference/bgp-robustness.md` §1.1–§1.6 and implemented in `src/wire`:
//!
//! * `NOTIFY c/s`: podbgp sends NOTIFICATION c/s (with the Data the RFC fixes), closes the TCP
//!   connection, and the injector's routes are withdrawn toward the observer;
//! * treat-as-withdraw: no NOTIFICATION, the prefix re-announced by the malformed UPDATE is
//!   withdrawn toward the observer, and the session keeps working (a following UPDATE is
//!   propagated);
//! * attribute discard: no NOTIFICATION, the route is accepted (the observer receives it, tagged
//!   with a per-case marker community) without the discarded attribute;
//! * ignore: no NOTIFICATION, no effect, the session keeps working.
//!
//! Set-up (loopback only): podbgp listens on 127.0.0.1; the injector connects from 127.0.0.2
//! (eBGP, AS 65010), the observer from 127.0.0.3 (eBGP, AS 65020). The observer session is
//! opened once and must stay Established for the whole run: it never receives a NOTIFICATION,
//! its TCP connection stays open, and podbgp reports exactly one Established transition for it.
//! All cases run sequentially against one daemon, in one `#[test]`; every case is checked even
//! when an earlier one failed, and the failures are reported together at the end.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use podbgp::wire::{
    self, Message, MpNextHop, Notification, Origin, PathAttrs, SessionCodec, Update,
};
use serde_json::Value;
use socket2::{Domain, Socket, Type};

// ---- Topology -------------------------------------------------------------------------------

const LOCAL_AS: u32 = 65001;
const INJ_AS: u32 = 65010;
const OBS_AS: u32 = 65020;
const INJ_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const OBS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const INJ_ID: [u8; 4] = [198, 18, 0, 2];
const OBS_ID: [u8; 4] = [198, 18, 0, 3];
/// Next hop the injector announces (IPv4 NEXT_HOP and MP_REACH IPv6 next hop).
const INJ_NH: [u8; 4] = [198, 18, 0, 2];
const INJ_NH6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Hold time the observer proposes (podbgp then sends a KEEPALIVE every 10 s).
const OBS_HOLD: u16 = 30;
/// Hold time the injector proposes.
const INJ_HOLD: u16 = 90;

/// Deadline for any single expected reaction (a NOTIFICATION, a close, a propagated route).
const REACTION: Duration = Duration::from_secs(5);
/// Deadline for (re)connecting, which includes podbgp's 1 s idle hold after a reset.
const RECONNECT: Duration = Duration::from_secs(15);

// ---- Daemon ---------------------------------------------------------------------------------

/// The podbgp child process and its scratch directory; killed by PID and cleaned up on drop.
struct Daemon {
    child: Child,
    dir: PathBuf,
    api: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = std::env::temp_dir().join(format!("podbgp-malformed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
            l.local_addr().expect("local addr").port()
        };
        let config = dir.join("podbgp.yaml");
        std::fs::write(
            &config,
            format!(
                "local_as: {LOCAL_AS}\n\
                 router_id: 198.18.0.1\n\
                 listen: {{ address: \"127.0.0.1\", port: {port} }}\n\
                 next_hop_ipv4: 198.18.0.1\n\
                 next_hop_ipv6: \"2001:db8::1\"\n\
                 idle_hold_min: 1\n\
                 idle_hold_max: 1\n\
                 neighbors:\n\
                 \x20 - {{ address: {INJ_ADDR}, remote_as: {INJ_AS}, passive: true }}\n\
                 \x20 - {{ address: {OBS_ADDR}, remote_as: {OBS_AS}, passive: true }}\n"
            ),
        )
        .expect("write config");
        let api = dir.join("api.sock");
        let log = dir.join("podbgp.log");
        let child = Command::new(env!("CARGO_BIN_EXE_podbgp"))
            .args(["run", "-c"])
            .arg(&config)
            .arg("--api-listen")
            .arg(&api)
            .args(["--log", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log"))
            .spawn()
            .expect("spawn podbgp");
        Daemon {
            child,
            dir,
            api,
            log,
            port,
        }
    }

    /// `None` while the process runs, else how it ended.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(format!("try_wait failed: {e}")),
        }
    }

    /// Runs `podbgp --api SOCK ARGS --json` and parses the output.
    fn cli(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(env!("CARGO_BIN_EXE_podbgp"))
            .arg("--api")
            .arg(&self.api)
            .args(args)
            .arg("--json")
            .output()
            .map_err(|e| format!("podbgp {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "podbgp {args:?} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("podbgp {args:?}: bad JSON ({e}): {:?}", out.stdout))
    }

    /// `peer ADDRESS --json`.
    fn peer(&self, addr: Ipv4Addr) -> Result<Value, String> {
        self.cli(&["peer", &addr.to_string()])
    }

    /// The adj-rib-in entry for `prefix` from the injector.
    fn adj_in(&self, prefix: IpNet) -> Result<Value, String> {
        let v = self.cli(&[
            "routes",
            "--table",
            "adj-rib-in",
            "--peer",
            &INJ_ADDR.to_string(),
            "--prefix",
            &prefix.to_string(),
        ])?;
        match v.as_array().map(|a| a.as_slice()) {
            Some([r]) => Ok(r.clone()),
            _ => Err(format!(
                "adj-rib-in for {prefix}: expected one route, got {v}"
            )),
        }
    }

    /// The last `lines` log lines of podbgp itself (the gRPC stack's debug lines are skipped).
    fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = s.lines().filter(|l| l.contains("podbgp")).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {}:\n{}",
                self.log.display(),
                self.log_tail(80)
            );
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill(); // SIGKILL to this child's PID only
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` every 10 ms until it succeeds or `timeout` passes (then returns its last error).
fn poll<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}: {e}"
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

// ---- Raw BGP connections --------------------------------------------------------------------

/// One TCP connection carrying BGP messages, read with deadlines.
struct Wire {
    s: TcpStream,
    buf: Vec<u8>,
}

enum Rx {
    Msg(Vec<u8>),
    Closed(String),
    Timeout,
}

impl Wire {
    fn connect(src: Ipv4Addr, port: u16) -> std::io::Result<Wire> {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        sock.bind(&SocketAddr::from((src, 0)).into())?;
        sock.connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into(),
            Duration::from_secs(2),
        )?;
        let s: TcpStream = sock.into();
        s.set_nodelay(true)?;
        Ok(Wire { s, buf: Vec::new() })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.s
            .write_all(bytes)
            .map_err(|e| format!("write to podbgp failed: {e}"))
    }

    /// The next whole message, or what happened instead before `deadline`.
    fn recv(&mut self, deadline: Instant) -> Result<Rx, String> {
        loop {
            if let Some(m) = self.take_frame()? {
                return Ok(Rx::Msg(m));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Rx::Timeout);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            let _ = self.s.set_read_timeout(Some(wait));
            let mut tmp = [0u8; 16384];
            match self.s.read(&mut tmp) {
                Ok(0) => return Ok(Rx::Closed("EOF".into())),
                Ok(k) => self.buf.extend_from_slice(&tmp[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Ok(Rx::Closed(e.to_string())),
            }
        }
    }

    /// Everything already received, without waiting: whole messages, then `Some(reason)` if the
    /// connection is closed.
    fn drain(&mut self) -> Result<(Vec<Vec<u8>>, Option<String>), String> {
        let mut msgs = Vec::new();
        let mut closed = None;
        self.s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut tmp = [0u8; 16384];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => {
                    closed = Some("EOF".to_string());
                    break;
                }
                Ok(k) => self.buf.extend_from_slice(&tmp[..k]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    closed = Some(e.to_string());
                    break;
                }
            }
        }
        self.s.set_nonblocking(false).map_err(|e| e.to_string())?;
        while let Some(m) = self.take_frame()? {
            msgs.push(m);
        }
        Ok((msgs, closed))
    }

    fn take_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        match wire::frame_len(&self.buf, wire::MAX_EXT_MESSAGE_LEN) {
            Ok(Some(n)) => Ok(Some(self.buf.drain(..n).collect())),
            Ok(None) => Ok(None),
            Err(e) => Err(format!(
                "podbgp sent a malformed frame ({e}): {}",
                hex(&self.buf)
            )),
        }
    }
}

/// The codec both raw peers use once established (both sides advertise 4-octet AS; neither the
/// injector nor the observer advertises Extended Message, so 4096 octets is the maximum).
fn codec4() -> SessionCodec {
    SessionCodec {
        four_octet_as: true,
        ..SessionCodec::default()
    }
}

fn decode(frame: &[u8]) -> Result<Message, String> {
    wire::decode_message(frame, &codec4())
        .map_err(|e| format!("cannot decode podbgp's message {} ({e})", hex(frame)))
}

fn describe(frame: &[u8]) -> String {
    match decode(frame) {
        Ok(Message::Notification(n)) => {
            format!(
                "NOTIFICATION {}/{} data {}",
                n.code,
                n.subcode,
                hex(&n.data)
            )
        }
        Ok(Message::Open(_)) => "OPEN".into(),
        Ok(Message::Keepalive) => "KEEPALIVE".into(),
        Ok(Message::Update(_)) => "UPDATE".into(),
        Ok(Message::RouteRefresh(_)) => "ROUTE-REFRESH".into(),
        Err(e) => e,
    }
}

/// Connects from `src` until podbgp answers with its OPEN (it refuses connections with Cease
/// 6/5 while it waits out the idle-hold timer after a reset).
fn connect_until_open(src: Ipv4Addr, port: u16) -> Result<Wire, String> {
    let deadline = Instant::now() + RECONNECT;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match Wire::connect(src, port) {
            Err(e) => last = format!("connect: {e}"),
            Ok(mut w) => match w.recv(Instant::now() + Duration::from_secs(3))? {
                Rx::Msg(m) => match decode(&m)? {
                    Message::Open(_) => return Ok(w),
                    Message::Notification(n) if (n.code, n.subcode) == (6, 5) => {
                        last = "refused with Cease 6/5 (idle hold)".into();
                    }
                    _ => return Err(format!("expected OPEN first, got {}", describe(&m))),
                },
                Rx::Closed(e) => last = format!("closed before OPEN: {e}"),
                Rx::Timeout => last = "no OPEN within 3 s".into(),
            },
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "could not connect from {src} within {RECONNECT:?}: {last}"
    ))
}

/// After our OPEN: reads podbgp's KEEPALIVE, sends ours, and waits for podbgp's first UPDATE
/// (its End-of-RIB), which it only sends once Established.
fn finish_handshake(w: &mut Wire) -> Result<(), String> {
    let deadline = Instant::now() + REACTION;
    let mut got_keepalive = false;
    loop {
        match w.recv(deadline)? {
            Rx::Msg(m) => match decode(&m)? {
                Message::Keepalive if !got_keepalive => {
                    got_keepalive = true;
                    w.send(&keepalive())?;
                }
                Message::Keepalive => {}
                Message::Update(_) if got_keepalive => return Ok(()),
                _ => return Err(format!("during the handshake podbgp sent {}", describe(&m))),
            },
            Rx::Closed(e) => return Err(format!("podbgp closed during the handshake: {e}")),
            Rx::Timeout => {
                return Err(format!(
                    "handshake not finished within {REACTION:?} (keepalive seen: {got_keepalive})"
                ));
            }
        }
    }
}

// ---- Observer ---------------------------------------------------------------------------------

/// A route as the observer received it from podbgp.
#[derive(Clone, Debug)]
struct ObsRoute {
    attrs: PathAttrs,
    next_hop: Option<IpAddr>,
}

#[derive(Default)]
struct ObsState {
    /// Per prefix, every announcement (`Some`) and withdrawal (`None`) in arrival order.
    routes: HashMap<IpNet, Vec<Option<ObsRoute>>>,
    notifications: Vec<Notification>,
    closed: Option<String>,
    errors: Vec<String>,
    keepalives_in: u64,
    keepalives_out: u64,
}

impl ObsState {
    fn apply(&mut self, u: Update) {
        if u.treat_as_withdraw.is_some() || !u.discarded.is_empty() {
            self.errors.push(format!(
                "podbgp sent an UPDATE with attribute errors: {u:?}"
            ));
        }
        let mut push = |p: IpNet, r: Option<ObsRoute>| self.routes.entry(p).or_default().push(r);
        for n in &u.withdrawn {
            push(n.prefix, None);
        }
        if let Some(m) = &u.mp_unreach {
            for n in &m.withdrawn {
                push(n.prefix, None);
            }
        }
        for n in &u.nlri {
            let r = ObsRoute {
                attrs: u.attrs.clone(),
                next_hop: u.attrs.next_hop.map(IpAddr::V4),
            };
            push(n.prefix, Some(r));
        }
        if let Some(m) = &u.mp_reach {
            let nh = match m.next_hop {
                MpNextHop::V4(a) => IpAddr::V4(a),
                MpNextHop::V6 { global, .. } => IpAddr::V6(global),
            };
            for n in &m.nlri {
                let r = ObsRoute {
                    attrs: u.attrs.clone(),
                    next_hop: Some(nh),
                };
                push(n.prefix, Some(r));
            }
        }
    }
}

/// The second session: established once, records everything podbgp sends it, answers
/// keepalives, and must stay up for the whole test.
struct Observer {
    state: Arc<Mutex<ObsState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Observer {
    fn start(port: u16) -> Result<Observer, String> {
        let mut w = connect_until_open(OBS_ADDR, port)?;
        w.send(&open_msg(
            4,
            OBS_AS as u16,
            OBS_HOLD,
            OBS_ID,
            &std_caps(OBS_AS),
        ))?;
        finish_handshake(&mut w)?;
        let state = Arc::new(Mutex::new(ObsState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || observer_loop(w, st, stp));
        Ok(Observer {
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits until the latest state of `p` is an announcement satisfying `check`.
    fn wait_announced(
        &self,
        p: IpNet,
        what: &str,
        check: impl Fn(&ObsRoute) -> Result<(), String>,
    ) -> Result<ObsRoute, String> {
        poll(REACTION, &format!("observer: {p} {what}"), || {
            let st = self.state.lock().unwrap();
            match st.routes.get(&p).and_then(|h| h.last()) {
                Some(Some(r)) => check(r).map(|()| r.clone()).map_err(|e| {
                    format!("latest announcement of {p} does not match: {e}; route: {r:?}")
                }),
                Some(None) => Err(format!("{p} is withdrawn")),
                None => Err(format!("{p} never received")),
            }
        })
    }

    /// Waits until `p`, announced before, has been withdrawn.
    fn wait_withdrawn(&self, p: IpNet) -> Result<(), String> {
        poll(REACTION, &format!("observer: withdrawal of {p}"), || {
            let st = self.state.lock().unwrap();
            match st.routes.get(&p).map(|h| h.as_slice()) {
                Some([.., Some(_), None]) => Ok(()),
                Some([.., None]) => Err(format!("{p}: withdrawn without an earlier announcement")),
                Some([.., Some(r)]) => Err(format!("{p} is still announced: {r:?}")),
                _ => Err(format!("{p} never received")),
            }
        })
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn observer_loop(mut w: Wire, st: Arc<Mutex<ObsState>>, stop: Arc<AtomicBool>) {
    let mut last_sent = Instant::now();
    let keepalive_every = Duration::from_secs(u64::from(OBS_HOLD / 3));
    while !stop.load(Ordering::SeqCst) {
        let mut reply = false;
        match w.recv(Instant::now() + Duration::from_millis(200)) {
            Ok(Rx::Msg(m)) => {
                let mut s = st.lock().unwrap();
                match wire::decode_message(&m, &codec4()) {
                    Ok(Message::Update(u)) => s.apply(u),
                    Ok(Message::Keepalive) => {
                        s.keepalives_in += 1;
                        reply = true;
                    }
                    Ok(Message::Notification(n)) => s.notifications.push(n),
                    Ok(other) => s
                        .errors
                        .push(format!("unexpected message in Established: {other:?}")),
                    Err(e) => s
                        .errors
                        .push(format!("undecodable message {} ({e})", hex(&m))),
                }
            }
            Ok(Rx::Timeout) => {}
            Ok(Rx::Closed(e)) => {
                st.lock().unwrap().closed = Some(e);
                return;
            }
            Err(e) => {
                let mut s = st.lock().unwrap();
                s.errors.push(e);
                s.closed = Some("framing error".into());
                return;
            }
        }
        if reply || last_sent.elapsed() >= keepalive_every {
            if let Err(e) = w.send(&keepalive()) {
                st.lock().unwrap().errors.push(e);
            }
            st.lock().unwrap().keepalives_out += 1;
            last_sent = Instant::now();
        }
    }
}

// ---- Message builders -------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A message with the given Type and a correct Length.
fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    msg_len(ty, (19 + body.len()) as u16, body)
}

/// A message whose Length field says `len`, whatever the body.
fn msg_len(ty: u8, len: u16, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&len.to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

fn keepalive() -> Vec<u8> {
    msg(4, &[])
}

fn notification(code: u8, subcode: u8) -> Vec<u8> {
    msg(3, &[code, subcode])
}

fn open_body(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    b
}

fn open_msg(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    msg(1, &open_body(version, my_as, hold, id, params))
}

/// One Capabilities optional parameter (RFC 5492) holding `caps`.
fn caps_param(caps: &[&[u8]]) -> Vec<u8> {
    let inner = caps.concat();
    let mut p = vec![2, inner.len() as u8];
    p.extend_from_slice(&inner);
    p
}

const CAP_MP_V4: [u8; 6] = [1, 4, 0, 1, 0, 1];
const CAP_MP_V6: [u8; 6] = [1, 4, 0, 2, 0, 1];
const CAP_RR: [u8; 2] = [2, 0];

fn cap_as4(asn: u32) -> Vec<u8> {
    let mut c = vec![65, 4];
    c.extend_from_slice(&asn.to_be_bytes());
    c
}

/// MP IPv4 + IPv6 unicast, route refresh, 4-octet AS.
fn std_caps(asn: u32) -> Vec<u8> {
    caps_param(&[&CAP_MP_V4, &CAP_MP_V6, &CAP_RR, &cap_as4(asn)])
}

fn injector_open() -> Vec<u8> {
    open_msg(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &std_caps(INJ_AS))
}

/// A path attribute; the Extended Length bit in `flags` selects a 2-octet length.
fn attr(flags: u8, ty: u8, v: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, ty];
    if flags & 0x10 != 0 {
        a.extend_from_slice(&(v.len() as u16).to_be_bytes());
    } else {
        assert!(
            v.len() <= 255,
            "test bug: attribute too long for 1-octet length"
        );
        a.push(v.len() as u8);
    }
    a.extend_from_slice(v);
    a
}

fn origin(v: u8) -> Vec<u8> {
    attr(0x40, 1, &[v])
}

/// An AS_PATH segment with 4-octet ASNs and a correct count.
fn seg(ty: u8, asns: &[u32]) -> Vec<u8> {
    let mut s = vec![ty, asns.len() as u8];
    for a in asns {
        s.extend_from_slice(&a.to_be_bytes());
    }
    s
}

fn as_path(asns: &[u32]) -> Vec<u8> {
    attr(0x40, 2, &seg(2, asns))
}

fn next_hop(a: [u8; 4]) -> Vec<u8> {
    attr(0x40, 3, &a)
}

fn community(c: u32) -> Vec<u8> {
    attr(0xc0, 8, &c.to_be_bytes())
}

/// ORIGIN IGP, AS_PATH [65010], NEXT_HOP 198.18.0.2.
fn base() -> Vec<u8> {
    [origin(0), as_path(&[INJ_AS]), next_hop(INJ_NH)].concat()
}

fn aggregator_ok() -> Vec<u8> {
    let mut v = INJ_AS.to_be_bytes().to_vec();
    v.extend_from_slice(&INJ_ID);
    attr(0xc0, 7, &v)
}

fn atomic_ok() -> Vec<u8> {
    attr(0x40, 6, &[])
}

/// MP_REACH_NLRI IPv6 unicast, next hop 2001:db8::2.
fn mp_reach_v6(nlri: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 2, 1, 16];
    v.extend_from_slice(&INJ_NH6.octets());
    v.push(0);
    v.extend_from_slice(nlri);
    attr(0x80, 14, &v)
}

fn mp_unreach_v6(nlri: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 2, 1];
    v.extend_from_slice(nlri);
    attr(0x80, 15, &v)
}

/// An UPDATE with explicit Withdrawn Routes Length and Total Path Attribute Length fields.
fn update_raw(wrl: u16, withdrawn: &[u8], tpal: u16, attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = wrl.to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&tpal.to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    msg(2, &b)
}

fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    update_raw(
        withdrawn.len() as u16,
        withdrawn,
        attrs.len() as u16,
        attrs,
        nlri,
    )
}

// ---- Cases --------------------------------------------------------------------------------

/// Per-case values: the case number `n` makes the prefix and the marker community unique.
struct Ctx {
    n: u8,
}

impl Ctx {
    /// 10.99.n.0/24
    fn p4(&self) -> IpNet {
        format!("10.99.{}.0/24", self.n).parse().unwrap()
    }
    /// 2001:db8:99:n::/64
    fn p6(&self) -> IpNet {
        format!("2001:db8:99:{:x}::/64", self.n).parse().unwrap()
    }
    fn nlri4(&self) -> Vec<u8> {
        vec![24, 10, 99, self.n]
    }
    fn nlri6(&self) -> Vec<u8> {
        vec![64, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x99, 0x00, self.n]
    }
    /// Community 65010:n, carried by every re-announcement so the observer can tell it apart.
    fn marker(&self) -> u32 {
        (INJ_AS << 16) | u32::from(self.n)
    }
    fn mark(&self) -> Vec<u8> {
        community(self.marker())
    }
    /// A valid UPDATE announcing P4 with `extra` attributes after the base ones.
    fn announce4(&self, extra: &[u8]) -> Vec<u8> {
        update(&[], &[base(), extra.to_vec()].concat(), &self.nlri4())
    }
    /// An UPDATE announcing P4 with exactly `attrs`.
    fn with_attrs(&self, attrs: &[Vec<u8>]) -> Vec<u8> {
        update(&[], &attrs.concat(), &self.nlri4())
    }
}

/// Where a case starts.
#[derive(Clone, Copy)]
enum Stage {
    /// On a fresh connection, right after podbgp's OPEN (podbgp is in OpenSent).
    OpenSent,
    /// On an Established session, after a valid announcement of the case's prefix has reached
    /// the observer.
    Established(Setup),
}

/// What is announced (and seen at the observer) before the malformed message.
#[derive(Clone, Copy)]
enum Setup {
    /// P4 with ORIGIN, AS_PATH, NEXT_HOP.
    V4,
    /// P4 that also carries a valid ATOMIC_AGGREGATE and AGGREGATOR (for the discard cases).
    V4Aggr,
    /// P6 in MP_REACH_NLRI.
    V6,
}

impl Setup {
    fn prefix(self, c: &Ctx) -> IpNet {
        match self {
            Setup::V4 | Setup::V4Aggr => c.p4(),
            Setup::V6 => c.p6(),
        }
    }
    fn initial(self, c: &Ctx) -> Vec<u8> {
        match self {
            Setup::V4 => c.announce4(&[]),
            Setup::V4Aggr => c.announce4(&[atomic_ok(), aggregator_ok()].concat()),
            Setup::V6 => update(
                &[],
                &[mp_reach_v6(&c.nlri6()), origin(0), as_path(&[INJ_AS])].concat(),
                &[],
            ),
        }
    }
    fn initial_ok(self, r: &ObsRoute) -> Result<(), String> {
        // Toward the eBGP observer podbgp sets next hop self (next_hop_ipv4/_ipv6).
        let want: IpAddr = match self {
            Setup::V4 | Setup::V4Aggr => Ipv4Addr::new(198, 18, 0, 1).into(),
            Setup::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
        };
        if r.next_hop != Some(want) {
            return Err(format!("next hop {:?}, want {want}", r.next_hop));
        }
        match self {
            Setup::V4Aggr if !r.attrs.atomic_aggregate || r.attrs.aggregator.is_none() => {
                Err("initial route lacks ATOMIC_AGGREGATE/AGGREGATOR".into())
            }
            _ => Ok(()),
        }
    }
    /// A valid re-announcement carrying the marker (proves the session still works).
    fn follow_up(self, c: &Ctx) -> Vec<u8> {
        match self {
            Setup::V4 | Setup::V4Aggr => c.announce4(&c.mark()),
            Setup::V6 => update(
                &[],
                &[
                    mp_reach_v6(&c.nlri6()),
                    origin(0),
                    as_path(&[INJ_AS]),
                    c.mark(),
                ]
                .concat(),
                &[],
            ),
        }
    }
}

type Check = fn(&Ctx, &ObsRoute) -> Result<(), String>;
type RibInCheck = fn(&Value) -> Result<(), String>;

/// The pinned reaction.
enum Expect {
    /// NOTIFICATION code/subcode; `data` is checked when the RFC fixes it. Then the TCP
    /// connection closes and (Established cases) the observer receives a withdrawal of P.
    Notify { code: u8, subcode: u8, data: Data },
    /// RFC 7606 treat-as-withdraw: P withdrawn at the observer, session stays up.
    Withdraw,
    /// The UPDATE is accepted (it carries the marker): the observer receives P with the marker
    /// and `check` holds (attribute discard, first-of-duplicates, ...). Session stays up.
    Accept(Check),
    /// No effect and no NOTIFICATION; the session keeps working.
    Ignore,
    /// OpenSent only: the OPEN is accepted and the session reaches Established.
    Establish,
}

enum Data {
    /// The RFC does not fix the data (whatever podbgp sends is accepted).
    Any,
    /// Exactly these octets.
    Is(fn(&Ctx) -> Vec<u8>),
}

struct Case {
    name: &'static str,
    stage: Stage,
    send: fn(&Ctx) -> Vec<u8>,
    expect: Expect,
    /// Extra check of the injector's adj-rib-in entry for P (after an accepted UPDATE).
    rib_in: Option<RibInCheck>,
}

fn notify(code: u8, subcode: u8, data: Data) -> Expect {
    Expect::Notify {
        code,
        subcode,
        data,
    }
}

fn case(name: &'static str, stage: Stage, send: fn(&Ctx) -> Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        stage,
        send,
        expect,
        rib_in: None,
    }
}

const OPEN_SENT: Stage = Stage::OpenSent;
const EST: Stage = Stage::Established(Setup::V4);
const EST_AGGR: Stage = Stage::Established(Setup::V4Aggr);
const EST6: Stage = Stage::Established(Setup::V6);

fn has_marker(c: &Ctx, r: &ObsRoute) -> Result<(), String> {
    if r.attrs.communities.contains(&c.marker()) {
        Ok(())
    } else {
        Err(format!(
            "marker community {}:{} missing",
            c.marker() >> 16,
            c.marker() & 0xffff
        ))
    }
}

// Attribute bytes shared between a case's message and its expected NOTIFICATION data.
fn wellknown_99() -> Vec<u8> {
    attr(0x40, 99, &[1, 2, 3])
}
fn mp_reach_nh15(c: &Ctx) -> Vec<u8> {
    let mut v = vec![0, 2, 1, 15];
    v.extend_from_slice(&INJ_NH6.octets()[..15]);
    v.push(0);
    v.extend_from_slice(&c.nlri6());
    attr(0x80, 14, &v)
}
fn mp_reach_len4() -> Vec<u8> {
    attr(0x80, 14, &[0, 2, 1, 0])
}
fn mp_unreach_len2() -> Vec<u8> {
    attr(0x80, 15, &[0, 2])
}
fn mp_reach_wellknown_flags(c: &Ctx) -> Vec<u8> {
    let mut a = mp_reach_v6(&c.nlri6());
    a[0] = 0x40;
    a
}
/// The first 10 octets of an MP_REACH_NLRI whose length says 30: it overruns the attribute
/// field, which ends right after it.
fn mp_reach_overrun() -> Vec<u8> {
    vec![0x80, 14, 30, 0, 2, 1, 16, 0x20, 0x01, 0x0d]
}
fn route_refresh_24() -> Vec<u8> {
    msg(5, &[0, 1, 0, 1, 0])
}

fn cases() -> Vec<Case> {
    use Expect::{Accept, Establish, Ignore, Withdraw};
    vec![
        // ---- OPEN (RFC 4271 §6.2, RFC 5492, 6286, 6793, 7607; robustness §1.3) -------------
        case(
            "open: version 3",
            OPEN_SENT,
            |_| open_msg(3, INJ_AS as u16, INJ_HOLD, INJ_ID, &std_caps(INJ_AS)),
            notify(2, 1, Data::Is(|_| vec![0, 4])),
        ),
        case(
            "open: peer AS 65099 instead of 65010",
            OPEN_SENT,
            |_| open_msg(4, 65099, INJ_HOLD, INJ_ID, &std_caps(65099)),
            notify(2, 2, Data::Any),
        ),
        case(
            "open: My AS 0",
            OPEN_SENT,
            |_| open_msg(4, 0, INJ_HOLD, INJ_ID, &std_caps(INJ_AS)),
            notify(2, 2, Data::Any),
        ),
        case(
            "open: 4-octet AS capability value 0",
            OPEN_SENT,
            |_| open_msg(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &std_caps(0)),
            notify(2, 2, Data::Any),
        ),
        case(
            "open: AS_TRANS as the 4-octet AS capability value",
            OPEN_SENT,
            |_| open_msg(4, 23456, INJ_HOLD, INJ_ID, &std_caps(23456)),
            notify(2, 2, Data::Any),
        ),
        case(
            "open: My AS 65011 disagrees with 4-octet AS 65010",
            OPEN_SENT,
            |_| open_msg(4, 65011, INJ_HOLD, INJ_ID, &std_caps(INJ_AS)),
            notify(2, 2, Data::Any),
        ),
        case(
            "open: hold time 1",
            OPEN_SENT,
            |_| open_msg(4, INJ_AS as u16, 1, INJ_ID, &std_caps(INJ_AS)),
            notify(2, 6, Data::Any),
        ),
        case(
            "open: BGP identifier 0.0.0.0",
            OPEN_SENT,
            |_| open_msg(4, INJ_AS as u16, INJ_HOLD, [0; 4], &std_caps(INJ_AS)),
            notify(2, 3, Data::Any),
        ),
        case(
            "open: unknown optional parameter type 3",
            OPEN_SENT,
            |_| {
                let params = [std_caps(INJ_AS), vec![3, 2, 0xab, 0xcd]].concat();
                open_msg(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &params)
            },
            notify(2, 4, Data::Any),
        ),
        case(
            "open: truncated capability (length 4, 2 octets present)",
            OPEN_SENT,
            |_| {
                let params = [std_caps(INJ_AS), vec![2, 4, 65, 4, 0, 0]].concat();
                open_msg(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &params)
            },
            notify(2, 0, Data::Any),
        ),
        case(
            "open: Opt Parm Len larger than the parameters",
            OPEN_SENT,
            |_| {
                let mut body = open_body(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &std_caps(INJ_AS));
                body[9] += 4;
                msg(1, &body)
            },
            notify(2, 0, Data::Any),
        ),
        case(
            "open: multiprotocol capability of length 3",
            OPEN_SENT,
            |_| {
                let params = caps_param(&[&[1, 3, 0, 1, 1], &CAP_RR, &cap_as4(INJ_AS)]);
                open_msg(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &params)
            },
            notify(2, 0, Data::Any),
        ),
        case(
            "open: ADD-PATH capability of length 3",
            OPEN_SENT,
            |_| {
                let params = caps_param(&[
                    &CAP_MP_V4,
                    &CAP_MP_V6,
                    &[69, 3, 0, 1, 1],
                    &CAP_RR,
                    &cap_as4(INJ_AS),
                ]);
                open_msg(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &params)
            },
            notify(2, 0, Data::Any),
        ),
        case(
            "open: RFC 9072 extended parameters length too large",
            OPEN_SENT,
            |_| {
                // Non-Ext OP Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length, then
                // one Capabilities parameter with a 2-octet length.
                let caps = [CAP_MP_V4.to_vec(), CAP_MP_V6.to_vec(), cap_as4(INJ_AS)].concat();
                let mut list = vec![2];
                list.extend_from_slice(&(caps.len() as u16).to_be_bytes());
                list.extend_from_slice(&caps);
                let mut body = open_body(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &[]);
                body[9] = 255;
                body.push(255);
                body.extend_from_slice(&(list.len() as u16 + 5).to_be_bytes());
                body.extend_from_slice(&list);
                msg(1, &body)
            },
            notify(2, 0, Data::Any),
        ),
        // ---- Header (RFC 4271 §6.1; robustness §1.2) --------------------------------------
        case(
            "header: OPEN with length 28 (< 29)",
            OPEN_SENT,
            |_| {
                let body = open_body(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &[]);
                msg_len(1, 28, &body[..9])
            },
            notify(1, 2, Data::Is(|_| vec![0, 28])),
        ),
        // ---- FSM (RFC 6608; robustness §1.5) --------------------------------------------
        case(
            "fsm: UPDATE in OpenSent",
            OPEN_SENT,
            |_| update(&[], &[], &[]),
            notify(5, 1, Data::Any),
        ),
        case(
            "fsm: KEEPALIVE in OpenSent",
            OPEN_SENT,
            |_| keepalive(),
            notify(5, 1, Data::Any),
        ),
        case(
            "fsm: second OPEN in OpenConfirm",
            OPEN_SENT,
            |_| [injector_open(), injector_open()].concat(),
            notify(5, 2, Data::Any),
        ),
        case(
            "fsm: UPDATE in OpenConfirm",
            OPEN_SENT,
            |_| [injector_open(), update(&[], &[], &[])].concat(),
            notify(5, 2, Data::Any),
        ),
        // ---- Ignored capability: this OPEN establishes the session the next cases use ---
        case(
            "open: unknown capability 200 is ignored",
            OPEN_SENT,
            |_| {
                let params = caps_param(&[
                    &CAP_MP_V4,
                    &CAP_MP_V6,
                    &[200, 3, 1, 2, 3],
                    &CAP_RR,
                    &cap_as4(INJ_AS),
                ]);
                open_msg(4, INJ_AS as u16, INJ_HOLD, INJ_ID, &params)
            },
            Establish,
        ),
        // ---- Attributes (RFC 7606 §7; robustness §1.4) -----------------------------------
        case(
            "attr: ORIGIN value 3",
            EST,
            |c| c.with_attrs(&[origin(3), as_path(&[INJ_AS]), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: ORIGIN length 2",
            EST,
            |c| c.with_attrs(&[attr(0x40, 1, &[0, 0]), as_path(&[INJ_AS]), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: ORIGIN with the Optional flag",
            EST,
            |c| c.with_attrs(&[attr(0xc0, 1, &[0]), as_path(&[INJ_AS]), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: ORIGIN with the Partial flag",
            EST,
            |c| c.with_attrs(&[attr(0x60, 1, &[0]), as_path(&[INJ_AS]), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: duplicate ORIGIN keeps the first",
            EST,
            |c| {
                c.with_attrs(&[
                    origin(1),
                    origin(2),
                    as_path(&[INJ_AS]),
                    next_hop(INJ_NH),
                    c.mark(),
                ])
            },
            Accept(|c, r| {
                has_marker(c, r)?;
                match r.attrs.origin {
                    Some(Origin::Egp) => Ok(()),
                    o => Err(format!("origin {o:?}, want Egp (the first ORIGIN)")),
                }
            }),
        ),
        case(
            "attr: AS_PATH segment type 5",
            EST,
            |c| {
                c.with_attrs(&[
                    origin(0),
                    attr(0x40, 2, &seg(5, &[INJ_AS])),
                    next_hop(INJ_NH),
                ])
            },
            Withdraw,
        ),
        case(
            "attr: AS_PATH segment count overruns the attribute",
            EST,
            |c| {
                let mut s = seg(2, &[INJ_AS]);
                s[1] = 3;
                c.with_attrs(&[origin(0), attr(0x40, 2, &s), next_hop(INJ_NH)])
            },
            Withdraw,
        ),
        case(
            "attr: AS_PATH containing AS 0",
            EST,
            |c| c.with_attrs(&[origin(0), as_path(&[INJ_AS, 0]), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: AS_PATH with an AS_SET (RFC 9774)",
            EST,
            |c| {
                let p = [seg(2, &[INJ_AS]), seg(1, &[65011, 65012])].concat();
                c.with_attrs(&[origin(0), attr(0x40, 2, &p), next_hop(INJ_NH)])
            },
            Withdraw,
        ),
        case(
            "attr: AS_CONFED_SEQUENCE from an eBGP peer",
            EST,
            |c| {
                let p = [seg(3, &[65099]), seg(2, &[INJ_AS])].concat();
                c.with_attrs(&[origin(0), attr(0x40, 2, &p), next_hop(INJ_NH)])
            },
            Withdraw,
        ),
        case(
            "attr: AS_PATH segment of length 0",
            EST,
            |c| c.with_attrs(&[origin(0), attr(0x40, 2, &[2, 0]), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: AS_PATH first AS 65099 is not the eBGP peer's AS",
            EST,
            |c| c.with_attrs(&[origin(0), as_path(&[65099]), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: missing ORIGIN",
            EST,
            |c| c.with_attrs(&[as_path(&[INJ_AS]), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: missing AS_PATH",
            EST,
            |c| c.with_attrs(&[origin(0), next_hop(INJ_NH)]),
            Withdraw,
        ),
        case(
            "attr: missing NEXT_HOP with IPv4 NLRI",
            EST,
            |c| c.with_attrs(&[origin(0), as_path(&[INJ_AS])]),
            Withdraw,
        ),
        case(
            "attr: NEXT_HOP length 5",
            EST,
            |c| {
                c.with_attrs(&[
                    origin(0),
                    as_path(&[INJ_AS]),
                    attr(0x40, 3, &[198, 18, 0, 2, 0]),
                ])
            },
            Withdraw,
        ),
        case(
            "attr: NEXT_HOP 0.0.0.0",
            EST,
            |c| c.with_attrs(&[origin(0), as_path(&[INJ_AS]), next_hop([0, 0, 0, 0])]),
            Withdraw,
        ),
        case(
            "attr: NEXT_HOP 224.0.0.1",
            EST,
            |c| c.with_attrs(&[origin(0), as_path(&[INJ_AS]), next_hop([224, 0, 0, 1])]),
            Withdraw,
        ),
        case(
            "attr: NEXT_HOP 127.0.0.1",
            EST,
            |c| c.with_attrs(&[origin(0), as_path(&[INJ_AS]), next_hop([127, 0, 0, 1])]),
            Withdraw,
        ),
        case(
            "attr: MULTI_EXIT_DISC length 3",
            EST,
            |c| c.announce4(&attr(0x80, 4, &[0, 0, 1])),
            Withdraw,
        ),
        {
            let mut c = case(
                "attr: LOCAL_PREF from eBGP is discarded",
                EST,
                |c| c.announce4(&[attr(0x40, 5, &[0, 0, 0, 200]), c.mark()].concat()),
                Accept(|c, r| {
                    has_marker(c, r)?;
                    match r.attrs.local_pref {
                        None => Ok(()),
                        Some(lp) => Err(format!("observer got LOCAL_PREF {lp}")),
                    }
                }),
            );
            c.rib_in = Some(|v| match &v["local_pref"] {
                Value::Null => Ok(()),
                lp => Err(format!("adj-rib-in local_pref is {lp}, want null")),
            });
            c
        },
        case(
            "attr: ATOMIC_AGGREGATE length 1 is discarded",
            EST_AGGR,
            |c| c.announce4(&[attr(0x40, 6, &[0]), c.mark()].concat()),
            Accept(|c, r| {
                has_marker(c, r)?;
                if r.attrs.atomic_aggregate {
                    Err("observer's copy still has ATOMIC_AGGREGATE".into())
                } else {
                    Ok(())
                }
            }),
        ),
        case(
            "attr: ATOMIC_AGGREGATE with the Partial flag is discarded",
            EST_AGGR,
            |c| c.announce4(&[attr(0x60, 6, &[]), c.mark()].concat()),
            Accept(|c, r| {
                has_marker(c, r)?;
                if r.attrs.atomic_aggregate {
                    Err("observer's copy still has ATOMIC_AGGREGATE".into())
                } else {
                    Ok(())
                }
            }),
        ),
        case(
            "attr: AGGREGATOR length 5 is discarded",
            EST_AGGR,
            |c| c.announce4(&[attr(0xc0, 7, &[0, 0, 0xfd, 0xf2, 198]), c.mark()].concat()),
            Accept(|c, r| {
                has_marker(c, r)?;
                match r.attrs.aggregator {
                    None => Ok(()),
                    Some(a) => Err(format!("observer's copy still has AGGREGATOR {a:?}")),
                }
            }),
        ),
        case(
            "attr: AGGREGATOR with AS 0 is discarded",
            EST_AGGR,
            |c| {
                let v = [0, 0, 0, 0, 198, 18, 0, 2];
                c.announce4(&[attr(0xc0, 7, &v), c.mark()].concat())
            },
            Accept(|c, r| {
                has_marker(c, r)?;
                match r.attrs.aggregator {
                    None => Ok(()),
                    Some(a) => Err(format!("observer's copy still has AGGREGATOR {a:?}")),
                }
            }),
        ),
        {
            let mut c = case(
                "attr: ORIGINATOR_ID from eBGP is discarded",
                EST,
                |c| c.announce4(&[attr(0x80, 9, &[198, 18, 0, 9]), c.mark()].concat()),
                Accept(has_marker),
            );
            c.rib_in = Some(|v| match &v["originator_id"] {
                Value::Null => Ok(()),
                o => Err(format!("adj-rib-in originator_id is {o}, want null")),
            });
            c
        },
        {
            let mut c = case(
                "attr: CLUSTER_LIST from eBGP is discarded",
                EST,
                |c| c.announce4(&[attr(0x80, 10, &[198, 18, 0, 9]), c.mark()].concat()),
                Accept(has_marker),
            );
            c.rib_in = Some(|v| match v["cluster_list"].as_array() {
                Some(a) if a.is_empty() => Ok(()),
                _ => Err(format!(
                    "adj-rib-in cluster_list is {}, want []",
                    v["cluster_list"]
                )),
            });
            c
        },
        {
            let mut c = case(
                "attr: AS4_PATH from a 4-octet-AS peer is discarded",
                EST,
                |c| c.announce4(&[attr(0xc0, 17, &seg(2, &[65099])), c.mark()].concat()),
                Accept(|c, r| {
                    has_marker(c, r)?;
                    let path: Vec<u32> = r
                        .attrs
                        .as_path
                        .iter()
                        .flat_map(|p| p.segments.iter().flat_map(|s| s.asns.clone()))
                        .collect();
                    if path == [LOCAL_AS, INJ_AS] {
                        Ok(())
                    } else {
                        Err(format!("AS path {path:?}, want [{LOCAL_AS}, {INJ_AS}]"))
                    }
                }),
            );
            c.rib_in = Some(|v| {
                if v["as_path"] == serde_json::json!([INJ_AS]) {
                    Ok(())
                } else {
                    Err(format!(
                        "adj-rib-in as_path is {}, want [65010]",
                        v["as_path"]
                    ))
                }
            });
            c
        },
        case(
            "attr: COMMUNITIES length 3",
            EST,
            |c| c.announce4(&attr(0xc0, 8, &[0, 0, 1])),
            Withdraw,
        ),
        case(
            "attr: COMMUNITIES length 0",
            EST,
            |c| c.announce4(&attr(0xc0, 8, &[])),
            Withdraw,
        ),
        case(
            "attr: EXTENDED_COMMUNITIES length 7",
            EST,
            |c| c.announce4(&attr(0xc0, 16, &[0, 2, 0xfd, 0xf2, 0, 0, 1])),
            Withdraw,
        ),
        case(
            "attr: LARGE_COMMUNITY length 11",
            EST,
            |c| c.announce4(&attr(0xc0, 32, &[0; 11])),
            Withdraw,
        ),
        case(
            "attr: AGGREGATOR length 5 with the Partial flag",
            EST,
            |c| c.announce4(&attr(0xe0, 7, &[0, 0, 0xfd, 0xf2, 198])),
            Withdraw,
        ),
        case(
            "attr: OTC length 3",
            EST,
            |c| c.announce4(&attr(0xc0, 35, &[0, 0, 1])),
            Withdraw,
        ),
        case(
            "attr: IPv6 address-specific extended community length 19",
            EST,
            |c| c.announce4(&attr(0xc0, 25, &[0; 19])),
            Withdraw,
        ),
        case(
            "attr: unknown optional transitive attribute is passed on as Partial",
            EST,
            |c| c.announce4(&[attr(0xc0, 250, &[1, 2, 3, 4]), c.mark()].concat()),
            Accept(|c, r| {
                has_marker(c, r)?;
                match r.attrs.unknown.iter().find(|a| a.type_code == 250) {
                    Some(a) if a.flags == 0xe0 && a.value[..] == [1, 2, 3, 4] => Ok(()),
                    a => Err(format!("type 250 as received: {a:?}, want flags 0xe0")),
                }
            }),
        ),
        case(
            "attr: unknown optional non-transitive attribute is not passed on",
            EST,
            |c| c.announce4(&[attr(0x80, 251, &[1, 2, 3]), c.mark()].concat()),
            Accept(|c, r| {
                has_marker(c, r)?;
                match r.attrs.unknown.iter().find(|a| a.type_code == 251) {
                    None => Ok(()),
                    Some(a) => Err(format!("observer received type 251: {a:?}")),
                }
            }),
        ),
        case(
            "attr: unrecognized well-known attribute (flags 0x40, type 99)",
            EST,
            |c| c.announce4(&wellknown_99()),
            notify(3, 2, Data::Is(|_| wellknown_99())),
        ),
        // ---- UPDATE framing and NLRI (RFC 7606 §3(b), §4, §5.2, §5.3) --------------------
        case(
            "update: Withdrawn Routes Length overruns the message",
            EST,
            |c| update_raw(200, &c.nlri4(), 0, &[], &[]),
            notify(3, 1, Data::Any),
        ),
        case(
            "update: Total Path Attribute Length overruns the message",
            EST,
            |c| update_raw(0, &[], 500, &base(), &c.nlri4()),
            notify(3, 1, Data::Any),
        ),
        case(
            "update: last attribute's length overruns the attribute field",
            EST,
            |c| c.announce4(&[0xc0, 8, 8, 0, 0, 0, 1]),
            Withdraw,
        ),
        case(
            "update: attribute header truncated (2 octets left)",
            EST,
            |c| c.announce4(&[0xc0, 8]),
            Withdraw,
        ),
        case(
            "update: NLRI prefix length 33",
            EST,
            |c| update(&[], &base(), &[33, 10, 99, c.n, 0, 0]),
            notify(3, 10, Data::Any),
        ),
        case(
            "update: NLRI prefix overruns the field",
            EST,
            |_| update(&[], &base(), &[24, 10, 99]),
            notify(3, 10, Data::Any),
        ),
        case(
            "update: withdrawn prefix length 33",
            EST,
            |c| update(&[33, 10, 99, c.n, 0, 0], &[], &[]),
            notify(3, 10, Data::Any),
        ),
        case(
            "update: malformed ORIGIN without reachable NLRI (RFC 7606 §5.2)",
            EST,
            |_| {
                update(
                    &[],
                    &[origin(3), as_path(&[INJ_AS]), next_hop(INJ_NH)].concat(),
                    &[],
                )
            },
            notify(3, 1, Data::Any),
        ),
        // ---- MP attributes (RFC 4760 §7, RFC 7606 §5.3, §7.11, §7.12) ---------------------
        case(
            "mp: MP_REACH IPv6 next-hop length 15",
            EST6,
            |c| {
                update(
                    &[],
                    &[mp_reach_nh15(c), origin(0), as_path(&[INJ_AS])].concat(),
                    &[],
                )
            },
            notify(3, 9, Data::Is(mp_reach_nh15)),
        ),
        case(
            "mp: MP_REACH of length 4 (< 5)",
            EST6,
            |_| {
                update(
                    &[],
                    &[mp_reach_len4(), origin(0), as_path(&[INJ_AS])].concat(),
                    &[],
                )
            },
            notify(3, 9, Data::Is(|_| mp_reach_len4())),
        ),
        case(
            "mp: MP_UNREACH of length 2 (< 3)",
            EST6,
            |_| update(&[], &mp_unreach_len2(), &[]),
            notify(3, 9, Data::Is(|_| mp_unreach_len2())),
        ),
        case(
            "mp: MP_REACH with well-known flags",
            EST6,
            |c| {
                let attrs = [mp_reach_wellknown_flags(c), origin(0), as_path(&[INJ_AS])];
                update(&[], &attrs.concat(), &[])
            },
            notify(3, 9, Data::Is(mp_reach_wellknown_flags)),
        ),
        case(
            "mp: MP_REACH overruns the attribute field",
            EST6,
            |_| {
                update(
                    &[],
                    &[origin(0), as_path(&[INJ_AS]), mp_reach_overrun()].concat(),
                    &[],
                )
            },
            notify(3, 9, Data::Is(|_| mp_reach_overrun())),
        ),
        case(
            "mp: duplicate MP_REACH",
            EST6,
            |c| {
                let r = mp_reach_v6(&c.nlri6());
                update(
                    &[],
                    &[r.clone(), r, origin(0), as_path(&[INJ_AS])].concat(),
                    &[],
                )
            },
            notify(3, 1, Data::Any),
        ),
        case(
            "mp: duplicate MP_UNREACH",
            EST6,
            |c| {
                let u = mp_unreach_v6(&c.nlri6());
                update(&[], &[u.clone(), u].concat(), &[])
            },
            notify(3, 1, Data::Any),
        ),
        case(
            "mp: MP_REACH IPv6 prefix length 129",
            EST6,
            |_| {
                let mut nlri = vec![129];
                nlri.extend_from_slice(&[0x20; 17]);
                update(
                    &[],
                    &[mp_reach_v6(&nlri), origin(0), as_path(&[INJ_AS])].concat(),
                    &[],
                )
            },
            notify(3, 10, Data::Any),
        ),
        case(
            "mp: MP_REACH for unknown AFI 25 is ignored, the rest is used",
            EST,
            |c| {
                let foreign = attr(0x80, 14, &[0, 25, 1, 4, 198, 18, 0, 2, 0, 24, 10, 1, 2]);
                c.with_attrs(&[foreign, base(), c.mark()])
            },
            Accept(has_marker),
        ),
        // ---- ROUTE-REFRESH (RFC 7313 §5) ------------------------------------------------
        case(
            "route-refresh: unknown family AFI 25",
            EST,
            |_| msg(5, &[0, 25, 0, 1]),
            Ignore,
        ),
        case(
            "route-refresh: unknown subtype 3",
            EST,
            |_| msg(5, &[0, 1, 3, 1]),
            Ignore,
        ),
        case(
            "route-refresh: length 24",
            EST,
            |_| route_refresh_24(),
            notify(7, 1, Data::Is(|_| route_refresh_24())),
        ),
        // ---- Header errors on an Established session (RFC 4271 §6.1) ---------------------
        case(
            "header: marker not all ones",
            EST,
            |_| {
                let mut k = keepalive();
                k[3] = 0xfe;
                k
            },
            notify(1, 1, Data::Any),
        ),
        case(
            "header: length 18 (< 19)",
            EST,
            |_| msg_len(4, 18, &[]),
            notify(1, 2, Data::Is(|_| vec![0, 18])),
        ),
        case(
            "header: UPDATE of 5000 octets without Extended Message",
            EST,
            |_| msg(2, &[0; 5000 - 19]),
            notify(1, 2, Data::Is(|_| 5000u16.to_be_bytes().to_vec())),
        ),
        case(
            "header: KEEPALIVE of length 20",
            EST,
            |_| msg(4, &[0]),
            notify(1, 2, Data::Is(|_| vec![0, 20])),
        ),
        case(
            "header: UPDATE of length 22 (< 23)",
            EST,
            |_| msg(2, &[0, 0, 0]),
            notify(1, 2, Data::Is(|_| vec![0, 22])),
        ),
        case(
            "header: ROUTE-REFRESH of length 22 (< 23)",
            EST,
            |_| msg(5, &[0, 1, 0]),
            notify(1, 2, Data::Is(|_| vec![0, 22])),
        ),
        case(
            "header: unknown message type 7",
            EST,
            |_| msg(7, &[]),
            notify(1, 3, Data::Is(|_| vec![7])),
        ),
        case(
            "fsm: OPEN in Established",
            EST,
            |_| injector_open(),
            notify(5, 3, Data::Any),
        ),
    ]
}

fn expect_text(e: &Expect) -> String {
    match e {
        Expect::Notify {
            code,
            subcode,
            data: Data::Any,
        } => format!("NOTIFY {code}/{subcode}"),
        Expect::Notify {
            code,
            subcode,
            data: Data::Is(_),
        } => format!("NOTIFY {code}/{subcode} + data"),
        Expect::Withdraw => "treat-as-withdraw".into(),
        Expect::Accept(_) => "accepted (discard/keep-first)".into(),
        Expect::Ignore => "ignored".into(),
        Expect::Establish => "ignored, session established".into(),
    }
}

// ---- The runner ---------------------------------------------------------------------------

/// The injector's current Established session, if any.
struct InjSession {
    w: Wire,
    /// podbgp's `established_transitions` for the injector right after this session came up.
    transitions: u64,
}

struct Harness {
    daemon: Daemon,
    obs: Observer,
    inj: Option<InjSession>,
    /// Established sessions the injector completed.
    inj_sessions: u64,
}

impl Harness {
    /// Closes the injector's session cleanly (Cease 6/2), if one is up.
    fn close_injector(&mut self) {
        if let Some(mut s) = self.inj.take() {
            let _ = s.w.send(&notification(6, 2));
        }
    }

    fn record_established(&mut self, w: Wire) -> Result<(), String> {
        self.inj_sessions += 1;
        let p = self.daemon.peer(INJ_ADDR)?;
        if p["state"] != "established" {
            return Err(format!("podbgp shows the injector as {}", p["state"]));
        }
        let transitions = p["established_transitions"].as_u64().unwrap_or(0);
        self.inj = Some(InjSession { w, transitions });
        Ok(())
    }

    fn ensure_injector(&mut self) -> Result<(), String> {
        if self.inj.is_some() {
            return Ok(());
        }
        let mut w = connect_until_open(INJ_ADDR, self.daemon.port)?;
        w.send(&injector_open())?;
        finish_handshake(&mut w)?;
        self.record_established(w)
    }

    /// The injector session is still up: nothing but KEEPALIVE/UPDATE arrived on it, it is open,
    /// and podbgp shows it Established without any flap since it came up.
    fn assert_session_up(&mut self) -> Result<(), String> {
        let s = self.inj.as_mut().ok_or("no injector session")?;
        let (msgs, closed) = s.w.drain()?;
        for m in &msgs {
            if let Ok(Message::Notification(_)) | Err(_) = decode(m) {
                return Err(format!("injector received {}", describe(m)));
            }
        }
        if let Some(e) = closed {
            return Err(format!("injector connection closed: {e}"));
        }
        let p = self.daemon.peer(INJ_ADDR)?;
        let t = p["established_transitions"].as_u64().unwrap_or(0);
        if p["state"] != "established" || t != s.transitions {
            return Err(format!(
                "podbgp shows the injector {} with {t} established transitions (want \
                 established, {}); last_error {}",
                p["state"], s.transitions, p["last_error"]
            ));
        }
        Ok(())
    }

    /// Reads podbgp's NOTIFICATION on `w`, checks it, then checks that podbgp closes `w`.
    fn expect_notification(
        w: &mut Wire,
        c: &Ctx,
        code: u8,
        subcode: u8,
        data: &Data,
    ) -> Result<(), String> {
        let deadline = Instant::now() + REACTION;
        let n = loop {
            match w.recv(deadline)? {
                Rx::Msg(m) => match decode(&m)? {
                    Message::Notification(n) => break n,
                    Message::Keepalive | Message::Update(_) => {}
                    _ => return Err(format!("expected NOTIFICATION, got {}", describe(&m))),
                },
                Rx::Closed(e) => return Err(format!("closed without a NOTIFICATION ({e})")),
                Rx::Timeout => {
                    return Err(format!(
                        "no NOTIFICATION within {REACTION:?} (the session stayed up)"
                    ));
                }
            }
        };
        if (n.code, n.subcode) != (code, subcode) {
            return Err(format!(
                "got NOTIFICATION {}/{} data {}, want {code}/{subcode}",
                n.code,
                n.subcode,
                hex(&n.data)
            ));
        }
        if let Data::Is(f) = data {
            let want = f(c);
            if n.data[..] != want[..] {
                return Err(format!(
                    "NOTIFICATION {code}/{subcode} data {}, want {}",
                    hex(&n.data),
                    hex(&want)
                ));
            }
        }
        match w.recv(Instant::now() + REACTION)? {
            Rx::Closed(_) => Ok(()),
            Rx::Msg(m) => Err(format!(
                "after the NOTIFICATION podbgp sent {}",
                describe(&m)
            )),
            Rx::Timeout => Err(format!(
                "podbgp did not close the connection within {REACTION:?} after its NOTIFICATION"
            )),
        }
    }

    fn run(&mut self, c: &Ctx, case: &Case) -> Result<String, String> {
        if let Some(status) = self.daemon.exited() {
            return Err(format!("podbgp is not running: {status}"));
        }
        let res = match case.stage {
            Stage::OpenSent => self.run_open_sent(c, case),
            Stage::Established(setup) => self.run_established(c, case, setup),
        };
        if res.is_err() {
            // Unknown state: start the next case on a fresh connection.
            self.inj = None;
        }
        if let Some(status) = self.daemon.exited() {
            return Err(format!("podbgp died: {status}"));
        }
        res
    }

    fn run_open_sent(&mut self, c: &Ctx, case: &Case) -> Result<String, String> {
        self.close_injector();
        let mut w = connect_until_open(INJ_ADDR, self.daemon.port)?;
        w.send(&(case.send)(c))?;
        match &case.expect {
            Expect::Notify {
                code,
                subcode,
                data,
            } => {
                Self::expect_notification(&mut w, c, *code, *subcode, data)?;
                Ok(format!("NOTIFICATION {code}/{subcode}, closed"))
            }
            Expect::Establish => {
                finish_handshake(&mut w)?;
                self.record_established(w)?;
                self.assert_session_up()?;
                Ok("established".into())
            }
            _ => Err("test bug: unsupported expectation in OpenSent".into()),
        }
    }

    fn run_established(&mut self, c: &Ctx, case: &Case, setup: Setup) -> Result<String, String> {
        self.ensure_injector()?;
        let p = setup.prefix(c);
        self.inj.as_mut().unwrap().w.send(&setup.initial(c))?;
        self.obs
            .wait_announced(p, "announced (valid set-up UPDATE)", |r| {
                setup.initial_ok(r)
            })?;

        let bad = (case.send)(c);
        self.inj.as_mut().unwrap().w.send(&bad)?;
        let outcome = match &case.expect {
            Expect::Notify {
                code,
                subcode,
                data,
            } => {
                let mut s = self.inj.take().unwrap();
                Self::expect_notification(&mut s.w, c, *code, *subcode, data)?;
                self.obs.wait_withdrawn(p)?;
                format!("NOTIFICATION {code}/{subcode}, closed, {p} withdrawn")
            }
            Expect::Withdraw => {
                self.obs.wait_withdrawn(p)?;
                self.assert_session_up()?;
                self.inj.as_mut().unwrap().w.send(&setup.follow_up(c))?;
                self.obs
                    .wait_announced(p, "re-announced after treat-as-withdraw", |r| {
                        has_marker(c, r)
                    })?;
                format!("{p} withdrawn, session up")
            }
            Expect::Accept(check) => {
                self.obs
                    .wait_announced(p, "re-announced by the UPDATE under test", |r| check(c, r))?;
                self.assert_session_up()?;
                format!("{p} accepted, session up")
            }
            Expect::Ignore => {
                self.inj.as_mut().unwrap().w.send(&setup.follow_up(c))?;
                self.obs
                    .wait_announced(p, "re-announced after the ignored message", |r| {
                        has_marker(c, r)
                    })?;
                self.assert_session_up()?;
                "ignored, session up".into()
            }
            Expect::Establish => return Err("test bug: Establish needs OpenSent".into()),
        };
        if let Some(check) = case.rib_in {
            check(&self.daemon.adj_in(p)?).map_err(|e| format!("adj-rib-in: {e}"))?;
        }
        Ok(outcome)
    }
}

#[test]
fn malformed_input_gets_the_pinned_reaction() {
    let started = Instant::now();
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    assert!(cases.len() < 256, "case numbers must fit one octet");
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be distinct");

    let daemon = Daemon::start();
    poll(Duration::from_secs(20), "podbgp's API to answer", || {
        daemon.cli(&["speaker"])
    })
    .unwrap();
    let obs = Observer::start(daemon.port).expect("observer session");
    poll(Duration::from_secs(5), "observer established", || {
        let p = daemon.peer(OBS_ADDR)?;
        if p["state"] == "established" {
            Ok(())
        } else {
            Err(format!("observer is {}", p["state"]))
        }
    })
    .unwrap();

    let mut h = Harness {
        daemon,
        obs,
        inj: None,
        inj_sessions: 0,
    };
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let ctx = Ctx { n: (i + 1) as u8 };
        let t0 = Instant::now();
        let res = h.run(&ctx, case);
        let ms = t0.elapsed().as_millis();
        match res {
            Ok(what) => eprintln!(
                "[ok]   {:2} {:<62} {:<28} {what} ({ms} ms)",
                ctx.n,
                case.name,
                expect_text(&case.expect)
            ),
            Err(e) => {
                eprintln!(
                    "[FAIL] {:2} {:<62} {:<28} {e} ({ms} ms)",
                    ctx.n,
                    case.name,
                    expect_text(&case.expect)
                );
                failures.push(format!(
                    "case {} {:?} (expected {}): {e}",
                    ctx.n,
                    case.name,
                    expect_text(&case.expect)
                ));
            }
        }
    }
    h.close_injector();

    // podbgp is still running and answering, and the observer session never flapped.
    assert!(
        h.daemon.exited().is_none(),
        "podbgp exited: {:?}",
        h.daemon.exited()
    );
    let speaker = h.daemon.cli(&["speaker"]).expect("speaker --json");
    assert_eq!(speaker["local_as"], LOCAL_AS, "speaker --json: {speaker}");
    {
        let st = h.obs.state.lock().unwrap();
        assert!(
            st.notifications.is_empty(),
            "the observer received NOTIFICATION(s): {:?}",
            st.notifications
        );
        assert!(
            st.closed.is_none(),
            "the observer's connection closed: {:?}",
            st.closed
        );
        assert!(st.errors.is_empty(), "observer errors: {:?}", st.errors);
        eprintln!(
            "observer: {} prefixes seen, {} keepalives in, {} out",
            st.routes.len(),
            st.keepalives_in,
            st.keepalives_out
        );
    }
    let peers = h.daemon.cli(&["peers"]).expect("peers --json");
    let obs_peer = peers
        .as_array()
        .and_then(|a| a.iter().find(|p| p["address"] == OBS_ADDR.to_string()))
        .unwrap_or_else(|| panic!("observer missing from peers --json: {peers}"));
    assert_eq!(obs_peer["state"], "established", "observer: {obs_peer}");
    assert_eq!(
        obs_peer["established_transitions"], 1,
        "observer flapped: {obs_peer}"
    );
    let inj_peer = h.daemon.peer(INJ_ADDR).expect("peer 127.0.0.2 --json");
    if failures.is_empty() {
        assert_eq!(
            inj_peer["established_transitions"].as_u64(),
            Some(h.inj_sessions),
            "podbgp counted a different number of injector sessions: {inj_peer}"
        );
    }
    eprintln!(
        "{} cases, {} failed, {} injector sessions, {:.1?} total",
        cases.len(),
        failures.len(),
        h.inj_sessions,
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases did not get the pinned reaction:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
