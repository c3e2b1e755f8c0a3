//! [`EtcdClient`]: the few etcd v3 RPCs podbgp needs, over one tonic channel.
//!
//! * Connecting tries [`EtcdConfig::endpoints`] in order and keeps the first that answers:
//!   connection (TCP, TLS, HTTP/2) plus one round trip (`Authenticate` when credentials are
//!   configured, otherwise a linearizable count-only range, which also needs a leader), so
//!   a member that accepts TCP but fails TLS client authentication, or has no quorum, is
//!   skipped. There is no balancing: callers that lose
//!   the connection connect again, which starts over at the first endpoint (the syncer does).
//! * [`EtcdClient::range_prefix`] reads a whole prefix in pages of
//!   [`EtcdConfig::page_size`] keys; every page after the first is read at the first page's
//!   revision, so the result is one consistent snapshot however many pages it takes, or
//!   [`EtcdError::Compacted`] if that revision was compacted in between.
//! * [`EtcdClient::watch_prefix`] opens one `Watch` stream with one watcher and returns
//!   once etcd confirmed it (`created`); the [`WatchStream`] then yields
//!   [`WatchUpdate::Changes`] per etcd response, in revision order, and ends after
//!   [`WatchUpdate::Compacted`] or an error.
//! * With credentials, the token from `Auth.Authenticate` goes in the `token` metadata of
//!   every request; when etcd says it is stale (expired simple token, auth store changed),
//!   the client authenticates again and retries the request once.
//!
//! Nothing here panics on what etcd sends: a response missing a required part is
//! [`EtcdError::Malformed`].

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::config::{Credentials, EtcdConfig};
use super::error::{ConnectAttempt, EtcdError, is_stale_token};
use super::proto::etcdserverpb::{
    self as pb, auth_client::AuthClient, kv_client::KvClient, watch_client::WatchClient,
    watch_request::RequestUnion,
};
use super::proto::mvccpb;

/// Largest response accepted (one range page or one watch response). etcd values are at
/// most 1.5 MiB by default (`--max-request-bytes`); tonic's default limit of 4 MiB would
/// make a page of large IPAM blocks fail.
const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;

/// HTTP/2 keepalive: notices a silently dead connection (a watch can be idle for hours).
/// etcd refuses pings more frequent than `--grpc-keepalive-min-time` (5 s by default).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One key as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the key's creation.
    pub create_revision: i64,
    /// Revision of the key's last modification (Calico's resource revision).
    pub mod_revision: i64,
    /// Modifications since creation.
    pub version: i64,
    /// Lease ID, 0 for none.
    pub lease: i64,
}

impl From<mvccpb::KeyValue> for Kv {
    fn from(kv: mvccpb::KeyValue) -> Kv {
        Kv {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// One change to one key, as delivered by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key was created or modified.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        mod_revision: i64,
    },
    /// The key was deleted, at revision `mod_revision`.
    Delete { key: Vec<u8>, mod_revision: i64 },
}

impl Change {
    pub fn key(&self) -> &[u8] {
        match self {
            Change::Put { key, .. } | Change::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn mod_revision(&self) -> i64 {
        match self {
            Change::Put { mod_revision, .. } | Change::Delete { mod_revision, .. } => *mod_revision,
        }
    }

    fn from_event(ev: mvccpb::Event) -> Result<Change, EtcdError> {
        let malformed = |what| EtcdError::Malformed { op: "watch", what };
        let kind = mvccpb::event::EventType::try_from(ev.r#type)
            .map_err(|_| malformed("unknown event type"))?;
        let kv = ev.kv.ok_or_else(|| malformed("event without key-value"))?;
        Ok(match kind {
            mvccpb::event::EventType::Put => Change::Put {
                key: kv.key,
                value: kv.value,
                mod_revision: kv.mod_revision,
            },
            mvccpb::event::EventType::Delete => Change::Delete {
                key: kv.key,
                mod_revision: kv.mod_revision,
            },
        })
    }
}

/// What a [`WatchStream`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchUpdate {
    /// The changes of one etcd watch response: one or more whole revisions, in order.
    Changes(Vec<Change>),
    /// The watcher's position was compacted away: changes since then are lost, so the
    /// caller must list again. The stream ends after this.
    Compacted { compact_revision: i64 },
}

/// The end of the key range holding every key that starts with `prefix` (etcd's
/// `range_end`): `prefix` with its last byte below 0xff incremented and the rest dropped;
/// `"\0"` (no upper bound) when there is no such byte, e.g. for the empty prefix.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            if let Some(b) = end.last_mut() {
                *b = last + 1;
            }
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// A connected etcd client. Cheap to clone; clones share the connection and auth token.
#[derive(Clone)]
pub struct EtcdClient {
    endpoint: String,
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    auth: Option<Arc<AuthState>>,
    request_timeout: Duration,
    page_size: i64,
}

struct AuthState {
    client: AuthClient<Channel>,
    credentials: Credentials,
    token: Mutex<Option<AsciiMetadataValue>>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoint", &self.endpoint)
            .field(
                "user",
                &self.auth.as_ref().map(|a| a.credentials.username.as_str()),
            )
            .finish_non_exhaustive()
    }
}

impl EtcdClient {
    /// Connects to the first endpoint of `config` that answers (see the module docs).
    pub async fn connect(config: &EtcdConfig) -> Result<EtcdClient, EtcdError> {
        config.validate()?;
        let tls = tls_config(config)?;
        let mut attempts = Vec::new();
        for endpoint in &config.endpoints {
            match Self::connect_one(config, endpoint, tls.clone()).await {
                Ok(client) => return Ok(client),
                Err(error) => {
                    tracing::debug!(%endpoint, %error, "etcd endpoint unavailable");
                    attempts.push(ConnectAttempt {
                        endpoint: endpoint.clone(),
                        error: Box::new(error),
                    });
                }
            }
        }
        Err(EtcdError::Connect { attempts })
    }

    async fn connect_one(
        config: &EtcdConfig,
        endpoint: &str,
        tls: Option<ClientTlsConfig>,
    ) -> Result<EtcdClient, EtcdError> {
        let url = config.endpoint_url(endpoint)?;
        let transport = |error| EtcdError::Endpoint {
            endpoint: url.clone(),
            error,
        };
        let mut ep = Endpoint::from_shared(url.clone())
            .map_err(transport)?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if url.starts_with("https://")
            && let Some(tls) = tls
        {
            ep = ep.tls_config(tls).map_err(transport)?;
        }
        let channel = match tokio::time::timeout(config.connect_timeout, ep.connect()).await {
            Ok(res) => res.map_err(transport)?,
            Err(_) => {
                return Err(EtcdError::Timeout {
                    op: "connect",
                    timeout: config.connect_timeout,
                });
            }
        };
        let client = EtcdClient {
            endpoint: url,
            kv: KvClient::new(channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: WatchClient::new(channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES),
            auth: config.credentials.clone().map(|credentials| {
                Arc::new(AuthState {
                    client: AuthClient::new(channel),
                    credentials,
                    token: Mutex::new(None),
                })
            }),
            request_timeout: config.request_timeout,
            page_size: config.page_size,
        };
        // One round trip, so an endpoint that only accepts TCP does not count as connected.
        let probe = if client.auth.is_some() {
            client.authenticate().await
        } else {
            client.count_prefix(b"\0", None).await.map(|_| ())
        };
        match probe {
            Ok(()) => Ok(client),
            Err(error)
                if client.endpoint.starts_with("https://")
                    && config.client_cert.is_none()
                    && is_transport_failure(&error) =>
            {
                Err(EtcdError::ClientCertRequired {
                    endpoint: client.endpoint,
                    error: Box::new(error),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// The URL of the endpoint this client is connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Gets a fresh token from `Auth.Authenticate` and uses it from now on.
    async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let mut req = tonic::Request::new(pb::AuthenticateRequest {
            name: auth.credentials.username.clone(),
            password: auth.credentials.password.clone(),
        });
        req.set_timeout(self.request_timeout);
        let resp = auth
            .client
            .clone()
            .authenticate(req)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated => EtcdError::Auth {
                    username: auth.credentials.username.clone(),
                    status,
                },
                _ => EtcdError::Rpc {
                    op: "authenticate",
                    status,
                },
            })?
            .into_inner();
        let token = resp
            .token
            .parse::<AsciiMetadataValue>()
            .map_err(|_| EtcdError::Malformed {
                op: "authenticate",
                what: "token is not printable ASCII",
            })?;
        if let Ok(mut slot) = auth.token.lock() {
            *slot = Some(token);
        }
        Ok(())
    }

    /// Adds the auth token (if any) to a request.
    fn authorize<T>(&self, req: &mut tonic::Request<T>) {
        let token = self
            .auth
            .as_ref()
            .and_then(|a| a.token.lock().ok().and_then(|t| t.clone()));
        if let Some(token) = token {
            req.metadata_mut().insert("token", token);
        }
    }

    /// Runs one unary KV call with the request deadline and the auth token, authenticating
    /// again and retrying once when the token is stale. `revision` is only for errors.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        op: &'static str,
        revision: i64,
        msg: Req,
        call: F,
    ) -> Result<Resp, EtcdError>
    where
        Req: Clone,
        F: Fn(KvClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut retried = false;
        loop {
            let mut req = tonic::Request::new(msg.clone());
            req.set_timeout(self.request_timeout);
            self.authorize(&mut req);
            match call(self.kv.clone(), req).await {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(status) if !retried && self.auth.is_some() && is_stale_token(&status) => {
                    retried = true;
                    self.authenticate().await?;
                }
                Err(status) => return Err(EtcdError::from_status(op, revision, status)),
            }
        }
    }

    async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, EtcdError> {
        let revision = req.revision;
        self.unary("range", revision, req, |mut kv, r| async move {
            kv.range(r).await
        })
        .await
    }

    /// Every key under `prefix` and the revision they were read at, in key order, read in
    /// pages of [`EtcdConfig::page_size`] keys pinned to the first page's revision.
    pub async fn range_prefix(&self, prefix: &[u8]) -> Result<(Vec<Kv>, i64), EtcdError> {
        let range_end = prefix_range_end(prefix);
        let mut key = prefix.to_vec();
        let mut revision = 0;
        let mut kvs = Vec::new();
        loop {
            let resp = self
                .range(pb::RangeRequest {
                    key: std::mem::take(&mut key),
                    range_end: range_end.clone(),
                    limit: self.page_size,
                    revision,
                    ..Default::default()
                })
                .await?;
            if revision == 0 {
                revision = header_revision("range", resp.header.as_ref())?;
            }
            let more = resp.more;
            let next = resp.kvs.last().map(|kv| {
                // The smallest key after the last one returned.
                let mut k = kv.key.clone();
                k.push(0);
                k
            });
            kvs.extend(resp.kvs.into_iter().map(Kv::from));
            match (more, next) {
                (false, _) => return Ok((kvs, revision)),
                (true, Some(next)) => key = next,
                (true, None) => {
                    return Err(EtcdError::Malformed {
                        op: "range",
                        what: "`more` set on an empty page",
                    });
                }
            }
        }
    }

    /// The number of keys under `prefix` (at `revision`, or now) and the revision counted
    /// at. A compacted `revision` fails with [`EtcdError::Compacted`], so this also checks
    /// whether a watch can still resume from `revision + 1`.
    pub async fn count_prefix(
        &self,
        prefix: &[u8],
        revision: Option<i64>,
    ) -> Result<(i64, i64), EtcdError> {
        let resp = self
            .range(pb::RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_range_end(prefix),
                revision: revision.unwrap_or(0),
                count_only: true,
                ..Default::default()
            })
            .await?;
        let rev = match revision {
            Some(r) => r,
            None => header_revision("range", resp.header.as_ref())?,
        };
        Ok((resp.count, rev))
    }

    /// Sets `key` to `value`; returns the revision of the write.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<i64, EtcdError> {
        let msg = pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        };
        let resp = self
            .unary("put", 0, msg, |mut kv, r| async move { kv.put(r).await })
            .await?;
        header_revision("put", resp.header.as_ref())
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, key: &[u8]) -> Result<bool, EtcdError> {
        Ok(self.delete_range(key.to_vec(), Vec::new()).await? > 0)
    }

    /// Deletes every key under `prefix`; returns how many there were.
    pub async fn delete_prefix(&self, prefix: &[u8]) -> Result<i64, EtcdError> {
        self.delete_range(prefix.to_vec(), prefix_range_end(prefix))
            .await
    }

    async fn delete_range(&self, key: Vec<u8>, range_end: Vec<u8>) -> Result<i64, EtcdError> {
        let msg = pb::DeleteRangeRequest {
            key,
            range_end,
            prev_kv: false,
        };
        let resp = self
            .unary("delete", 0, msg, |mut kv, r| async move {
                kv.delete_range(r).await
            })
            .await?;
        Ok(resp.deleted)
    }

    /// Compacts the history up to `revision` and waits until it is applied (`physical`).
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let msg = pb::CompactionRequest {
            revision,
            physical: true,
        };
        self.unary("compact", revision, msg, |mut kv, r| async move {
            kv.compact(r).await
        })
        .await?;
        Ok(())
    }

    /// Watches every key under `prefix` from `start_revision` (inclusive; 0 is "from now")
    /// and returns once etcd has created the watcher.
    ///
    /// A `start_revision` that is already compacted fails with [`EtcdError::Compacted`]
    /// here, or (etcd 3.4 confirms the watcher first) as [`WatchUpdate::Compacted`] as the
    /// stream's first item.
    pub async fn watch_prefix(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        let create = pb::WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: prefix.to_vec(),
                range_end: prefix_range_end(prefix),
                start_revision,
                // No progress notifications: etcd 3.4 before 3.4.24 could send one whose
                // revision is ahead of undelivered events (etcd-io/etcd#15220), and a
                // resume revision taken from it would skip changes.
                progress_notify: false,
                prev_kv: false,
                watch_id: 0,
            })),
        };
        let mut retried = false;
        loop {
            match self.try_watch(create.clone(), start_revision).await {
                Err(EtcdError::Rpc { status, .. })
                    if !retried && self.auth.is_some() && is_stale_token(&status) =>
                {
                    retried = true;
                    self.authenticate().await?;
                }
                other => return other,
            }
        }
    }

    async fn try_watch(
        &self,
        create: pb::WatchRequest,
        start_revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        let (requests, rx) = mpsc::channel(1);
        // Cannot fail: the receiver is alive and the buffer is empty.
        let _ = requests.try_send(create);
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        self.authorize(&mut req);
        // Fail rather than wait when the member has lost its leader (etcd's "require
        // leader" metadata); the syncer then tries the next endpoint.
        req.metadata_mut()
            .insert("hasleader", AsciiMetadataValue::from_static("true"));
        let timeout = self.request_timeout;
        let mut watch = self.watch.clone();
        let established = async move {
            let mut inner = watch
                .watch(req)
                .await
                .map_err(|s| EtcdError::from_status("watch", start_revision, s))?
                .into_inner();
            let first = inner
                .message()
                .await
                .map_err(|s| EtcdError::from_status("watch", start_revision, s))?
                .ok_or(EtcdError::WatchClosed)?;
            Ok::<_, EtcdError>((inner, first))
        };
        let (inner, first) = tokio::time::timeout(timeout, established)
            .await
            .map_err(|_| EtcdError::Timeout {
                op: "watch",
                timeout,
            })??;
        if first.canceled {
            if first.compact_revision > 0 {
                return Err(EtcdError::Compacted {
                    op: "watch",
                    revision: start_revision,
                });
            }
            return Err(EtcdError::WatchCanceled {
                reason: first.cancel_reason,
            });
        }
        if !first.created {
            return Err(EtcdError::Malformed {
                op: "watch",
                what: "first response does not confirm the watcher",
            });
        }
        Ok(WatchStream {
            inner,
            _requests: requests,
            watch_id: first.watch_id,
            done: false,
        })
    }
}

/// Whether the first request over a fresh TLS connection failed at the transport level
/// (not with an answer from etcd). With TLS 1.3 the client finishes its handshake before the
/// server has checked the client's certificate, so a server that requires one rejects it
/// only afterwards: sometimes with a "BadCertificate" alert, sometimes by just closing the
/// connection, depending on timing. Without a client certificate configured, that is the
/// likely cause, and the error says so.
fn is_transport_failure(error: &EtcdError) -> bool {
    match error {
        EtcdError::Rpc { status, .. } => {
            matches!(
                status.code(),
                tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
            ) && std::error::Error::source(status).is_some()
        }
        _ => false,
    }
}

/// The revision in a response header, which etcd always sends.
fn header_revision(op: &'static str, h: Option<&pb::ResponseHeader>) -> Result<i64, EtcdError> {
    h.map(|h| h.revision).ok_or(EtcdError::Malformed {
        op,
        what: "no response header",
    })
}

/// TLS settings for `https://` endpoints: the configured CA only, plus the client identity.
fn tls_config(config: &EtcdConfig) -> Result<Option<ClientTlsConfig>, EtcdError> {
    let Some(ca) = &config.ca_cert else {
        return Ok(None);
    };
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| EtcdError::ReadFile {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
    if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
        tls = tls.identity(Identity::from_pem(
            read("client certificate", cert)?,
            read("client key", key)?,
        ));
    }
    Ok(Some(tls))
}

/// The responses of one etcd watcher, as a [`Stream`] of [`WatchUpdate`]s.
///
/// Ends (yields `None`) after [`WatchUpdate::Compacted`] or after the first error; a
/// stream that etcd closes yields [`EtcdError::WatchClosed`] first. Dropping it cancels
/// the watch (the HTTP/2 stream is reset).
pub struct WatchStream {
    inner: tonic::Streaming<pb::WatchResponse>,
    /// Keeps the request side open: etcd treats a half-closed stream as finished.
    _requests: mpsc::Sender<pb::WatchRequest>,
    watch_id: i64,
    done: bool,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("watch_id", &self.watch_id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl WatchStream {
    /// The ID etcd gave the watcher.
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }

    /// Interprets one response: `None` for responses without changes to report.
    fn interpret(&mut self, resp: pb::WatchResponse) -> Option<Result<WatchUpdate, EtcdError>> {
        if resp.canceled || resp.compact_revision > 0 {
            self.done = true;
            if resp.compact_revision > 0 {
                return Some(Ok(WatchUpdate::Compacted {
                    compact_revision: resp.compact_revision,
                }));
            }
            return Some(Err(EtcdError::WatchCanceled {
                reason: resp.cancel_reason,
            }));
        }
        if resp.events.is_empty() {
            // A late `created`, or a progress notification (not requested).
            return None;
        }
        let changes: Result<Vec<_>, _> = resp.events.into_iter().map(Change::from_event).collect();
        match changes {
            Ok(changes) => Some(Ok(WatchUpdate::Changes(changes))),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchUpdate, EtcdError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(EtcdError::WatchClosed)));
                }
                Poll::Ready(Some(Err(status))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(EtcdError::from_status("watch", 0, status))));
                }
                Poll::Ready(Some(Ok(resp))) => {
                    if let Some(item) = self.interpret(resp) {
                        return Poll::Ready(Some(item));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_of_prefixes() {
        assert_eq!(prefix_range_end(b"/calico/"), b"/calico0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
    }

    #[test]
    fn events_without_key_value_are_malformed() {
        let ev = mvccpb::Event {
            r#type: mvccpb::event::EventType::Put as i32,
            kv: None,
            prev_kv: None,
        };
        assert!(matches!(
            Change::from_event(ev),
            Err(EtcdError::Malformed { .. })
        ));
        let ev = mvccpb::Event {
            r#type: 7,
            kv: Some(mvccpb::KeyValue::default()),
            prev_kv: None,
        };
        assert!(matches!(
            Change::from_event(ev),
            Err(EtcdError::Malformed { .. })
        ));
    }

    #[test]
    fn delete_events_carry_the_deletion_revision() {
        let ev = mvccpb::Event {
            r#type: mvccpb::event::EventType::Delete as i32,
            kv: Some(mvccpb::KeyValue {
                key: b"/calico/x".to_vec(),
                mod_revision: 42,
                ..Default::default()
            }),
            prev_kv: None,
        };
        assert_eq!(
            Change::from_event(ev).unwrap(),
            Change::Delete {
                key: b"/calico/x".to_vec(),
                mod_revision: 42
            }
        );
    }
}
