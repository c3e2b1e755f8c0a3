//! `SpeakerService` implementation: each RPC converts its request (`convert`), asks the
//! driver over the [`ApiHandle`] channels, and converts the answer back. No state of its own.

use std::pin::Pin;
use std::time::SystemTime;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status};

use super::convert::{self, ServiceError};
use super::proto;
use super::{ApiHandle, ApiRequest};
use crate::speaker::{Command, Query, View};

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub(super) struct SpeakerApi {
    handle: ApiHandle,
    /// Becomes `true` when the server shuts down; ends open `WatchEvents` streams.
    stop: watch::Receiver<bool>,
}

impl SpeakerApi {
    pub(super) fn new(handle: ApiHandle, stop: watch::Receiver<bool>) -> Self {
        SpeakerApi { handle, stop }
    }

    async fn query(&self, query: Query) -> Result<View, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.handle
            .requests
            .send(ApiRequest::Query { query, reply })
            .await
            .map_err(|_| ServiceError::SpeakerGone)?;
        Ok(rx.await.map_err(|_| ServiceError::SpeakerGone)??)
    }

    async fn command(&self, command: Command) -> Result<(), ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.handle
            .requests
            .send(ApiRequest::Command { command, reply })
            .await
            .map_err(|_| ServiceError::SpeakerGone)?;
        Ok(rx.await.map_err(|_| ServiceError::SpeakerGone)??)
    }
}

fn view_name(v: &View) -> &'static str {
    match v {
        View::Speaker(_) => "speaker",
        View::Peers(_) => "peers",
        View::Peer(_) => "peer",
        View::Routes(_) => "routes",
    }
}

fn unexpected(asked: &'static str, got: &View) -> Status {
    ServiceError::UnexpectedView {
        asked,
        got: view_name(got),
    }
    .into()
}

#[tonic::async_trait]
impl proto::speaker_service_server::SpeakerService for SpeakerApi {
    async fn get_speaker(
        &self,
        _request: Request<proto::GetSpeakerRequest>,
    ) -> Result<Response<proto::GetSpeakerResponse>, Status> {
        match self.query(Query::Speaker).await? {
            View::Speaker(v) => Ok(Response::new(convert::speaker_to_proto(
                &v,
                &self.handle.clock,
                SystemTime::now(),
            ))),
            other => Err(unexpected("speaker", &other)),
        }
    }

    type ListPeersStream = RpcStream<proto::ListPeersResponse>;

    async fn list_peers(
        &self,
        _request: Request<proto::ListPeersRequest>,
    ) -> Result<Response<Self::ListPeersStream>, Status> {
        let peers = match self.query(Query::Peers).await? {
            View::Peers(peers) => peers,
            other => return Err(unexpected("peers", &other)),
        };
        let clock = self.handle.clock;
        let items = peers.into_iter().map(move |p| {
            Ok(proto::ListPeersResponse {
                peer: Some(convert::peer_to_proto(&p, &clock)),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn get_peer(
        &self,
        request: Request<proto::GetPeerRequest>,
    ) -> Result<Response<proto::GetPeerResponse>, Status> {
        let query = Query::try_from(request.into_inner()).map_err(ServiceError::from)?;
        match self.query(query).await? {
            View::Peer(p) => Ok(Response::new(proto::GetPeerResponse {
                peer: Some(convert::peer_to_proto(&p, &self.handle.clock)),
            })),
            other => Err(unexpected("peer", &other)),
        }
    }

    async fn reset_peer(
        &self,
        request: Request<proto::ResetPeerRequest>,
    ) -> Result<Response<proto::ResetPeerResponse>, Status> {
        let command = Command::try_from(request.into_inner()).map_err(ServiceError::from)?;
        self.command(command).await?;
        Ok(Response::new(proto::ResetPeerResponse {}))
    }

    type ListRoutesStream = RpcStream<proto::ListRoutesResponse>;

    async fn list_routes(
        &self,
        request: Request<proto::ListRoutesRequest>,
    ) -> Result<Response<Self::ListRoutesStream>, Status> {
        let query = Query::try_from(request.into_inner()).map_err(ServiceError::from)?;
        let routes = match self.query(query).await? {
            View::Routes(routes) => routes,
            other => return Err(unexpected("routes", &other)),
        };
        let items = routes.into_iter().map(|r| {
            Ok(proto::ListRoutesResponse {
                route: Some(proto::Route::from(&r)),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    type WatchEventsStream = RpcStream<proto::WatchEventsResponse>;

    async fn watch_events(
        &self,
        _request: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        // Subscribe now, so every event published after this call returns is delivered.
        let rx = self.handle.events.subscribe();
        let stop = self.stop.clone();
        let stream = futures::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
            loop {
                if *stop.borrow() {
                    return None;
                }
                tokio::select! {
                    r = rx.recv() => match r {
                        Ok(ev) => {
                            let item = convert::event_to_proto(&ev, SystemTime::now());
                            return Some((Ok(item), (rx, stop)));
                        }
                        Err(RecvError::Lagged(skipped)) => {
                            tracing::warn!(skipped, "WatchEvents client is too slow; events skipped");
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    _ = stop.changed() => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_config(
        &self,
        _request: Request<proto::GetConfigRequest>,
    ) -> Result<Response<proto::GetConfigResponse>, Status> {
        let yaml = self.handle.config_yaml.borrow().clone();
        Ok(Response::new(proto::GetConfigResponse { yaml }))
    }
}
