//! The benchmark's own BGP clients: connect (or accept), OPEN/KEEPALIVE handshake, then a
//! reader task that drains or counts and a writer task that injects and keeps the session
//! alive. Deliberately minimal: no FSM, no hold timer of our own (the device's KEEPALIVEs are
//! read and ignored), and every failure is reported to the run as an [`Event::Failed`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use super::plan::{self, ASN, PrefixCounter};
use crate::wire::{
    self, Capability, Family, MAX_EXT_MESSAGE_LEN, MAX_MESSAGE_LEN, Message, Open, SessionCodec,
};

/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Index of a session in the run (injectors first, then monitors or sinks).
pub type SessionId = usize;

/// What sessions tell the run.
#[derive(Debug)]
pub enum Event {
    /// The session is usable (see [`ReadyOn`]).
    Ready(SessionId),
    /// Everything this session was to receive has arrived.
    RxDone(SessionId, Instant),
    /// Everything this session was to send is written.
    TxDone(SessionId, Instant),
    /// A later write (see [`Writes::later`]) starts now.
    Sent(SessionId, Instant),
    /// An observing receiver (see [`PrefixCounter::observe`]) read, at `at`, an UPDATE that
    /// withdrew `withdrawn` prefixes it held and announced again `announced` it had seen
    /// withdrawn.
    Seen {
        id: SessionId,
        at: Instant,
        withdrawn: u32,
        announced: u32,
    },
    Failed(String),
}

/// Counters of one session, read by the progress line and the final report.
#[derive(Debug, Default)]
pub struct Stats {
    pub rx_messages: AtomicU64,
    /// Announced prefixes received (distinct ones for counting receivers).
    pub rx_prefixes: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Withdrawn, unexpected and wrong-attribute prefixes seen by a counting receiver.
    pub withdrawn: AtomicU64,
    pub unexpected: AtomicU64,
    pub mismatched: AtomicU64,
    /// Announced prefixes received more than once.
    pub duplicates: AtomicU64,
}

/// Who we are on a session.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub name: &'static str,
    pub index: u32,
    pub router_id: Ipv4Addr,
    /// Hold time offered in our OPEN; KEEPALIVEs go out every third of it (none when 0).
    pub hold_time: u16,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.index + 1)
    }
}

/// Connects from `local` (bound before connecting), retrying while the device is not yet
/// listening.
pub async fn connect_from(
    local: Ipv4Addr,
    remote: SocketAddr,
    deadline: Instant,
) -> anyhow::Result<TcpStream> {
    loop {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(local.into(), 0))
            .with_context(|| format!("cannot bind {local}"))?;
        match sock.connect(remote).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("connect {local} -> {remote}")),
        }
    }
}

/// [`connect_from`] then [`handshake`], starting over while `deadline` has not passed when the
/// device closes or resets the connection or refuses the session: a device may accept
/// connections before it has read every neighbor from its configuration (GoBGP does).
pub async fn connect_and_handshake(
    local: Ipv4Addr,
    remote: SocketAddr,
    me: &Identity,
    deadline: Instant,
) -> anyhow::Result<(TcpStream, BytesMut)> {
    loop {
        let mut st = connect_from(local, remote, deadline).await?;
        let mut buf = BytesMut::with_capacity(256 * 1024);
        match handshake(&mut st, me, &mut buf).await {
            Ok(_) => return Ok((st, buf)),
            Err(e) if Instant::now() < deadline => {
                drop(st);
                note_retry(me, &e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One line on stderr per retried handshake (rare: only while a device starts up).
fn note_retry(me: &Identity, e: &anyhow::Error) {
    eprintln!("{me}: handshake failed ({e:#}); retrying");
}

fn our_open(me: &Identity) -> Bytes {
    let open = Message::Open(Open {
        version: 4,
        my_as: ASN as u16,
        hold_time: me.hold_time,
        bgp_id: me.router_id,
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(ASN),
            Capability::RouteRefresh,
        ],
    });
    let mut out = BytesMut::new();
    // An OPEN with three capabilities always encodes.
    let _ = wire::encode_message(&open, &SessionCodec::default(), &mut out);
    out.freeze()
}

/// Reads one whole message into `buf`'s front and returns its length.
async fn next_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<usize> {
    loop {
        if let Some(n) = wire::frame_len(buf, MAX_MESSAGE_LEN)? {
            return Ok(n);
        }
        buf.reserve(MAX_MESSAGE_LEN);
        if stream.read_buf(buf).await? == 0 {
            bail!("connection closed during the handshake");
        }
    }
}

/// OPEN → OPEN → KEEPALIVE → KEEPALIVE, the same from both ends (the device, passive, sends
/// its OPEN as soon as it accepts). Bytes received after the peer's KEEPALIVE stay in `buf`.
pub async fn handshake(
    stream: &mut TcpStream,
    me: &Identity,
    buf: &mut BytesMut,
) -> anyhow::Result<Open> {
    let run = async {
        stream.write_all(&our_open(me)).await?;
        let cx = SessionCodec::default();
        let n = next_frame(stream, buf).await?;
        let peer = match wire::decode_message(&buf[..n], &cx)? {
            Message::Open(o) => o,
            Message::Notification(n) => {
                bail!("NOTIFICATION {}/{} instead of OPEN", n.code, n.subcode)
            }
            m => bail!("expected OPEN, got {m:?}"),
        };
        buf.advance(n);
        anyhow::ensure!(peer.asn() == ASN, "peer AS {} (expected {ASN})", peer.asn());
        anyhow::ensure!(
            peer.capabilities
                .iter()
                .any(|c| matches!(c, Capability::FourOctetAs(_))),
            "peer did not offer 4-octet AS"
        );
        stream.write_all(&wire::keepalive()).await?;
        let n = next_frame(stream, buf).await?;
        match wire::decode_message(&buf[..n], &cx)? {
            Message::Keepalive => {}
            Message::Notification(n) => {
                bail!("NOTIFICATION {}/{} instead of KEEPALIVE", n.code, n.subcode)
            }
            m => bail!("expected KEEPALIVE, got {m:?}"),
        }
        buf.advance(n);
        Ok(peer)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| anyhow::anyhow!("handshake timed out"))?
        .with_context(|| format!("{me}: handshake"))
}

/// When a reader reports its session [`Event::Ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyOn {
    /// At once, without an event (calibration sinks, which report it themselves).
    Now,
    /// On the first End-of-RIB (calibration injectors: the sink sends one).
    EndOfRib,
    /// Once this many distinct probe prefixes arrived (reflected by the device from the
    /// other injectors; 0: at once). Every speaker reflects them, End-of-RIB or not, and
    /// only over Established sessions.
    Probes(u32),
    /// Once everything expected arrived (mesh nodes: the device's own blocks).
    Done,
}

/// What the reader does with UPDATEs.
pub enum Receive {
    /// Walk the NLRI field only and count prefixes (injectors: they only drain); done after
    /// `expect` announced prefixes (duplicates included). `plan` tells the probes apart.
    Drain { expect: u64, plan: plan::Plan },
    /// Decode every UPDATE and count distinct prefixes of the plan; done at `expect`.
    Count {
        counter: Box<PrefixCounter>,
        expect: u64,
    },
}

/// The reader task: frames everything, reports Ready as `ready_on` says, and RxDone once the
/// expected count is reached; then keeps draining. Probe prefixes are not counted.
#[allow(clippy::too_many_arguments)]
pub async fn read_loop(
    id: SessionId,
    me: Identity,
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    mut mode: Receive,
    ready_on: ReadyOn,
    stats: Arc<Stats>,
    events: mpsc::UnboundedSender<Event>,
) {
    let cx = plan::client_codec();
    let mut ready = ready_on == ReadyOn::Now;
    if ready_on == ReadyOn::Probes(0) {
        ready = true;
        let _ = events.send(Event::Ready(id));
    }
    let want_probes = match ready_on {
        ReadyOn::Probes(n) => Some(n),
        _ => None,
    };
    // Injectors' probes seen while waiting (counting receivers keep theirs in the counter).
    let mut probes = plan::ProbeSet::default();
    let mut done = false;
    let mut check_done = |mode: &Receive, stats: &Stats| {
        let (have, expect) = match mode {
            Receive::Drain { expect, .. } => (stats.rx_prefixes.load(Ordering::Relaxed), *expect),
            Receive::Count { counter, expect } => (counter.distinct, *expect),
        };
        if !done && expect > 0 && have >= expect {
            done = true;
            let _ = events.send(Event::RxDone(id, Instant::now()));
            if ready_on == ReadyOn::Done {
                let _ = events.send(Event::Ready(id));
            }
        }
    };
    // When the bytes being framed were read.
    let mut read_at = Instant::now();
    let fail = |msg: String| {
        let _ = events.send(Event::Failed(format!("{me}: {msg}")));
    };
    loop {
        loop {
            let n = match wire::frame_len(&buf, MAX_EXT_MESSAGE_LEN) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => return fail(format!("framing error from the device: {e}")),
            };
            if n > MAX_MESSAGE_LEN {
                return fail(format!(
                    "{n}-octet message although extended messages were not negotiated"
                ));
            }
            let frame = &buf[..n];
            stats.rx_messages.fetch_add(1, Ordering::Relaxed);
            match frame[18] {
                2 => match &mut mode {
                    // Until ready, decode in full to tell the probes from the plan's prefixes
                    // (little traffic then); after, only walk the NLRI field.
                    Receive::Drain { plan, .. } if !ready && want_probes.is_some() => {
                        match wire::decode_message(frame, &cx) {
                            Ok(Message::Update(u)) => {
                                let mut announced = 0;
                                for n in &u.nlri {
                                    match n.prefix {
                                        ipnet::IpNet::V4(p) if plan.probe_index(&p).is_some() => {
                                            // Not its own probe, should a device send it back.
                                            match plan.probe_index(&p) {
                                                Some(i) if i != me.index => probes.insert(i),
                                                _ => {}
                                            }
                                        }
                                        _ => announced += 1,
                                    }
                                }
                                stats.rx_prefixes.fetch_add(announced, Ordering::Relaxed);
                                if want_probes.is_some_and(|n| probes.len() >= n) {
                                    ready = true;
                                    let _ = events.send(Event::Ready(id));
                                }
                            }
                            Ok(m) => return fail(format!("expected UPDATE, decoded {m:?}")),
                            Err(e) => return fail(format!("bad UPDATE from the device: {e}")),
                        }
                    }
                    Receive::Drain { .. } => match plan::raw_count(frame) {
                        Some(rc) => {
                            if rc.end_of_rib && !ready && ready_on == ReadyOn::EndOfRib {
                                ready = true;
                                let _ = events.send(Event::Ready(id));
                            }
                            stats.rx_prefixes.fetch_add(rc.announced, Ordering::Relaxed);
                        }
                        None => return fail("malformed UPDATE".into()),
                    },
                    Receive::Count { counter, .. } => match wire::decode_message(frame, &cx) {
                        Ok(Message::Update(u)) => {
                            if u.end_of_rib().is_some() {
                                if !ready && ready_on == ReadyOn::EndOfRib {
                                    ready = true;
                                    let _ = events.send(Event::Ready(id));
                                }
                            } else {
                                let t = counter.update(&u);
                                if t.withdrawn + t.announced > 0 {
                                    let _ = events.send(Event::Seen {
                                        id,
                                        at: read_at,
                                        withdrawn: t.withdrawn,
                                        announced: t.announced,
                                    });
                                }
                                if !ready && want_probes.is_some_and(|n| counter.probes.len() >= n)
                                {
                                    ready = true;
                                    let _ = events.send(Event::Ready(id));
                                }
                                stats.rx_prefixes.store(counter.distinct, Ordering::Relaxed);
                                stats
                                    .duplicates
                                    .store(counter.duplicates(), Ordering::Relaxed);
                                stats
                                    .withdrawn
                                    .store(counter.spurious_withdrawals(), Ordering::Relaxed);
                                stats
                                    .unexpected
                                    .store(counter.unexpected, Ordering::Relaxed);
                                stats
                                    .mismatched
                                    .store(counter.mismatched, Ordering::Relaxed);
                            }
                        }
                        Ok(m) => return fail(format!("expected UPDATE, decoded {m:?}")),
                        Err(e) => return fail(format!("bad UPDATE from the device: {e}")),
                    },
                },
                3 => {
                    let msg = match wire::decode_message(frame, &cx) {
                        Ok(Message::Notification(n)) => {
                            format!("NOTIFICATION {}/{} from the device", n.code, n.subcode)
                        }
                        _ => "malformed NOTIFICATION from the device".into(),
                    };
                    return fail(msg);
                }
                _ => {}
            }
            buf.advance(n);
            check_done(&mode, &stats);
        }
        if buf.capacity() - buf.len() < MAX_EXT_MESSAGE_LEN {
            buf.reserve(256 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return fail("connection closed by the device".into()),
            Err(e) => return fail(format!("read: {e}")),
            Ok(_) => read_at = Instant::now(),
        }
    }
}

/// What a writer sends.
#[derive(Debug, Default)]
pub struct Writes {
    /// Written at once, before the start signal (the injectors' probe routes).
    pub probe: Option<Bytes>,
    /// Written after the start signal, then reported with [`Event::TxDone`].
    pub chunks: Vec<Bytes>,
    /// Written as they arrive, after the chunks, each announced by [`Event::Sent`] just
    /// before its write (churn waves).
    pub later: Option<mpsc::UnboundedReceiver<Bytes>>,
}

/// The writer task: writes the probe at once, waits for the start signal, writes the chunks,
/// reports TxDone, then sends a KEEPALIVE every hold/3 seconds and whatever `later` brings.
pub async fn write_loop(
    id: SessionId,
    me: Identity,
    mut wr: OwnedWriteHalf,
    writes: Writes,
    mut start: watch::Receiver<bool>,
    stats: Arc<Stats>,
    events: mpsc::UnboundedSender<Event>,
) {
    let fail = |e: std::io::Error| {
        let _ = events.send(Event::Failed(format!("{me}: write: {e}")));
    };
    let Writes {
        probe,
        chunks,
        mut later,
    } = writes;
    if let Some(p) = probe
        && let Err(e) = wr.write_all(&p).await
    {
        return fail(e);
    }
    if !chunks.is_empty() {
        if start.wait_for(|s| *s).await.is_err() {
            return;
        }
        for c in &chunks {
            if let Err(e) = wr.write_all(c).await {
                return fail(e);
            }
            stats.tx_bytes.fetch_add(c.len() as u64, Ordering::Relaxed);
        }
        let _ = events.send(Event::TxDone(id, Instant::now()));
    }
    // No KEEPALIVEs with hold time 0: a timer that never fires.
    let every = match me.hold_time {
        0 => Duration::from_secs(365 * 24 * 3600),
        h => Duration::from_secs(u64::from(h / 3).max(1)),
    };
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        let next = async {
            match later.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = keepalive.tick() => {
                if let Err(e) = wr.write_all(&wire::keepalive()).await {
                    return fail(e);
                }
            }
            b = next => match b {
                Some(b) => {
                    let _ = events.send(Event::Sent(id, Instant::now()));
                    if let Err(e) = wr.write_all(&b).await {
                        return fail(e);
                    }
                    stats.tx_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                None => later = None,
            },
        }
    }
}
