//! The etcd v3 client and the list-then-watch syncer against a real etcd (Debian
//! `etcd-server` 3.4, started per test by `tests/common/etcd.rs`; no root needed).
//!
//! Waits are deadlines on the syncer's event channel or `poll_until`; the only plain
//! sleep is the length of the "etcd down" outage in the restart scenario, which is part of
//! the scenario, not a synchronisation.

mod common;

use std::collections::BTreeMap;

use common::etcd::{ETCDCTL, TcpProxy};
use common::{Duration, Etcd};
use podbgp::datastore::etcd::{
    Backoff, Change, EtcdClient, EtcdConfig, EtcdError, SyncEvent, SyncHandle, Syncer, WatchUpdate,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Deadline for any single expected event.
const WAIT: Duration = Duration::from_secs(20);

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn connect(cfg: &EtcdConfig) -> EtcdClient {
    EtcdClient::connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("connecting to {:?}: {e}", cfg.endpoints))
}

/// The next item of a watch stream, within [`WAIT`].
async fn next_update(w: &mut podbgp::datastore::etcd::WatchStream) -> WatchUpdate {
    use futures::StreamExt;
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(u))) => u,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch update within {WAIT:?}"),
    }
}

/// A consumer's copy of the synced keys, built only from [`SyncEvent`]s, that checks the
/// ordering guarantees as it goes.
#[derive(Debug, Default)]
struct Mirror {
    kvs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Revision of the copy: last Snapshot or change.
    revision: i64,
    /// Every event, summarised, in arrival order.
    log: Vec<String>,
}

impl Mirror {
    fn apply(&mut self, ev: SyncEvent) {
        match ev {
            SyncEvent::Snapshot { kvs, revision } => {
                assert!(revision >= self.revision, "snapshot went back in time");
                let keys: Vec<&Vec<u8>> = kvs.iter().map(|kv| &kv.key).collect();
                assert!(
                    keys.windows(2).all(|w| w[0] < w[1]),
                    "snapshot not in key order"
                );
                self.kvs = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                self.revision = revision;
                self.log.push(format!("snapshot@{revision}"));
            }
            SyncEvent::Changes(changes) => {
                assert!(!changes.is_empty(), "empty Changes");
                let first = changes[0].mod_revision();
                assert!(
                    first > self.revision,
                    "change at {first} does not follow revision {}",
                    self.revision
                );
                for c in changes {
                    assert!(c.mod_revision() >= self.revision, "changes out of order");
                    self.revision = c.mod_revision();
                    match c {
                        Change::Put { key, value, .. } => {
                            self.kvs.insert(key, value);
                        }
                        Change::Delete { key, .. } => {
                            self.kvs.remove(&key);
                        }
                    }
                }
                self.log.push(format!("changes@{}", self.revision));
            }
            SyncEvent::Disconnected { reason } => {
                self.log.push(format!("disconnected: {reason}"));
            }
            SyncEvent::Resumed { revision } => {
                assert_eq!(revision, self.revision, "resumed at another revision");
                self.log.push(format!("resumed@{revision}"));
            }
        }
    }

    fn count(&self, prefix: &str) -> usize {
        self.log.iter().filter(|l| l.starts_with(prefix)).count()
    }

    fn get(&self, key: &str) -> Option<&[u8]> {
        self.kvs.get(key.as_bytes()).map(Vec::as_slice)
    }

    /// Applies events until `done(self)` holds; panics after `timeout` with the log.
    async fn until(
        &mut self,
        rx: &mut mpsc::Receiver<SyncEvent>,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Mirror) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(self) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => self.apply(ev),
                Ok(None) => panic!("syncer ended while waiting for {what}; log: {:?}", self.log),
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for {what}; log: {:?}; keys: {:?}",
                    self.log,
                    self.kvs
                        .keys()
                        .map(|k| String::from_utf8_lossy(k))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// The copy as (key, value) strings, to compare with a direct read.
    fn pairs(&self) -> Vec<(String, String)> {
        self.kvs
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }
}

/// What etcd holds under `prefix` now, as (key, value) strings.
async fn etcd_pairs(c: &EtcdClient, prefix: &str) -> Vec<(String, String)> {
    let (kvs, _) = c
        .range_prefix(prefix.as_bytes())
        .await
        .expect("range_prefix");
    kvs.into_iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// Cancels the syncer and checks that its task ends.
async fn stop_syncer(cancel: CancellationToken, handle: SyncHandle) {
    cancel.cancel();
    tokio::time::timeout(WAIT, handle.task)
        .await
        .expect("syncer task did not end after cancel")
        .expect("syncer task panicked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_prefix_reads_every_page_at_one_revision() {
    let etcd = Etcd::new("range_pages");
    let mut cfg = etcd.config();
    cfg.page_size = 10;
    let c = connect(&cfg).await;
    let mut last = 0;
    for i in 0..35 {
        last = c
            .put(
                format!("/calico/t/{i:03}").as_bytes(),
                format!("v{i}").as_bytes(),
            )
            .await
            .unwrap();
    }
    // Just outside the prefix on both sides ("/calico/t0" is the prefix's range end).
    c.put(b"/calico/t0", b"outside").await.unwrap();
    c.put(b"/calico/s/zzz", b"outside").await.unwrap();

    let (kvs, revision) = c.range_prefix(b"/calico/t/").await.unwrap();
    assert_eq!(kvs.len(), 35, "4 pages of 10");
    for (i, kv) in kvs.iter().enumerate() {
        assert_eq!(kv.key, k(&format!("/calico/t/{i:03}")));
        assert_eq!(kv.value, k(&format!("v{i}")));
        assert_eq!(kv.version, 1);
    }
    assert_eq!(revision, last + 2, "read at the revision of the first page");
    assert_eq!(
        c.count_prefix(b"/calico/t/", Some(last)).await.unwrap().0,
        35
    );

    // Default page size: one page, same answer.
    let c1 = connect(&etcd.config()).await;
    assert_eq!(
        c1.range_prefix(b"/calico/t/").await.unwrap(),
        (kvs, revision)
    );

    assert_eq!(c.delete_prefix(b"/calico/t/").await.unwrap(), 35);
    assert!(c.delete(b"/calico/t0").await.unwrap());
    assert!(!c.delete(b"/calico/t0").await.unwrap());
    let (kvs, _) = c.range_prefix(b"/calico/").await.unwrap();
    assert_eq!(kvs.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tries_the_endpoints_in_order() {
    let etcd = Etcd::new("failover");
    let dead = format!("http://127.0.0.1:{}", unused_port());
    let c = connect(&EtcdConfig::new([dead.clone(), etcd.endpoint()])).await;
    assert_eq!(c.endpoint(), etcd.endpoint());
    c.put(b"/calico/x", b"1").await.unwrap();

    let err = EtcdClient::connect(&EtcdConfig::new([dead.clone()]))
        .await
        .unwrap_err();
    let EtcdError::Connect { attempts } = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].endpoint, dead);
    assert!(err.to_string().contains("refused"), "says why: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_puts_and_deletes_in_order_then_compaction() {
    let etcd = Etcd::new("watch_order");
    let c = connect(&etcd.config()).await;
    let r0 = c.put(b"/w/seed", b"0").await.unwrap();
    let mut w = c.watch_prefix(b"/w/", r0 + 1).await.unwrap();

    let r1 = c.put(b"/w/a", b"1").await.unwrap();
    let r2 = c.put(b"/w/b", b"2").await.unwrap();
    c.put(b"/x/outside", b"-").await.unwrap();
    assert!(c.delete(b"/w/a").await.unwrap());
    let r4 = c.put(b"/w/b", b"3").await.unwrap();

    let mut got = Vec::new();
    while got.len() < 4 {
        match next_update(&mut w).await {
            WatchUpdate::Changes(ch) => got.extend(ch),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        got,
        [
            Change::Put {
                key: k("/w/a"),
                value: k("1"),
                mod_revision: r1
            },
            Change::Put {
                key: k("/w/b"),
                value: k("2"),
                mod_revision: r2
            },
            Change::Delete {
                key: k("/w/a"),
                mod_revision: r2 + 2
            },
            Change::Put {
                key: k("/w/b"),
                value: k("3"),
                mod_revision: r4
            },
        ]
    );

    // A watcher that starts before the compaction point learns that it was compacted.
    c.compact(r4).await.unwrap();
    match c.watch_prefix(b"/w/", r0 + 1).await {
        Err(EtcdError::Compacted { revision, .. }) => assert_eq!(revision, r0 + 1),
        Ok(mut w) => assert_eq!(
            next_update(&mut w).await,
            WatchUpdate::Compacted {
                compact_revision: r4
            }
        ),
        Err(e) => panic!("unexpected error: {e}"),
    }
    // A range at a compacted revision is the typed error.
    let err = c.count_prefix(b"/w/", Some(r1)).await.unwrap_err();
    assert!(
        matches!(err, EtcdError::Compacted { revision, .. } if revision == r1),
        "{err}"
    );
    assert!(err.needs_relist());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_sends_a_snapshot_then_changes() {
    let etcd = Etcd::new("sync_basic");
    let c = connect(&etcd.config()).await;
    for (key, v) in [
        ("/calico/a", "1"),
        ("/calico/b", "2"),
        ("/calico/c", "3"),
        ("/other", "x"),
    ] {
        c.put(key.as_bytes(), v.as_bytes()).await.unwrap();
    }
    let cancel = CancellationToken::new();
    let mut h = Syncer::new(etcd.config(), "/calico/").spawn(cancel.clone());
    let mut m = Mirror::default();
    m.until(&mut h.events, WAIT, "first snapshot", |m| {
        m.count("snapshot") == 1
    })
    .await;
    assert_eq!(m.kvs.len(), 3);
    assert_eq!(m.get("/calico/b"), Some(&b"2"[..]));

    c.put(b"/calico/d", b"4").await.unwrap();
    c.delete(b"/calico/a").await.unwrap();
    let last = c.put(b"/calico/b", b"22").await.unwrap();
    m.until(&mut h.events, WAIT, "changes up to the last put", |m| {
        m.revision == last
    })
    .await;
    assert_eq!(m.pairs(), etcd_pairs(&c, "/calico/").await);
    assert_eq!(m.count("snapshot"), 1);
    assert_eq!(m.count("disconnected"), 0, "{:?}", m.log);
    stop_syncer(cancel, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_reports_an_etcd_restart_once_and_resumes() {
    /// How long etcd stays down: long enough for the backoff to reach its 5 s cap.
    const OUTAGE: Duration = Duration::from_secs(10);
    let mut etcd = Etcd::new("sync_restart");
    let c = connect(&etcd.config()).await;
    c.put(b"/calico/before", b"1").await.unwrap();
    drop(c);
    let cancel = CancellationToken::new();
    let mut h = Syncer::new(etcd.config(), "/calico/").spawn(cancel.clone());
    let mut m = Mirror::default();
    m.until(&mut h.events, WAIT, "first snapshot", |m| {
        m.count("snapshot") == 1
    })
    .await;

    etcd.stop();
    m.until(&mut h.events, WAIT, "Disconnected", |m| {
        m.count("disconnected") == 1
    })
    .await;
    tokio::time::sleep(OUTAGE).await;
    etcd.start();

    let c = connect(&etcd.config()).await;
    let rev = c.put(b"/calico/after", b"2").await.unwrap();
    m.until(&mut h.events, WAIT, "the put made after the restart", |m| {
        m.get("/calico/after").is_some()
    })
    .await;
    assert_eq!(m.revision, rev);
    assert_eq!(
        m.count("disconnected"),
        1,
        "one Disconnected per outage: {:?}",
        m.log
    );
    assert_eq!(m.count("resumed"), 1, "{:?}", m.log);
    assert_eq!(
        m.count("snapshot"),
        1,
        "nothing was compacted, no re-list: {:?}",
        m.log
    );
    assert_eq!(m.pairs(), etcd_pairs(&c, "/calico/").await);
    eprintln!("events: {:?}", m.log);
    stop_syncer(cancel, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_relists_when_its_position_was_compacted() {
    let etcd = Etcd::new("sync_compact");
    let proxy = TcpProxy::new(etcd.client_addr());
    let c = connect(&etcd.config()).await;
    c.put(b"/calico/a", b"1").await.unwrap();
    c.put(b"/calico/b", b"2").await.unwrap();

    let cancel = CancellationToken::new();
    let cfg = EtcdConfig::new([proxy.endpoint(false)]);
    let mut h = Syncer::new(cfg, "/calico/").spawn(cancel.clone());
    let mut m = Mirror::default();
    m.until(&mut h.events, WAIT, "first snapshot", |m| {
        m.count("snapshot") == 1
    })
    .await;
    let first_rev = m.revision;

    // Take etcd away from the syncer only, change things, and compact past its position.
    proxy.cut();
    m.until(&mut h.events, WAIT, "Disconnected", |m| {
        m.count("disconnected") == 1
    })
    .await;
    c.put(b"/calico/c", b"3").await.unwrap();
    c.delete(b"/calico/a").await.unwrap();
    c.put(b"/calico/b", b"22").await.unwrap();
    for i in 0..20 {
        c.put(b"/calico/churn", i.to_string().as_bytes())
            .await
            .unwrap();
    }
    c.delete(b"/calico/churn").await.unwrap();
    let rev = c.put(b"/other/x", b"-").await.unwrap();
    c.compact(rev).await.unwrap();
    assert!(c.count_prefix(b"/calico/", Some(first_rev)).await.is_err());
    proxy.restore();

    m.until(&mut h.events, WAIT, "a new snapshot", |m| {
        m.count("snapshot") == 2
    })
    .await;
    assert!(
        m.revision >= rev,
        "snapshot at {} predates {rev}",
        m.revision
    );
    assert_eq!(m.pairs(), etcd_pairs(&c, "/calico/").await);
    assert_eq!(m.get("/calico/a"), None);
    assert_eq!(m.get("/calico/b"), Some(&b"22"[..]));
    assert_eq!(
        m.count("changes"),
        0,
        "nothing between the outage and the re-list"
    );

    // And the watch continues after the re-list.
    let last = c.put(b"/calico/d", b"4").await.unwrap();
    m.until(&mut h.events, WAIT, "a change after the re-list", |m| {
        m.revision == last
    })
    .await;
    assert_eq!(m.pairs(), etcd_pairs(&c, "/calico/").await);
    eprintln!("events: {:?}", m.log);
    stop_syncer(cancel, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_without_etcd_reports_once_and_stops_when_dropped() {
    let port = unused_port();
    let cfg = EtcdConfig::new([format!("http://127.0.0.1:{port}")]);
    let cancel = CancellationToken::new();
    let syncer = Syncer::new(cfg, "/calico/").backoff(Backoff::new(
        Duration::from_millis(10),
        Duration::from_millis(40),
    ));
    let mut h = syncer.spawn(cancel.clone());
    match tokio::time::timeout(WAIT, h.events.recv()).await {
        Ok(Some(SyncEvent::Disconnected { reason })) => {
            assert!(matches!(reason, EtcdError::Connect { .. }), "{reason}");
            assert!(reason.to_string().contains(&port.to_string()), "{reason}");
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    // Many retries happen in this window (10–40 ms apart); none is reported again.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), h.events.recv())
            .await
            .is_err(),
        "a second event during the same outage"
    );
    // Dropping the receiver ends the task.
    drop(h.events);
    tokio::time::timeout(WAIT, h.task)
        .await
        .expect("syncer task did not end after its receiver was dropped")
        .expect("syncer task panicked");
    assert!(!cancel.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_works_and_without_one_fails_clearly() {
    let etcd = Etcd::new_tls("tls");
    let cfg = etcd.config();
    let c = connect(&cfg).await;
    let rev = c.put(b"/calico/tls", b"ok").await.unwrap();
    let (kvs, revision) = c.range_prefix(b"/calico/").await.unwrap();
    assert_eq!((kvs.len(), revision), (1, rev));

    let cancel = CancellationToken::new();
    let mut h = Syncer::new(cfg.clone(), "/calico/").spawn(cancel.clone());
    let mut m = Mirror::default();
    m.until(&mut h.events, WAIT, "snapshot over TLS", |m| {
        m.count("snapshot") == 1
    })
    .await;
    assert_eq!(m.get("/calico/tls"), Some(&b"ok"[..]));
    stop_syncer(cancel, h).await;

    // No client certificate: etcd (--client-cert-auth) refuses the connection.
    let mut no_cert = cfg.clone();
    no_cert.client_cert = None;
    no_cert.client_key = None;
    let err = EtcdClient::connect(&no_cert).await.unwrap_err();
    let text = err.to_string();
    eprintln!("without a client certificate: {text}");
    let EtcdError::Connect { attempts } = &err else {
        panic!("unexpected {text}");
    };
    assert!(
        matches!(*attempts[0].error, EtcdError::ClientCertRequired { .. }),
        "{text}"
    );
    assert!(
        text.contains(&etcd.endpoint()),
        "names the endpoint: {text}"
    );
    assert!(text.contains("ETCD_CERT_FILE"), "says what to set: {text}");

    // A CA that did not sign the server certificate: the server is not trusted.
    let mut wrong_ca = cfg.clone();
    wrong_ca.ca_cert = etcd.tls().map(|t| t.client_cert.clone());
    let err = EtcdClient::connect(&wrong_ca).await.unwrap_err();
    eprintln!("with the wrong CA: {err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Missing files name the file.
    let mut missing = cfg.clone();
    missing.client_key = Some("/nonexistent/key.pem".into());
    let err = EtcdClient::connect(&missing).await.unwrap_err();
    assert!(matches!(err, EtcdError::ReadFile { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_and_token_renewal_after_an_etcd_restart() {
    let mut etcd = Etcd::new("auth");
    let ctl = |etcd: &Etcd, args: &[&str]| {
        etcd.etcdctl(args)
            .unwrap_or_else(|e| panic!("{ETCDCTL} {args:?}: {e}"));
    };
    ctl(&etcd, &["user", "add", "root:rootpw"]);
    ctl(&etcd, &["role", "add", "root"]);
    ctl(&etcd, &["user", "grant-role", "root", "root"]);
    ctl(&etcd, &["role", "add", "calico"]);
    ctl(
        &etcd,
        &[
            "role",
            "grant-permission",
            "calico",
            "--prefix=true",
            "readwrite",
            "/calico/",
        ],
    );
    ctl(&etcd, &["user", "add", "calico:calicopw"]);
    ctl(&etcd, &["user", "grant-role", "calico", "calico"]);
    ctl(&etcd, &["auth", "enable"]);
    etcd.set_etcdctl_user("root:rootpw");

    let mut cfg = etcd.config();
    cfg.credentials = Some(podbgp::datastore::etcd::Credentials {
        username: "calico".into(),
        password: "calicopw".into(),
    });
    let c = connect(&cfg).await;
    c.put(b"/calico/x", b"1").await.unwrap();
    assert_eq!(c.range_prefix(b"/calico/").await.unwrap().0.len(), 1);
    let err = c.put(b"/elsewhere", b"1").await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    // etcd keeps simple tokens in memory: after a restart the client's token is unknown
    // ("invalid auth token"), and the client must authenticate again by itself. The
    // channel reconnects on its own; the first request may still see the old connection
    // fail, hence the deadline loop.
    etcd.stop();
    etcd.start();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match c.put(b"/calico/y", b"2").await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(!e.to_string().contains("invalid auth token"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("put after the restart: {e}"),
        }
    }
    let w = c.watch_prefix(b"/calico/", 0).await.unwrap();
    drop(w);

    let cancel = CancellationToken::new();
    let mut h = Syncer::new(cfg.clone(), "/calico/").spawn(cancel.clone());
    let mut m = Mirror::default();
    m.until(&mut h.events, WAIT, "snapshot with auth", |m| {
        m.count("snapshot") == 1
    })
    .await;
    assert_eq!(m.kvs.len(), 2);
    stop_syncer(cancel, h).await;

    let mut bad = cfg.clone();
    if let Some(cred) = &mut bad.credentials {
        cred.password = "wrong".into();
    }
    let err = EtcdClient::connect(&bad).await.unwrap_err();
    let EtcdError::Connect { attempts } = &err else {
        panic!("unexpected {err}");
    };
    assert!(
        matches!(*attempts[0].error, EtcdError::Auth { .. }),
        "{err}"
    );
    eprintln!("wrong password: {err}");
}
