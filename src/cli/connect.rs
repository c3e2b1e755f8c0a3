//! Connecting the gRPC client to the daemon over its Unix socket or TCP.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use super::ApiTarget;
use crate::api::proto::speaker_service_client::SpeakerServiceClient;

pub(super) type Client = SpeakerServiceClient<Channel>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects eagerly, so an absent daemon is reported before any call. `Err` is the reason,
/// as the operating system put it where possible ("No such file or directory (os error 2)").
pub(super) async fn connect(target: &ApiTarget) -> Result<Client, String> {
    let connecting = async {
        match target {
            ApiTarget::Unix(path) => {
                let path = path.clone();
                // The URI is only used for the :authority header; the connector ignores it.
                Endpoint::from_static("http://localhost")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move { UnixStream::connect(path).await.map(TokioIo::new) }
                    }))
                    .await
                    .map_err(|e| reason(&e))
            }
            ApiTarget::Http(url) => Endpoint::from_shared(url.clone())
                .map_err(|e| format!("invalid URL: {}", reason(&e)))?
                .connect_timeout(CONNECT_TIMEOUT)
                .connect()
                .await
                .map_err(|e| reason(&e)),
            ApiTarget::Https { url, tls } => {
                let read = |p: &std::path::PathBuf, flag: &str| {
                    std::fs::read(p).map_err(|e| format!("cannot read {flag} {}: {e}", p.display()))
                };
                let ca = tls.ca.as_ref().ok_or(
                    "an https:// API needs --api-ca FILE (the CA of the daemon's certificate)",
                )?;
                let mut cfg = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(read(ca, "--api-ca")?));
                if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                    cfg = cfg.identity(Identity::from_pem(
                        read(cert, "--api-cert")?,
                        read(key, "--api-key")?,
                    ));
                }
                Endpoint::from_shared(url.clone())
                    .map_err(|e| format!("invalid URL: {}", reason(&e)))?
                    .tls_config(cfg)
                    .map_err(|e| format!("TLS: {}", reason(&e)))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .connect()
                    .await
                    .map_err(|e| reason(&e))
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(channel)) => Ok(SpeakerServiceClient::new(channel)),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!(
            "no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// The most specific text in an error chain: the innermost I/O error if there is one, else
/// the innermost message.
fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.to_string();
        }
        last = err.to_string();
        cur = err.source();
    }
    last
}
