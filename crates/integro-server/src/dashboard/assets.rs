//! The dashboard's scripts and stylesheet, compiled into the binary: no CDN
//! at run time, no Node at build time. htmx and its SSE extension are
//! vendored from the npm registry at pinned versions, and the web chat
//! widget (`/widget.js`) and the canned replies' picker (`canned.js`) are
//! ours; `assets/VENDOR.md`
//! records where they came from, and a test holds their checksums.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

pub const HTMX: &str = "htmx-2.0.11.min.js";
pub const HTMX_SSE: &str = "htmx-ext-sse-2.2.4.min.js";

/// (name, content type, bytes, whether the name changes with the content).
const FILES: &[(&str, &str, &[u8], bool)] = &[
    (
        HTMX,
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-2.0.11.min.js"),
        true,
    ),
    (
        HTMX_SSE,
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-ext-sse-2.2.4.min.js"),
        true,
    ),
    (
        "widget.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/widget.js"),
        false,
    ),
    (
        "canned.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/canned.js"),
        false,
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
        false,
    ),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/assets/{name}", get(asset))
        // The address websites embed (docs/web-chat.md).
        .route("/widget.js", get(|| asset(Path("widget.js".to_string()))))
}

async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, content_type, bytes, versioned)) = FILES.iter().find(|f| f.0 == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cache = if *versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, cache),
        ],
        *bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    /// The vendored files are the ones `assets/VENDOR.md` names.
    #[test]
    fn vendored_scripts_match_their_recorded_checksums() {
        let expected = [
            (
                HTMX,
                "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
            ),
            (
                HTMX_SSE,
                "98a46496de0c3605fbffdce9167ba427bdd9553184f83f149c261891a92c0136",
            ),
        ];
        let vendor_notes = include_str!("../../assets/VENDOR.md");
        for (name, sum) in expected {
            let bytes = FILES.iter().find(|f| f.0 == name).unwrap().2;
            let digest: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(digest, sum, "{name} changed");
            assert!(
                vendor_notes.contains(sum),
                "VENDOR.md does not record {name}"
            );
        }
    }
}
