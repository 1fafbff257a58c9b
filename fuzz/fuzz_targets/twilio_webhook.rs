//! Twilio's form webhook: arbitrary bytes as the body and the signature
//! header. Parsing and checking never panic; a body signed with the right
//! token always verifies, and a wrong signature never does.
#![no_main]

use integro_channels::twilio;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const URL: &str = "https://bot.example.com/webhooks/twilio/acc";

fuzz_target!(|data: &[u8]| {
    // The first byte says how much of the rest is the signature header.
    let (header, body) = match data.split_first() {
        Some((n, rest)) => rest.split_at((*n as usize).min(rest.len())),
        None => (&[][..], data),
    };
    let params = twilio::parse_form(body);
    let header = String::from_utf8_lossy(header);
    let good = twilio::sign(TOKEN, URL, &params);
    // Surrounding whitespace is forgiven; any other difference is not.
    if header.trim() != good {
        assert!(!twilio::verify_signature(TOKEN, URL, &params, &header));
    }
    assert!(twilio::verify_signature(TOKEN, URL, &params, &good));
    let _ = twilio::parse(&params);
});
