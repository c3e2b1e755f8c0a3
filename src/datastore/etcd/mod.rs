//! etcd v3 datastore adapter: a small gRPC client ([`EtcdClient`]) and the list-then-watch
//! loop on top of it ([`Syncer`]), which is what a Calico-style consumer of `/calico/...`
//! keys needs (calico-bgp.md §1.1: every value is JSON, the revision is etcd's ModRevision).
//!
//! * [`config`]: [`EtcdConfig`], read from calico/node's environment variables
//!   (`ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`,
//!   `ETCD_USERNAME`, `ETCD_PASSWORD`).
//! * [`client`]: connect (endpoints tried in order, optional TLS and password auth),
//!   paginated prefix range pinned to one revision, prefix watch as a typed stream, and the
//!   write operations tests and tooling need (put, delete, delete prefix, compact).
//! * [`sync`]: the syncer task; its guarantees are written down there.
//! * [`backoff`]: the syncer's capped exponential reconnect delay with jitter.
//!
//! The protobuf messages come from `proto/etcd/` (our own minimal definitions with etcd's
//! package names and field numbers, compiled client-only by `proto/build.rs` with protox, so
//! no `protoc` is needed). Prost types stay inside this module: the public API speaks
//! [`Kv`], [`Change`], [`WatchUpdate`] and [`SyncEvent`].
//!
//! Why our own client rather than the `etcd-client` crate: that crate's build script needs
//! `protoc` (dependencies.md §3, §10), and podbgp only needs a few RPCs.

pub mod backoff;
pub mod client;
pub mod config;
pub mod error;
pub mod sync;

pub use backoff::Backoff;
pub use client::{Change, EtcdClient, Kv, WatchStream, WatchUpdate, prefix_range_end};
pub use config::{ConfigError, Credentials, EtcdConfig};
pub use error::{ConnectAttempt, EtcdError};
pub use sync::{SyncEvent, SyncHandle, Syncer};

/// Generated code for the etcd API subset in `proto/etcd/` (client side only).
#[allow(clippy::all, clippy::pedantic, missing_docs, dead_code)]
mod proto {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}
