//! [`EtcdError`]: everything the etcd client can fail with, classified so the syncer can
//! decide between "re-list" ([`EtcdError::Compacted`]) and "reconnect with backoff"
//! (everything else).

use std::fmt;
use std::path::PathBuf;

use super::config::ConfigError;

/// An etcd client failure.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd configuration: {0}")]
    Config(#[from] ConfigError),

    #[error("reading the etcd {what} {}: {source}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// Building the channel or connecting to one endpoint failed (reported inside
    /// [`EtcdError::Connect`], which names the endpoint).
    #[error("connection failed: {}", Chain(.error))]
    Endpoint {
        endpoint: String,
        error: tonic::transport::Error,
    },

    /// The first request over TLS failed at the transport level (certificate alert or
    /// connection closed) while no client certificate was configured: the server most
    /// likely requires one (`--client-cert-auth`).
    #[error(
        "etcd dropped the TLS connection and no client certificate is configured; it \
         probably requires one (ETCD_CERT_FILE, ETCD_KEY_FILE): {error}"
    )]
    ClientCertRequired {
        endpoint: String,
        error: Box<EtcdError>,
    },

    #[error("could not reach any etcd endpoint: {}", ConnectAttempts(.attempts))]
    Connect { attempts: Vec<ConnectAttempt> },

    /// `Auth.Authenticate` was refused (wrong user or password, auth not enabled, ...).
    #[error("etcd authentication as {username:?} failed: {}", StatusText(.status))]
    Auth {
        username: String,
        status: tonic::Status,
    },

    /// The requested revision is older than etcd's compaction revision (`ErrCompacted`,
    /// gRPC OUT_OF_RANGE): re-list at the current revision.
    #[error("etcd {op}: revision {revision} has been compacted")]
    Compacted { op: &'static str, revision: i64 },

    /// The requested revision is newer than the store (etcd restored from an older backup?).
    #[error("etcd {op}: revision {revision} is in the future of the store")]
    FutureRevision { op: &'static str, revision: i64 },

    /// Any other gRPC failure of one operation.
    #[error("etcd {op} failed: {}", StatusText(.status))]
    Rpc {
        op: &'static str,
        status: tonic::Status,
    },

    /// etcd canceled a watch for a reason other than compaction (e.g. permission denied).
    #[error("etcd canceled the watch: {reason}")]
    WatchCanceled { reason: String },

    /// The watch response stream ended without an error.
    #[error("etcd closed the watch stream")]
    WatchClosed,

    /// A response that breaks the protocol (e.g. an event without its key-value).
    #[error("malformed etcd {op} response: {what}")]
    Malformed {
        op: &'static str,
        what: &'static str,
    },

    /// No answer in time.
    #[error("etcd {op}: no answer within {timeout:?}")]
    Timeout {
        op: &'static str,
        timeout: std::time::Duration,
    },
}

/// One endpoint that [`EtcdClient::connect`](super::EtcdClient::connect) tried.
#[derive(Debug)]
pub struct ConnectAttempt {
    pub endpoint: String,
    pub error: Box<EtcdError>,
}

struct ConnectAttempts<'a>(&'a [ConnectAttempt]);

impl fmt::Display for ConnectAttempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", a.endpoint, a.error)?;
        }
        Ok(())
    }
}

/// An error followed by its cause chain: tonic's transport errors display as just
/// "transport error" and keep the reason (refused, TLS alert, bad certificate) in sources.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.0.to_string();
        f.write_str(&first)?;
        write_causes(f, self.0.source(), first)
    }
}

/// A `tonic::Status` with its transport cause chain: tonic's own Display stops at
/// "transport error", which hides what went wrong (refused, TLS alert, ...).
struct StatusText<'a>(&'a tonic::Status);

impl fmt::Display for StatusText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(f, "{:?}", s.code())?;
        if !s.message().is_empty() {
            write!(f, ": {}", s.message())?;
        }
        write_causes(f, std::error::Error::source(s), s.message().to_string())
    }
}

/// Appends `: cause` for each error in the chain, skipping a cause whose text repeats the
/// previous one (tonic nests "transport error" in "transport error").
fn write_causes(
    f: &mut fmt::Formatter<'_>,
    mut source: Option<&(dyn std::error::Error + 'static)>,
    mut last: String,
) -> fmt::Result {
    while let Some(e) = source {
        let text = e.to_string();
        if text != last {
            write!(f, ": {text}")?;
            last = text;
        }
        source = e.source();
    }
    Ok(())
}

impl EtcdError {
    /// Maps a failed RPC: compaction and future-revision errors get their own variants.
    pub(crate) fn from_status(op: &'static str, revision: i64, status: tonic::Status) -> Self {
        if status.code() == tonic::Code::OutOfRange {
            if status
                .message()
                .contains("required revision has been compacted")
            {
                return EtcdError::Compacted { op, revision };
            }
            if status
                .message()
                .contains("required revision is a future revision")
            {
                return EtcdError::FutureRevision { op, revision };
            }
        }
        EtcdError::Rpc { op, status }
    }

    /// Whether re-listing from scratch (rather than reconnecting) is the cure.
    pub fn needs_relist(&self) -> bool {
        matches!(
            self,
            EtcdError::Compacted { .. } | EtcdError::FutureRevision { .. }
        )
    }
}

/// Whether a status means "authenticate again, then retry": etcd's expired or unknown
/// token, or a token issued before an auth store change.
pub(crate) fn is_stale_token(status: &tonic::Status) -> bool {
    let m = status.message();
    (status.code() == tonic::Code::Unauthenticated && m.contains("invalid auth token"))
        || m.contains("revision of auth store is old")
}
