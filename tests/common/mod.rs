//! Shared support for podbgp's integration tests (include with `mod common;`).
//!
//! The network-namespace harness builds throw-away topologies out of Linux network
//! namespaces, veth pairs and bridges, runs real peer daemons (FRR's `zebra` + `bgpd`) inside
//! them, and asserts on structured output by polling with a deadline (FRR topotest style,
//! ARCHITECTURE.md rule 14: never `sleep N`).
//!
//! * [`netns`]: [`Lab`] (one per test: unique namespace names, a scratch directory, cleanup),
//!   [`Netns`] (run/spawn inside a namespace, addresses, kernel routes), [`Lan`] (a bridge
//!   segment in its own namespace), [`Proc`] (a long-running process, killed on drop).
//! * [`etcd`]: [`Etcd`] (a real etcd member, plain or TLS, stop/start), [`TcpProxy`].
//! * [`frr`]: [`Frr`] (zebra + bgpd in one namespace, `vtysh … json`), [`BgpdConfig`].
//! * [`poll`]: [`poll_until`] (FRR `run_and_expect`).
//! * [`json`]: [`json_subset`] (FRR `json_cmp`).
//!
//! Safety rules the harness enforces or follows:
//! * host addresses come from 198.18.0.0/15 and 2001:db8::/32 only ([`check_lab_addr`]);
//! * nothing is ever configured in the root namespace: every `ip` command runs with `-n NS`
//!   or under `ip netns exec NS`;
//! * everything a test creates is removed when the last handle drops, panics included;
//!   processes are killed by PID, never by name;
//! * namespace names are `pbt<pid>-<counter>-<name>`, so tests can run in parallel
//!   (cargo-nextest runs each test in its own process). Namespaces left over by a test
//!   process that died without unwinding (e.g. SIGKILL on timeout) are reaped by the next
//!   [`Lab::new`].
//!
//! ```ignore
//! mod common;
//! use common::*;
//!
//! #[test]
//! fn frr_pair() {
//!     if !require_root_and_frr() {
//!         return;
//!     }
//!     let lab = Lab::new("frr_pair");
//!     let lan = lab.lan("lan");
//!     let (n1, n2) = (lab.netns("r1"), lab.netns("r2"));
//!     lan.attach(&n1, "eth0", &["198.18.0.1/24", "2001:db8::1/64"]);
//!     lan.attach(&n2, "eth0", &["198.18.0.2/24", "2001:db8::2/64"]);
//!     let r1 = Frr::new(&n1, &BgpdConfig::new(65000, "198.18.0.1")
//!         .neighbor("198.18.0.2", 65000).network("10.244.1.0/26").render());
//!     let r2 = Frr::new(&n2, &BgpdConfig::new(65000, "198.18.0.2")
//!         .neighbor("198.18.0.1", 65000).render());
//!     r2.wait_json("show bgp summary json",
//!         &json!({"ipv4Unicast": {"peers": {"198.18.0.1": {"state": "Established", "pfxRcd": 1}}}}),
//!         Duration::from_secs(30));
//!     poll_until(Duration::from_secs(10), "r2 FIB has 10.244.1.0/26", || {
//!         n2.route("10.244.1.0/26").ok_or("no route".to_string())
//!     });
//! } // everything is torn down here, also when an assertion above panicked
//! ```
#![allow(dead_code, unused_imports)] // Each test crate compiles this module and uses a different subset.

pub mod calico;
pub mod etcd;
pub mod frr;
pub mod json;
pub mod netns;
pub mod podbgp;
pub mod poll;

pub use etcd::{Etcd, EtcdTls, TcpProxy, make_pki};
pub use frr::{BgpdConfig, Frr};
pub use json::{assert_json_subset, json_subset};
pub use netns::{CmdError, KernelRoute, Lab, Lan, Netns, Proc};
pub use podbgp::Podbgp;
pub use poll::poll_until;
pub use serde_json::{Value, json};
pub use std::time::Duration;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Address family selector shared by the FRR and kernel-route helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Afi {
    Ipv4,
    Ipv6,
}

impl Afi {
    /// Both families, IPv4 first.
    pub const ALL: [Afi; 2] = [Afi::Ipv4, Afi::Ipv6];

    /// The `ip` family flag: `-4` or `-6`.
    pub fn ip_flag(self) -> &'static str {
        match self {
            Afi::Ipv4 => "-4",
            Afi::Ipv6 => "-6",
        }
    }

    /// The FRR CLI word: `ipv4` or `ipv6` (as in `show bgp ipv4 unicast json`).
    pub fn frr_name(self) -> &'static str {
        match self {
            Afi::Ipv4 => "ipv4",
            Afi::Ipv6 => "ipv6",
        }
    }

    /// The key FRR uses in JSON output for unicast of this family: `ipv4Unicast`/`ipv6Unicast`.
    pub fn frr_json_key(self) -> &'static str {
        match self {
            Afi::Ipv4 => "ipv4Unicast",
            Afi::Ipv6 => "ipv6Unicast",
        }
    }

    /// The family of an address or prefix such as `198.18.0.1`, `2001:db8::/64`.
    pub fn of(addr: &str) -> Afi {
        if addr.contains(':') {
            Afi::Ipv6
        } else {
            Afi::Ipv4
        }
    }
}

/// Path of the podbgp binary built for this test run (Cargo builds it for integration tests).
pub fn podbgp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podbgp"))
}

/// FRR binaries the harness runs.
pub const BGPD: &str = "/usr/lib/frr/bgpd";
/// FRR's zebra (installs BGP routes into the namespace FIB).
pub const ZEBRA: &str = "/usr/lib/frr/zebra";
/// FRR's CLI front end.
pub const VTYSH: &str = "/usr/bin/vtysh";

/// Checks that namespace tests can run: root, `ip`, and FRR (`bgpd`, `zebra`, `vtysh`).
///
/// Never passes silently. Returns `true` when the test should go on. When something is
/// missing it panics with a message saying what to do, except when the developer opted in to
/// skipping with `PODBGP_SKIP_NETNS=1` outside CI: then it prints `SKIPPED …` and returns
/// `false`. With `CI` set, a missing prerequisite always fails.
pub fn require_root_and_frr() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push(
            "root (network namespaces need CAP_SYS_ADMIN/CAP_NET_ADMIN: run the tests as root)"
                .to_string(),
        );
    }
    let ip_found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("ip").exists()));
    if !ip_found {
        missing.push("ip (install: apt-get install iproute2)".to_string());
    }
    for bin in [BGPD, ZEBRA, VTYSH] {
        if !Path::new(bin).exists() {
            missing.push(format!(
                "{bin} (install: apt-get install frr, or run bash .ci/test.sh)"
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("namespace integration tests need: {}", missing.join("; "));
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    if !ci && std::env::var_os("PODBGP_SKIP_NETNS").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED (PODBGP_SKIP_NETNS=1): {msg}");
        return false;
    }
    panic!(
        "{msg}\n(outside CI, set PODBGP_SKIP_NETNS=1 to skip these tests explicitly){}",
        if ci {
            "; CI is set, so this is a failure"
        } else {
            ""
        }
    );
}

/// Panics unless `addr` (optionally `addr/len`) is in the test ranges 198.18.0.0/15 or
/// 2001:db8::/32. Every address the harness configures goes through this check.
pub fn check_lab_addr(addr: &str) {
    let ip_part = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = ip_part
        .parse()
        .unwrap_or_else(|e| panic!("bad test address {addr:?}: {e}"));
    let ok = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    };
    assert!(
        ok,
        "test address {addr} is outside 198.18.0.0/15 and 2001:db8::/32 (hard rule for lab hosts)"
    );
}
