//! Sockets: listener, connector, and the per-connection reader and writer tasks.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::TaskMsg;
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
    task: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and starts accepting; accepted connections go to `tx`.
    pub(super) fn bind(addr: SocketAddr, tx: &mpsc::Sender<TaskMsg>) -> std::io::Result<Listener> {
        let listener = listen_socket(addr)?;
        let task = tokio::spawn(accept_loop(listener, tx.clone()));
        Ok(Listener { addr, task })
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes the socket (returns once it is closed). Connections already
    /// accepted are not affected.
    pub(super) async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Moves the listener to `want` (a configuration reload changed `listen`). The new socket is
/// bound before the old one is closed; when the old one is what is in the way (say
/// `0.0.0.0:179` → `198.18.0.1:179`), it is closed first and restored if the new address still
/// cannot be bound. A bind error is logged and the old listener kept.
pub(super) async fn rebind(
    current: &mut Option<Listener>,
    want: Option<SocketAddr>,
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
    let err = match Listener::bind(addr, tx) {
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
        match Listener::bind(addr, tx) {
            Ok(new) => {
                *current = Some(new);
                info!(%addr, old = %old_addr, "listening for BGP connections");
            }
            Err(e) => {
                warn!(%addr, error = %e, old = %old_addr,
                      "cannot listen on the new address; keeping the old listener");
                match Listener::bind(old_addr, tx) {
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

pub(super) async fn accept_loop(listener: TcpListener, tx: mpsc::Sender<TaskMsg>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let Ok(local) = stream.local_addr() else {
                    continue;
                };
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

pub(super) async fn connect(
    conn: ConnId,
    remote: SocketAddr,
    bind: Option<IpAddr>,
    tx: mpsc::Sender<TaskMsg>,
) {
    let attempt = async {
        let sock = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
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
