//! The daemon's optional HTTP endpoint (`podbgp run --metrics-listen ADDR:PORT`, off by
//! default): Prometheus metrics and the Kubernetes probes, on one listener.
//!
//! | path | answer |
//! |------|--------|
//! | `/metrics` | the Prometheus text format ([`render`]), 503 when the speaker does not answer |
//! | `/livez` | 200 when the speaker answers within [`PROBE_TIMEOUT`], else 503 |
//! | `/readyz[?threshold=SECONDS]` | 200 when ready, else 503 ([`crate::health::readiness`], threshold default 30 s) |
//!
//! `/livez` and `/readyz` give the same verdicts, with the same one-line reasons, as `podbgp
//! health --live` / `--ready [--threshold N]` (both apply [`crate::health`]), so an `httpGet`
//! probe and an `exec` probe are interchangeable.
//!
//! Like the gRPC API this is a translator with no state of its own: each request asks the
//! driver for the speaker's views over the API request channel ([`ApiRequest`]) and the
//! datastore follower's counters over a watch channel, at scrape time.
//!
//! The endpoint has no authentication: bind it to an address only trusted scrapers reach
//! (calico/node runs on the host network; a node address or 127.0.0.1 plus the kubelet's
//! probes). At most [`MAX_CONNECTIONS`] requests are served at once; more are dropped.

mod http;
pub mod render;
pub mod text;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::api::{ApiRequest, Clock};
use crate::datastore::FollowerStats;
use crate::health::{DEFAULT_READY_THRESHOLD, PROBE_TIMEOUT, PeerHealth, readiness};
use crate::speaker::{PeerView, Query, SpeakerView, View};

use http::{Method, Request, Response};

/// Requests served at the same time; further connections are closed unanswered.
pub const MAX_CONNECTIONS: usize = 32;

/// What the endpoint reads from the daemon.
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    /// The driver's API request channel (the same one the gRPC API uses).
    pub requests: mpsc::Sender<ApiRequest>,
    /// The datastore follower's counters; `None` without a datastore.
    pub datastore: Option<watch::Receiver<FollowerStats>>,
    /// Converts the speaker's start `Instant` to Unix time.
    pub clock: Clock,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the metrics address {addr}: {source}")]
pub struct MetricsError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A bound, not yet serving, endpoint: binding first makes a bad address fail at start.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError { addr, source })?;
        Ok(MetricsServer { listener })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, handle: MetricsHandle, shutdown: impl Future<Output = ()>) {
        if let Some(addr) = self.local_addr() {
            info!(%addr, "metrics and health probes listening (/metrics, /livez, /readyz)");
        }
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let handle = Arc::new(handle);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let Ok(permit) = limit.clone().try_acquire_owned() else {
                            debug!(%remote, "metrics: too many connections; closing one");
                            continue;
                        };
                        let handle = handle.clone();
                        tokio::spawn(async move {
                            connection(stream, &handle).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin.
                        warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }
}

async fn connection(mut stream: TcpStream, handle: &MetricsHandle) {
    let (resp, head_only) = match http::read_request(&mut stream).await {
        Ok(req) => (respond(handle, &req).await, req.method == Method::Head),
        Err(resp) => (resp, false),
    };
    http::write_response(&mut stream, &resp, head_only).await;
}

async fn respond(handle: &MetricsHandle, req: &Request) -> Response {
    match req.path.as_str() {
        "/metrics" => match scrape(handle).await {
            Ok(text) => Response {
                status: 200,
                content_type: text::CONTENT_TYPE,
                body: text,
            },
            Err(why) => Response::text(503, format!("podbgp metrics unavailable: {why}")),
        },
        "/livez" => match live(handle).await {
            Ok(reason) => Response::text(200, reason),
            Err(reason) => Response::text(503, reason),
        },
        "/readyz" => {
            let threshold = match req.param("threshold") {
                None => DEFAULT_READY_THRESHOLD,
                Some(s) => match s.parse::<u64>() {
                    Ok(secs) => Duration::from_secs(secs),
                    Err(_) => {
                        return Response::text(400, format!("bad threshold {s:?}: seconds"));
                    }
                },
            };
            match ready(handle, threshold).await {
                Ok(reason) => Response::text(200, reason),
                Err(reason) => Response::text(503, reason),
            }
        }
        "/" => Response::text(200, "podbgp: /metrics /livez /readyz"),
        _ => Response::text(404, "not found; try /metrics, /livez or /readyz"),
    }
}

/// One query to the driver, bounded by [`PROBE_TIMEOUT`].
async fn ask(handle: &MetricsHandle, query: Query) -> Result<View, String> {
    let (reply, rx) = oneshot::channel();
    let asked = async {
        handle
            .requests
            .send(ApiRequest::Query { query, reply })
            .await
            .map_err(|_| "the speaker is not running".to_string())?;
        match rx.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the speaker is not running".to_string()),
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, asked)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the speaker did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ))
        })
}

async fn speaker_view(handle: &MetricsHandle) -> Result<SpeakerView, String> {
    match ask(handle, Query::Speaker).await? {
        View::Speaker(v) => Ok(v),
        _ => Err("unexpected answer to a speaker query".to_string()),
    }
}

async fn peer_views(handle: &MetricsHandle) -> Result<Vec<PeerView>, String> {
    match ask(handle, Query::Peers).await? {
        View::Peers(v) => Ok(v),
        _ => Err("unexpected answer to a peers query".to_string()),
    }
}

async fn scrape(handle: &MetricsHandle) -> Result<String, String> {
    let speaker = speaker_view(handle).await?;
    let peers = peer_views(handle).await?;
    let datastore = handle.datastore.as_ref().map(|rx| rx.borrow().clone());
    Ok(render::render(&render::Snapshot {
        speaker: &speaker,
        peers: &peers,
        datastore: datastore.as_ref(),
        started_unix: handle.clock.to_unix(speaker.started),
    }))
}

/// `podbgp health --live` over HTTP.
async fn live(handle: &MetricsHandle) -> Result<String, String> {
    let v = speaker_view(handle)
        .await
        .map_err(|e| format!("podbgp is not live: {e}"))?;
    let up = Instant::now().saturating_duration_since(v.started);
    Ok(format!("podbgp is live (up {} s)", up.as_secs()))
}

/// `podbgp health --ready --threshold N` over HTTP.
async fn ready(handle: &MetricsHandle, threshold: Duration) -> Result<String, String> {
    let fail = |e: String| format!("podbgp is not ready: {e}");
    let v = speaker_view(handle).await.map_err(fail)?;
    let mut peers = peer_views(handle).await.map_err(fail)?;
    peers.sort_by_key(|p| p.address);
    let peers: Vec<PeerHealth> = peers
        .iter()
        .map(|p| PeerHealth {
            address: p.address.to_string(),
            established: p.state == crate::session::State::Established,
        })
        .collect();
    let uptime = Instant::now().saturating_duration_since(v.started);
    readiness(uptime, threshold, &peers)
}
