//! A byte stream through `frame_len` + `decode_message` on a fresh (2-octet AS) session.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    podbgp_fuzz::stream(data, &podbgp_fuzz::ctx_2octet());
});
