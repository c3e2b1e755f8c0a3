//! A peer that stops reading costs bounded memory and slows nobody down (issue 9,
//! bgp-robustness.md F19).
//!
//! Loopback only: podbgp (`--config`) listens on 127.0.0.1 with three eBGP neighbours, all raw
//! test peers: an injector (127.0.0.2) that announces then withdraws P prefixes, in cycles; an
//! observer (127.0.0.4) that reads everything and tracks what podbgp advertises; and a slow peer
//! (127.0.0.3) that completes the handshake (hold time 0, so no KEEPALIVEs are due either way)
//! and then never reads again. Every cycle must reach the observer in full while the slow
//! peer's socket is stuck, and podbgp's resident memory after the last cycle must stay within
//! 10 % (+ 8 MiB) of what it was after the second: per-peer output state is bounded by the
//! table, not by the number of changes (RSS read from /proc/PID/status, no timing assertion).

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net};
use podbgp::wire::{
    self, AsPath, AsSegment, Capability, Family, Message, Nlri, Open, Origin, PathAttrs,
    SegmentType, SessionCodec,
};
use socket2::{Domain, Socket, Type};

const LOCAL_AS: u32 = 65001;
const INJ: (Ipv4Addr, u32) = (Ipv4Addr::new(127, 0, 0, 2), 65010);
const SLOW: (Ipv4Addr, u32) = (Ipv4Addr::new(127, 0, 0, 3), 65020);
const OBS: (Ipv4Addr, u32) = (Ipv4Addr::new(127, 0, 0, 4), 65030);
/// Prefixes per cycle and cycles.
const P: u32 = 100_000;
const CYCLES: usize = 12;
const CYCLE_DEADLINE: Duration = Duration::from_secs(120);

struct Daemon {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = std::env::temp_dir().join(format!("podbgp-slowpeer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = format!(
            "local_as: {LOCAL_AS}\nrouter_id: 198.18.0.1\n\
             listen: {{ address: \"127.0.0.1\", port: {port} }}\n\
             next_hop_ipv4: 198.18.0.1\nneighbors:\n"
        );
        for (a, asn) in [INJ, SLOW, OBS] {
            cfg.push_str(&format!(
                "  - {{ address: {a}, remote_as: {asn}, passive: true }}\n"
            ));
        }
        let config = dir.join("podbgp.yaml");
        std::fs::write(&config, cfg).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_podbgp"))
            .args(["run", "-c"])
            .arg(&config)
            .arg("--api-listen")
            .arg(dir.join("api.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("podbgp.log")).unwrap())
            .spawn()
            .expect("spawn podbgp");
        Daemon { child, dir, port }
    }

    /// VmRSS in KiB.
    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("podbgp is running");
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("podbgp.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn codec() -> SessionCodec {
    SessionCodec {
        four_octet_as: true,
        ..SessionCodec::default()
    }
}

fn encode(m: &Message) -> Vec<u8> {
    let mut b = BytesMut::new();
    wire::encode_message(m, &SessionCodec::default(), &mut b).unwrap();
    b.to_vec()
}

/// Reads whole messages from `s` into `buf`; `None` on EOF.
fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        match wire::frame_len(buf, wire::MAX_EXT_MESSAGE_LEN) {
            Ok(Some(n)) => return Some(buf.drain(..n).collect()),
            Ok(None) => {}
            Err(e) => panic!("podbgp sent a malformed frame: {e}"),
        }
        let mut tmp = [0u8; 65536];
        match s.read(&mut tmp) {
            Ok(0) => return None,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Connects from `src`, exchanges OPENs (hold time 0) and KEEPALIVEs; returns the stream and
/// what was read past the handshake.
fn establish(src: Ipv4Addr, asn: u32, port: u16) -> (TcpStream, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::from((src, 0)).into()).unwrap();
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if sock
            .connect_timeout(&to.into(), Duration::from_secs(2))
            .is_err()
        {
            assert!(Instant::now() < deadline, "{src}: cannot connect to podbgp");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let mut s: TcpStream = sock.into();
        s.set_nodelay(true).unwrap();
        let mut buf = Vec::new();
        let open = Open {
            version: 4,
            my_as: 23456,
            hold_time: 0,
            bgp_id: src,
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::FourOctetAs(asn),
            ],
        };
        s.write_all(&encode(&Message::Open(open))).unwrap();
        let Some(first) = read_frame(&mut s, &mut buf) else {
            assert!(Instant::now() < deadline, "{src}: closed before OPEN");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        match wire::decode_message(&first, &SessionCodec::default()) {
            Ok(Message::Open(_)) => {}
            other => {
                assert!(Instant::now() < deadline, "{src}: {other:?}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        s.write_all(&encode(&Message::Keepalive)).unwrap();
        let ka = read_frame(&mut s, &mut buf).expect("KEEPALIVE");
        assert!(matches!(
            wire::decode_message(&ka, &codec()),
            Ok(Message::Keepalive)
        ));
        return (s, buf);
    }
}

/// What the observer has received: the prefixes podbgp currently advertises to it.
#[derive(Default)]
struct Seen {
    prefixes: HashSet<IpNet>,
}

fn observe(mut s: TcpStream, mut buf: Vec<u8>, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let frame = match wire::frame_len(&buf, wire::MAX_EXT_MESSAGE_LEN) {
            Ok(Some(n)) => Some(buf.drain(..n).collect::<Vec<u8>>()),
            Ok(None) => None,
            Err(e) => panic!("observer: malformed frame {e}"),
        };
        let Some(frame) = frame else {
            let mut tmp = [0u8; 65536];
            match s.read(&mut tmp) {
                Ok(0) => return,
                Ok(k) => buf.extend_from_slice(&tmp[..k]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("observer read: {e}"),
            }
            continue;
        };
        if let Ok(Message::Update(u)) = wire::decode_message(&frame, &codec()) {
            let mut st = seen.lock().unwrap();
            for n in &u.withdrawn {
                st.prefixes.remove(&n.prefix);
            }
            for n in &u.nlri {
                st.prefixes.insert(n.prefix);
            }
        }
    }
}

#[test]
fn a_peer_that_stops_reading_costs_bounded_memory() {
    let mut d = Daemon::start();
    let (mut inj, _) = establish(INJ.0, INJ.1, d.port);
    let (slow, _) = establish(SLOW.0, SLOW.1, d.port);
    // The slow peer never reads again, with a small receive buffer so it fills at once.
    let slow = Socket::from(slow);
    let _ = slow.set_recv_buffer_size(4096);
    let (obs, obs_buf) = establish(OBS.0, OBS.1, d.port);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || observe(obs, obs_buf, seen, stop))
    };

    // Pre-encoded: P /32s in 10.0.0.0/8 with one attribute set, and their withdrawal.
    let nlri: Vec<Nlri> = (0..P)
        .map(|i| {
            let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i);
            IpNet::V4(Ipv4Net::new(a, 32).unwrap()).into()
        })
        .collect();
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath {
            segments: vec![AsSegment {
                kind: SegmentType::Sequence,
                asns: vec![INJ.1],
            }],
        }),
        next_hop: Some(Ipv4Addr::new(198, 18, 0, 2)),
        ..PathAttrs::default()
    };
    let mut enc = BytesMut::new();
    wire::encode_path_attrs(&attrs, &codec(), &mut enc);
    let (mut announce, mut withdraw): (Vec<Bytes>, Vec<Bytes>) = (Vec::new(), Vec::new());
    wire::pack_announce(
        &codec(),
        &enc,
        Family::IPV4_UNICAST,
        None,
        &nlri,
        &mut announce,
    );
    wire::pack_withdraw(&codec(), Family::IPV4_UNICAST, &nlri, &mut withdraw);
    let announce: Vec<u8> = announce.concat();
    let withdraw: Vec<u8> = withdraw.concat();

    let wait_seen = |want: usize, what: &str| {
        let t = Instant::now();
        loop {
            let n = seen.lock().unwrap().prefixes.len();
            if n == want {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < CYCLE_DEADLINE,
                "{what}: the observer holds {n} prefixes, want {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut rss = Vec::new();
    for cycle in 1..=CYCLES {
        inj.write_all(&announce).unwrap();
        let up = wait_seen(P as usize, &format!("cycle {cycle} announce"));
        inj.write_all(&withdraw).unwrap();
        let down = wait_seen(0, &format!("cycle {cycle} withdraw"));
        rss.push(d.rss_kib());
        eprintln!(
            "cycle {cycle}: observer had all {P} after {up:.1?}, none after {down:.1?}; podbgp RSS {} KiB",
            rss[cycle - 1]
        );
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "podbgp exited:\n{}",
            d.log()
        );
    }
    let (second, last) = (rss[1], rss[CYCLES - 1]);
    assert!(
        last <= second + second / 10 + 8 * 1024,
        "RSS grew from {second} KiB (cycle 2) to {last} KiB (cycle {CYCLES}) with a peer that \
         does not read: {rss:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let _ = observer.join();
    drop(slow);
}
