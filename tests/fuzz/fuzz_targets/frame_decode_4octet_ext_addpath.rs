//! A byte stream through `frame_len` + `decode_message` with 4-octet AS, extended messages and
//! ADD-PATH for IPv4/IPv6 negotiated (first byte: iBGP or eBGP).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ibgp, rest) = match data.split_first() {
        Some((b, rest)) => (b & 1 != 0, rest),
        None => (false, data),
    };
    podbgp_fuzz::stream(rest, &podbgp_fuzz::ctx_4octet_ext_addpath(ibgp));
});
