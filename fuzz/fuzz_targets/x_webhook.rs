//! X's account-activity webhook (JSON, `x-twitter-webhooks-signature`) and its
//! CRC challenge: arbitrary bytes. Never a panic; the right signature
//! verifies, any other header does not.
#![no_main]

use integro_channels::x;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "consumer-secret";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.split_first() {
        Some((n, rest)) => rest.split_at((*n as usize).min(rest.len())),
        None => (&[][..], data),
    };
    let header = String::from_utf8_lossy(header);
    let good = x::sign(SECRET, body);
    // Surrounding whitespace is forgiven; any other difference is not.
    if header.trim() != good {
        assert!(!x::verify_signature(SECRET, body, &header));
    }
    assert!(x::verify_signature(SECRET, body, &good));
    let _ = x::parse(body, "1234567890");
    let _ = x::crc_response(SECRET, &header);
});
