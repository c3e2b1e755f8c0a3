//! Sockets: listener, connector, and the per-connection reader and writer tasks.
//!
//! Transport protection (TCP MD5, GTSM) is applied here, from the [`TransportTable`]: on the
//! listener whenever the table changes ([`Listener::apply`]), on each outgoing socket before
//! `connect`, and on each accepted socket before it is handed to the speaker. Inbound
//! connections that [`AcceptGuard`] refuses are closed in the accept task (see `guard.rs`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::TaskMsg;
use super::guard::{AcceptGuard, PeerTransport, Refusal, TransportTable};
use super::sockopt::{self, SockFamily};
use crate::config::Md5Key;
use crate::session::ConnId;
use crate::speaker::Input;
use crate::wire::{self, MAX_EXT_MESSAGE_LEN};

/// Time allowed for a TCP handshake before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening socket with SO_REUSEADDR; IPv6 wildcard sockets also accept IPv4.
pub fn listen_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(128)
}

/// The listening socket's accept task.
#[derive(Debug)]
pub(super) struct Listener {
    addr: SocketAddr,
    options: ListenerOptions,
    task: JoinHandle<()>,
    /// What the accept task admits (and how it sets up accepted sockets).
    table: watch::Sender<Arc<TransportTable>>,
}

/// The listening socket and the protection options in force on it.
#[derive(Debug)]
struct ListenerOptions {
    addr: SocketAddr,
    socket: Arc<TcpListener>,
    /// MD5 keys in force.
    keys: BTreeMap<IpAddr, Md5Key>,
    /// GTSM rules in force (the socket filter and the TTL).
    gtsm: Vec<(IpAddr, u8)>,
}

impl Listener {
    /// Binds `addr`, sets the MD5 keys and GTSM filter of `table`, and starts accepting;
    /// accepted connections go to `tx`.
    pub(super) fn bind(
        addr: SocketAddr,
        table: &Arc<TransportTable>,
        tx: &mpsc::Sender<TaskMsg>,
    ) -> std::io::Result<Listener> {
        let socket = Arc::new(listen_socket(addr)?);
        let mut options = ListenerOptions {
            addr,
            socket: socket.clone(),
            keys: BTreeMap::new(),
            gtsm: Vec::new(),
        };
        // In place before the first accept.
        options.apply(table);
        let (table_tx, table_rx) = watch::channel(table.clone());
        let task = tokio::spawn(accept_loop(socket, table_rx, tx.clone()));
        Ok(Listener {
            addr,
            options,
            task,
            table: table_tx,
        })
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies a new table: socket options first, then the accept task's copy.
    pub(super) fn apply(&mut self, table: &Arc<TransportTable>) {
        self.options.apply(table);
        self.table.send_replace(table.clone());
    }

    /// Stops accepting and closes the socket (returns once it is closed). Connections already
    /// accepted are not affected.
    pub(super) async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
        // The accept task's handle on the socket is gone; this is the last one.
        drop(self.options);
    }
}

impl ListenerOptions {
    /// Brings the socket's MD5 keys and GTSM filter in line with `table` (only what changed is
    /// touched). A failure is logged with the peer's address; that peer's inbound connections
    /// then fail (its signed SYNs are dropped).
    fn apply(&mut self, table: &TransportTable) {
        use std::os::fd::AsFd;
        let fd = self.socket.as_fd();
        let family = SockFamily::of(self.addr.ip());
        let want = table.md5_keys();
        for peer in self.keys.keys().filter(|a| !want.contains_key(a)) {
            if let Err(e) = sockopt::set_md5(fd, family, *peer, None) {
                warn!(%peer, error = %e, "cannot remove the TCP MD5 key from the listener");
            }
        }
        for (peer, key) in &want {
            if self.keys.get(peer) == Some(key) {
                continue;
            }
            if family == SockFamily::V4 && peer.is_ipv6() {
                // An IPv4 listener never sees this peer.
                continue;
            }
            match sockopt::set_md5(fd, family, *peer, Some(key)) {
                Ok(()) => debug!(%peer, listen = %self.addr, "TCP MD5 key set on the listener"),
                Err(e) => error!(%peer, listen = %self.addr, error = %e,
                                 "cannot set the TCP MD5 key on the listener; connections from this peer will fail"),
            }
        }
        self.keys = want;
        let rules = table.gtsm_rules();
        if rules == self.gtsm {
            return;
        }
        let ttl = (!rules.is_empty()).then_some(255);
        let filter = if rules.is_empty() {
            Some(None)
        } else {
            sockopt::gtsm_filter(&rules).map(Some)
        };
        let result = match &filter {
            Some(prog) => sockopt::set_filter(&*self.socket, prog.as_deref()),
            None => Ok(()),
        }
        .and_then(|()| sockopt::set_send_ttl(fd, family, ttl));
        match (filter, result) {
            (Some(_), Ok(())) => {
                debug!(listen = %self.addr, peers = rules.len(), "GTSM filter set on the listener")
            }
            (None, _) => warn!(listen = %self.addr, peers = rules.len(),
                "too many GTSM peers for one socket filter; inbound GTSM is enforced from the accepted socket on"),
            (_, Err(e)) => error!(listen = %self.addr, error = %e,
                "cannot set the GTSM filter on the listener; inbound GTSM is enforced from the accepted socket on"),
        }
        self.gtsm = rules;
    }
}

/// Moves the listener to `want` (a configuration reload changed `listen`). The new socket is
/// bound before the old one is closed; when the old one is what is in the way (say
/// `0.0.0.0:179` → `198.18.0.1:179`), it is closed first and restored if the new address still
/// cannot be bound. A bind error is logged and the old listener kept.
pub(super) async fn rebind(
    current: &mut Option<Listener>,
    want: Option<SocketAddr>,
    table: &Arc<TransportTable>,
    tx: &mpsc::Sender<TaskMsg>,
) {
    let Some(addr) = want else {
        if let Some(old) = current.take() {
            let old_addr = old.addr();
            old.close().await;
            info!(addr = %old_addr, "stopped listening for BGP connections");
        }
        return;
    };
    let err = match Listener::bind(addr, table, tx) {
        Ok(new) => {
            if let Some(old) = current.replace(new) {
                let old_addr = old.addr();
                old.close().await;
                info!(addr = %old_addr, "stopped listening for BGP connections");
            }
            info!(%addr, "listening for BGP connections");
            return;
        }
        Err(e) => e,
    };
    if err.kind() == std::io::ErrorKind::AddrInUse
        && let Some(old) = current.take()
    {
        let old_addr = old.addr();
        old.close().await;
        match Listener::bind(addr, table, tx) {
            Ok(new) => {
                *current = Some(new);
                info!(%addr, old = %old_addr, "listening for BGP connections");
            }
            Err(e) => {
                warn!(%addr, error = %e, old = %old_addr,
                      "cannot listen on the new address; keeping the old listener");
                match Listener::bind(old_addr, table, tx) {
                    Ok(l) => *current = Some(l),
                    Err(e) => {
                        error!(addr = %old_addr, error = %e, "cannot restore the old listener")
                    }
                }
            }
        }
        return;
    }
    warn!(%addr, error = %err, old = ?current.as_ref().map(Listener::addr),
          "cannot listen on the new address; keeping the old listener");
}

pub(super) async fn accept_loop(
    listener: Arc<TcpListener>,
    table: watch::Receiver<Arc<TransportTable>>,
    tx: mpsc::Sender<TaskMsg>,
) {
    let mut guard = AcceptGuard::default();
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let now = Instant::now();
                let t = table.borrow().clone();
                let peer = match guard.admit(&t, remote.ip(), now) {
                    Ok(p) => p,
                    Err(why) => {
                        // Closed here: no session, no reader or writer task.
                        drop(stream);
                        if let Some(suppressed) = guard.should_log(remote.ip(), now) {
                            match &why {
                                Refusal::UnknownPeer => {
                                    info!(%remote, suppressed, "connection refused: {why}")
                                }
                                _ => warn!(%remote, suppressed, "connection refused: {why}"),
                            }
                        }
                        continue;
                    }
                };
                let Ok(local) = stream.local_addr() else {
                    continue;
                };
                if let Err(e) = accepted_options(&stream, local, peer) {
                    warn!(%remote, error = %e, "cannot set GTSM options on the accepted connection; closed");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                if tx
                    .send(TaskMsg::Accepted {
                        stream,
                        remote,
                        local,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// GTSM on an accepted socket: TTL 255 and the minimum TTL for a GTSM peer (the listener's
/// filter already dropped earlier low-TTL segments); the default TTL for any other peer (the
/// listener sends with 255 while some peer uses GTSM).
fn accepted_options(
    stream: &TcpStream,
    local: SocketAddr,
    peer: &PeerTransport,
) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let family = SockFamily::of(local.ip());
    match peer.hops {
        Some(h) => sockopt::set_gtsm(stream.as_fd(), family, h.get()),
        None => sockopt::set_send_ttl(stream.as_fd(), family, None),
    }
}

/// Opens a connection to `remote` with `transport`'s MD5 key and GTSM set before `connect`.
/// A peer whose password cannot be read is failed at once with the reason (no socket).
pub(super) async fn connect(
    conn: ConnId,
    remote: SocketAddr,
    bind: Option<IpAddr>,
    transport: PeerTransport,
    tx: mpsc::Sender<TaskMsg>,
) {
    if let Some(u) = &transport.unavailable {
        let _ = tx
            .send(TaskMsg::ConnectFailed {
                conn,
                reason: u.to_string(),
            })
            .await;
        return;
    }
    let attempt = async {
        use std::os::fd::AsFd;
        let sock = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        let family = SockFamily::of(remote.ip());
        if let Some(k) = &transport.md5 {
            sockopt::set_md5(sock.as_fd(), family, remote.ip(), Some(k))?;
        }
        if let Some(h) = transport.hops {
            sockopt::set_gtsm(sock.as_fd(), family, h.get())?;
        }
        if let Some(ip) = bind {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = sock.connect(remote).await?;
        stream.set_nodelay(true)?;
        Ok::<TcpStream, std::io::Error>(stream)
    };
    let msg = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(stream)) => TaskMsg::Connected { conn, stream },
        Ok(Err(e)) => TaskMsg::ConnectFailed {
            conn,
            reason: e.to_string(),
        },
        Err(_) => TaskMsg::ConnectFailed {
            conn,
            reason: "connection timed out".into(),
        },
    };
    let _ = tx.send(msg).await;
}

/// The loop's handle on one connection.
#[derive(Debug)]
pub(super) struct ConnHandle {
    tx: mpsc::UnboundedSender<Bytes>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl ConnHandle {
    pub(super) fn spawn(
        conn: ConnId,
        stream: TcpStream,
        events: mpsc::Sender<TaskMsg>,
    ) -> ConnHandle {
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(conn, rd, events.clone()));
        let writer = tokio::spawn(write_loop(conn, wr, rx, events));
        ConnHandle { tx, reader, writer }
    }

    pub(super) fn send(&self, bytes: Bytes) {
        let _ = self.tx.send(bytes);
    }

    /// Stops reading, lets the writer flush what was queued, then closes.
    pub(super) fn close(self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.reader.abort();
        drop(self.tx);
        let writer = self.writer;
        async move {
            let _ = writer.await;
        }
    }
}

async fn read_loop(
    conn: ConnId,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::Sender<TaskMsg>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        // Hand over every whole message in the buffer.
        loop {
            match wire::frame_len(&buf, MAX_EXT_MESSAGE_LEN) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n).freeze();
                    if tx
                        .send(TaskMsg::Input(Input::Frame { conn, frame }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    // Never resynchronise after a header error (RFC 4271 §6.1).
                    let _ = tx
                        .send(TaskMsg::Input(Input::FrameError { conn, error }))
                        .await;
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(TaskMsg::Input(Input::Closed { conn })).await;
                return;
            }
            Ok(_) => {}
        }
    }
}

async fn write_loop(
    conn: ConnId,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    tx: mpsc::Sender<TaskMsg>,
) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        // Coalesce what is queued into one write.
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(b) => batch.extend_from_slice(&b),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let mut data = batch.split().freeze();
        while data.has_remaining() {
            match wr.write(&data).await {
                Ok(0) | Err(_) => {
                    debug!(?conn, "write failed; closing");
                    let _ = tx.send(TaskMsg::Input(Input::Closed { conn })).await;
                    return;
                }
                Ok(k) => data.advance(k),
            }
        }
        if tx
            .send(TaskMsg::Input(Input::Sent { conn, bytes: n }))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    //! The listener's protections against real sockets on loopback (no namespace needed).
    use std::os::fd::AsFd;

    use super::super::guard;
    use super::*;
    use crate::config::parse_yaml;

    fn table(neighbors: &str) -> Arc<TransportTable> {
        let cfg = parse_yaml(&format!(
            "local_as: 1\nrouter_id: 198.18.0.1\nneighbors:\n{neighbors}"
        ))
        .unwrap();
        Arc::new(TransportTable::from_config(&cfg))
    }

    async fn listener(t: &Arc<TransportTable>) -> (Listener, SocketAddr, mpsc::Receiver<TaskMsg>) {
        listener_on(t, "127.0.0.1:0").await
    }

    async fn listener_on(
        t: &Arc<TransportTable>,
        at: &str,
    ) -> (Listener, SocketAddr, mpsc::Receiver<TaskMsg>) {
        let (tx, rx) = mpsc::channel(64);
        let l = Listener::bind(at.parse().unwrap(), t, &tx).unwrap();
        let addr = l.options.socket.local_addr().unwrap();
        (l, addr, rx)
    }

    /// Connects with optional key and TTL; `Err` after one second without an answer.
    async fn try_connect(
        to: SocketAddr,
        key: Option<&str>,
        ttl: Option<u8>,
    ) -> std::io::Result<TcpStream> {
        let family = SockFamily::of(to.ip());
        let sock = match family {
            SockFamily::V4 => TcpSocket::new_v4()?,
            SockFamily::V6 => TcpSocket::new_v6()?,
        };
        if let Some(k) = key {
            let k = Md5Key::new(k).unwrap();
            sockopt::set_md5(sock.as_fd(), family, to.ip(), Some(&k))?;
        }
        sockopt::set_send_ttl(sock.as_fd(), family, ttl)?;
        tokio::time::timeout(Duration::from_secs(1), sock.connect(to))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    /// Connections that reach the loop within `wait` (kept open while held).
    async fn accepted_conns(rx: &mut mpsc::Receiver<TaskMsg>, wait: Duration) -> Vec<TaskMsg> {
        let mut v = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(wait, rx.recv()).await {
            assert!(matches!(m, TaskMsg::Accepted { .. }), "{m:?}");
            v.push(m);
        }
        v
    }

    async fn accepted(rx: &mut mpsc::Receiver<TaskMsg>, wait: Duration) -> usize {
        accepted_conns(rx, wait).await.len()
    }

    /// Reads until EOF or error; `true` when the peer closed within a second.
    async fn closed_by_peer(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn unknown_sources_are_closed_without_a_session() {
        let t = table("  - {address: 198.18.0.2, remote_as: 2}\n");
        let (l, addr, mut rx) = listener(&t).await;
        let mut s = try_connect(addr, None, None).await.unwrap();
        assert!(closed_by_peer(&mut s).await);
        assert_eq!(accepted(&mut rx, Duration::from_millis(200)).await, 0);
        l.close().await;
    }

    #[tokio::test]
    async fn accept_rate_is_bounded_per_source() {
        let t = table("  - {address: 127.0.0.1, remote_as: 2}\n");
        let (l, addr, mut rx) = listener(&t).await;
        let total = guard::ACCEPT_BURST as usize + 20;
        let start = Instant::now();
        let mut streams = Vec::new();
        for _ in 0..total {
            streams.push(try_connect(addr, None, None).await.unwrap());
        }
        // Tokens earned while connecting (a slow machine earns a few).
        let earned = (start.elapsed().as_nanos() / guard::ACCEPT_REFILL.as_nanos()) as usize + 1;
        let held = accepted_conns(&mut rx, Duration::from_millis(300)).await;
        let n = held.len();
        assert!(
            n >= guard::ACCEPT_BURST as usize && n <= guard::ACCEPT_BURST as usize + earned,
            "{n} of {total} accepted"
        );
        // The excess ones were closed.
        let closed = futures::future::join_all(streams.iter_mut().map(closed_by_peer)).await;
        assert_eq!(closed.iter().filter(|c| **c).count(), total - n);
        l.close().await;
    }

    #[tokio::test]
    async fn md5_key_on_the_listener() {
        let t = table("  - {address: 127.0.0.1, remote_as: 2, password: right}\n");
        let (mut l, addr, mut rx) = listener(&t).await;
        // Without a key or with the wrong one the SYN is dropped: no answer at all.
        assert!(try_connect(addr, None, None).await.is_err());
        assert!(try_connect(addr, Some("wrong"), None).await.is_err());
        assert_eq!(accepted(&mut rx, Duration::from_millis(100)).await, 0);
        let _s = try_connect(addr, Some("right"), None).await.unwrap();
        assert_eq!(accepted(&mut rx, Duration::from_millis(300)).await, 1);
        // Live change: the key is removed from the listener.
        l.apply(&table("  - {address: 127.0.0.1, remote_as: 2}\n"));
        assert!(try_connect(addr, Some("right"), None).await.is_err());
        let _s = try_connect(addr, None, None).await.unwrap();
        assert_eq!(accepted(&mut rx, Duration::from_millis(300)).await, 1);
        l.close().await;
    }

    #[tokio::test]
    async fn gtsm_filter_on_the_listener() {
        let t = table("  - {address: 127.0.0.1, remote_as: 2, ttl_security: 1}\n");
        let (mut l, addr, mut rx) = listener(&t).await;
        // Sent with the default TTL (64): below 255, dropped from the SYN on.
        assert!(try_connect(addr, None, None).await.is_err());
        assert!(try_connect(addr, None, Some(254)).await.is_err());
        let _s = try_connect(addr, None, Some(255)).await.unwrap();
        assert_eq!(accepted(&mut rx, Duration::from_millis(300)).await, 1);
        // Live change: GTSM off, any TTL passes.
        l.apply(&table("  - {address: 127.0.0.1, remote_as: 2}\n"));
        let _s = try_connect(addr, None, Some(64)).await.unwrap();
        assert_eq!(accepted(&mut rx, Duration::from_millis(300)).await, 1);
        l.close().await;
    }

    /// An IPv6 wildcard listener (what a dual-stack Calico node binds) carries IPv4 peers as
    /// v4-mapped connections: their keys and GTSM rules are IPv4 ones.
    #[tokio::test]
    async fn ipv6_wildcard_listener_protects_both_families() {
        let t = table(
            "  - {address: 127.0.0.1, remote_as: 2, password: v4pw, ttl_security: 1}\n\
             \x20 - {address: \"::1\", remote_as: 3, password: v6pw, ttl_security: 1}\n",
        );
        let (l, addr, mut rx) = listener_on(&t, "[::]:0").await;
        let v4 = SocketAddr::new("127.0.0.1".parse().unwrap(), addr.port());
        let v6 = SocketAddr::new("::1".parse().unwrap(), addr.port());
        assert!(try_connect(v4, Some("v6pw"), Some(255)).await.is_err());
        assert!(try_connect(v4, Some("v4pw"), Some(64)).await.is_err());
        assert!(try_connect(v6, Some("v4pw"), Some(255)).await.is_err());
        assert!(try_connect(v6, Some("v6pw"), Some(64)).await.is_err());
        assert_eq!(accepted(&mut rx, Duration::from_millis(100)).await, 0);
        let _a = try_connect(v4, Some("v4pw"), Some(255)).await.unwrap();
        let _b = try_connect(v6, Some("v6pw"), Some(255)).await.unwrap();
        assert_eq!(accepted(&mut rx, Duration::from_millis(300)).await, 2);
        l.close().await;
    }
}
