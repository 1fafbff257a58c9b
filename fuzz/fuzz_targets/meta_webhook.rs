//! WhatsApp Cloud API and Instagram webhooks (JSON, `X-Hub-Signature-256`):
//! arbitrary bytes as the body and the header. Never a panic; the right
//! signature verifies, any other header does not.
#![no_main]

use integro_channels::{instagram, meta, whatsapp_cloud};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "app-secret";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.split_first() {
        Some((n, rest)) => rest.split_at((*n as usize).min(rest.len())),
        None => (&[][..], data),
    };
    let header = String::from_utf8_lossy(header);
    let good = meta::sign(SECRET, body);
    // Surrounding whitespace and the hex digits' case are forgiven; nothing else.
    let same = header
        .trim()
        .strip_prefix("sha256=")
        .is_some_and(|hex| hex.eq_ignore_ascii_case(&good["sha256=".len()..]));
    if !same {
        assert!(!meta::verify_signature(SECRET, body, &header));
    }
    assert!(meta::verify_signature(SECRET, body, &good));
    let _ = whatsapp_cloud::parse(body, "106540352242922");
    let _ = instagram::parse(body, "17841400000000000");
    let query = integro_channels::twilio::parse_form(body);
    let query: Vec<(String, String)> = query
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let _ = meta::handshake(&query, "verify-token");
});
