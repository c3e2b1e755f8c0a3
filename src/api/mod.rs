//! The operator gRPC API (`podbgp.v1.SpeakerService`): a translator between protobuf and the
//! speaker's [`Query`]/[`Command`]/[`View`] types (ARCHITECTURE §11.9, style rule 11).
//!
//! ```text
//!  podbgp status ──gRPC──► service.rs ──convert.rs──► ApiRequest ──mpsc──► driver (owns Speaker)
//!                          (tonic)                     ◄──oneshot── Result<View, QueryError>
//!  podbgp watch  ◄─stream─ service.rs ◄──────────────── broadcast<SpeakerEvent> ◄── driver
//! ```
//!
//! * This module never holds speaker state: every answer comes from the driver over the
//!   [`ApiHandle`] channels. Protobuf types stop in [`convert`]; all error → `tonic::Status`
//!   mapping is the one `From<ServiceError> for Status` there.
//! * The API listens on a Unix socket by default ([`DEFAULT_SOCKET`]), created with mode 0600
//!   inside a parent directory created with mode 0700, so only root (the daemon's user) can
//!   talk to it. A TCP address is accepted for labs and tests.
//! * Shutdown: when the `shutdown` future of [`serve`] resolves, open `WatchEvents` streams are
//!   ended first (otherwise the graceful shutdown would wait on them forever), then in-flight
//!   calls finish and the socket file is removed.

pub mod convert;
mod service;
mod socket;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::speaker::{Command, Query, QueryError, SpeakerEvent, View};

/// Generated protobuf/gRPC code for `podbgp.v1` (from `proto/podbgp/v1/speaker.proto`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("podbgp.v1");
}

/// Where the daemon's API listens by default.
pub const DEFAULT_SOCKET: &str = "/run/podbgp/podbgp.sock";

/// One request from the API to the driver. The driver answers through `reply`; dropping
/// `reply` unanswered makes the RPC fail with `UNAVAILABLE`.
#[derive(Debug)]
pub enum ApiRequest {
    Query {
        query: Query,
        reply: oneshot::Sender<Result<View, QueryError>>,
    },
    Command {
        command: Command,
        reply: oneshot::Sender<Result<(), QueryError>>,
    },
}

/// Maps the core's monotonic `Instant`s onto wall-clock time: a pair of readings taken at the
/// same moment by the driver (the only clock reader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub instant: Instant,
    pub system: SystemTime,
}

impl Clock {
    /// Reads both clocks now. For the driver (and tests); the API itself never calls it.
    pub fn now() -> Self {
        Clock {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    /// The wall-clock time of a core `Instant`.
    pub fn to_system(&self, at: Instant) -> SystemTime {
        if at >= self.instant {
            self.system + (at - self.instant)
        } else {
            self.system
                .checked_sub(self.instant - at)
                .unwrap_or(UNIX_EPOCH)
        }
    }

    /// The Unix time (whole seconds, may be negative for pre-1970 clocks) of a core `Instant`.
    pub fn to_unix(&self, at: Instant) -> i64 {
        unix_seconds(self.to_system(at))
    }
}

/// Whole Unix seconds of a wall-clock time (negative before 1970).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Unix milliseconds of a wall-clock time (negative before 1970).
pub fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// What the API needs from the daemon: the request channel to the driver, the event feed,
/// the effective configuration and the clock anchor.
#[derive(Clone, Debug)]
pub struct ApiHandle {
    /// Queries and commands for the driver.
    pub requests: mpsc::Sender<ApiRequest>,
    /// Speaker events; each `WatchEvents` call subscribes.
    pub events: broadcast::Sender<SpeakerEvent>,
    /// The effective configuration as YAML (`GetConfig`). The driver keeps the sender and
    /// updates it when the configuration changes; a receiver from a dropped sender keeps
    /// serving the last value.
    pub config_yaml: watch::Receiver<String>,
    /// Converts the `Instant`s in views to wall-clock time.
    pub clock: Clock,
}

/// Where the API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiListen {
    /// A Unix socket path (the default, [`DEFAULT_SOCKET`]).
    Unix(PathBuf),
    /// A TCP address (labs, tests). No authentication: bind to loopback.
    Tcp(SocketAddr),
}

impl Default for ApiListen {
    fn default() -> Self {
        ApiListen::Unix(PathBuf::from(DEFAULT_SOCKET))
    }
}

impl std::fmt::Display for ApiListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiListen::Unix(p) => write!(f, "unix:{}", p.display()),
            ApiListen::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl std::str::FromStr for ApiListen {
    type Err = std::convert::Infallible;

    /// `host:port` / `[v6]:port` (or `tcp://…`) → TCP; anything else is a socket path
    /// (an optional `unix:` prefix is stripped).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let tcp = s.strip_prefix("tcp://").unwrap_or(s);
        if let Ok(addr) = tcp.parse::<SocketAddr>() {
            return Ok(ApiListen::Tcp(addr));
        }
        let path = s.strip_prefix("unix:").unwrap_or(s);
        Ok(ApiListen::Unix(PathBuf::from(path)))
    }
}

/// Why the API server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("API TLS: {0}")]
    Tls(String),
    #[error("cannot create the API socket directory {path}: {source}")]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another podbgp daemon already serves the API socket {0}")]
    SocketInUse(PathBuf),
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("cannot remove the stale API socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind the API socket {path}: {source}")]
    BindUnix {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set mode 0600 on the API socket {path}: {source}")]
    Permissions {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind the API address {addr}: {source}")]
    BindTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("API server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serve the gRPC API until `shutdown` resolves.
///
/// `listen`: a Unix socket path (created with mode 0600, parent directory created with mode
/// 0700 if missing, a stale socket file removed first; an error if a live daemon answers on
/// it) or a TCP address. The socket file is removed again on return.
pub async fn serve(
    listen: ApiListen,
    handle: ApiHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    serve_with_tls(listen, None, handle, shutdown).await
}

/// TLS for the TCP API listener: the server's certificate chain and key (PEM), and optionally
/// a CA whose certificates clients must present (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl ApiTls {
    /// Checks, before anything starts, that TLS can be served on `listen` with these files.
    pub fn check(&self, listen: &ApiListen) -> Result<(), ApiError> {
        if matches!(listen, ApiListen::Unix(_)) {
            return Err(ApiError::Tls(
                "TLS needs a TCP API listener (--api-listen tcp://ADDR:PORT)".into(),
            ));
        }
        self.server_config().map(|_| ())
    }

    fn server_config(&self) -> Result<tonic::transport::ServerTlsConfig, ApiError> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p)
                .map_err(|e| ApiError::Tls(format!("cannot read the {what} {}: {e}", p.display())))
        };
        let identity = tonic::transport::Identity::from_pem(
            read(&self.cert, "certificate (--api-tls-cert)")?,
            read(&self.key, "key (--api-tls-key)")?,
        );
        let mut cfg = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            cfg = cfg.client_ca_root(tonic::transport::Certificate::from_pem(read(
                ca,
                "client CA (--api-tls-client-ca)",
            )?));
        }
        Ok(cfg)
    }
}

/// [`serve`], with TLS on a TCP listener when `tls` is given (a Unix socket refuses it: its
/// file mode is the access control).
pub async fn serve_with_tls(
    listen: ApiListen,
    tls: Option<ApiTls>,
    handle: ApiHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let svc = proto::speaker_service_server::SpeakerServiceServer::new(service::SpeakerApi::new(
        handle, stop_rx,
    ));
    // End the watch streams first: tonic's graceful shutdown waits for open streams.
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        if matches!(listen, ApiListen::Unix(_)) {
            return Err(ApiError::Tls(
                "TLS needs a TCP API listener (--api-listen tcp://ADDR:PORT)".into(),
            ));
        }
        builder = builder
            .tls_config(tls.server_config()?)
            .map_err(|e| ApiError::Tls(e.to_string()))?;
    }
    let router = builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(svc);

    match listen {
        ApiListen::Unix(path) => {
            let listener = socket::bind_unix(&path).await?;
            tracing::info!(socket = %path.display(), "API listening");
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let res = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
            socket::remove_socket(&path);
            res?;
        }
        ApiListen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ApiError::BindTcp { addr, source })?;
            let local = listener.local_addr().unwrap_or(addr);
            tracing::info!(addr = %local, tls = tls.is_some(), "API listening");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
    }
    Ok(())
}
