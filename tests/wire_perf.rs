//! Decode throughput check (dependencies.md §1.3 message shape: a ~1.7 kB UPDATE with a 4-octet
//! AS_PATH, two communities and 400 IPv4 /24 NLRI).
//!
//! Timing is meaningless in debug builds and noisy on shared machines, so the measurement is
//! `#[ignore]`d; run it with
//! `cargo test --release --test wire_perf -- --ignored --nocapture`.
//! The non-ignored test only checks that the message shape decodes.

#[path = "wire/common.rs"]
mod common;

use std::time::Instant;

use bytes::BytesMut;
use common::*;
use podbgp::wire::*;

fn message_400() -> (Vec<u8>, usize) {
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(seq(&[4_200_000_001, 65001, 65002, 65003])),
        next_hop: Some(ip4("198.18.0.1")),
        med: Some(10),
        communities: vec![0xfde9_0064, 0xfde9_00c8],
        ..PathAttrs::default()
    };
    let nlri: Vec<Nlri> = (0..400u32)
        .map(|i| v4(&format!("10.{}.{}.0/24", i / 256, i % 256)))
        .collect();
    let mut enc = BytesMut::new();
    encode_path_attrs(&attrs, &cx4(), &mut enc);
    let mut out = Vec::new();
    pack_announce(&cx4(), &enc, Family::IPV4_UNICAST, None, &nlri, &mut out);
    assert_eq!(out.len(), 1);
    (out[0].to_vec(), nlri.len())
}

#[test]
fn message_400_decodes() {
    let (m, n) = message_400();
    assert_eq!(decode_update_msg(&m, &cx4()).unwrap().nlri.len(), n);
}

#[test]
#[ignore = "timing; run in release with --ignored"]
fn decode_throughput() {
    let (m, n) = message_400();
    let cx = cx4();
    let iters = 50_000;
    let mut total = 0usize;
    let start = Instant::now();
    for _ in 0..iters {
        let Ok(Message::Update(u)) = decode_message(std::hint::black_box(&m), &cx) else {
            panic!("decode");
        };
        total += u.nlri.len();
    }
    let dt = start.elapsed();
    assert_eq!(total, n * iters);
    let per_msg = dt.as_secs_f64() / iters as f64;
    let rate = total as f64 / dt.as_secs_f64();
    println!(
        "{} octets, {n} prefixes: {:.2} µs/UPDATE, {:.1} M prefixes/s",
        m.len(),
        per_msg * 1e6,
        rate / 1e6
    );

    let frame = bytes::Bytes::from(m.clone());
    let start = Instant::now();
    for _ in 0..iters {
        let _ = std::hint::black_box(decode_message_bytes(std::hint::black_box(&frame), &cx));
    }
    println!(
        "zero-copy entry: {:.2} µs/UPDATE",
        start.elapsed().as_secs_f64() / iters as f64 * 1e6
    );

    let mut enc = BytesMut::new();
    let Ok(Message::Update(u)) = decode_message(&m, &cx) else {
        unreachable!()
    };
    encode_path_attrs(&u.attrs, &cx, &mut enc);
    let start = Instant::now();
    for _ in 0..iters {
        let mut out = Vec::with_capacity(1);
        pack_announce(
            &cx,
            &enc,
            Family::IPV4_UNICAST,
            None,
            std::hint::black_box(&u.nlri),
            &mut out,
        );
        std::hint::black_box(out);
    }
    println!(
        "pack_announce: {:.2} µs/UPDATE",
        start.elapsed().as_secs_f64() / iters as f64 * 1e6
    );
    if !cfg!(debug_assertions) {
        assert!(rate > 10e6, "decode below 10 M prefixes/s: {rate}");
    }
}
