//! `decode_update` on an UPDATE body (no header); the first byte selects the session context
//! (4-octet AS, iBGP, ADD-PATH IPv4/IPv6, extended message).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((sel, body)) = data.split_first() {
        podbgp_fuzz::update(*sel, body);
    }
});
