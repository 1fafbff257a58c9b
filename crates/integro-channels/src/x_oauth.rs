//! X's OAuth 2.0 Authorization Code flow with PKCE (shared/protocols/
//! x-api-v2.md §1): the authorize URL the account's owner opens, the code's
//! exchange for tokens, and their refresh. Each tenant brings its own X app
//! (`client_id`, and `client_secret` for a confidential client, which
//! authenticates with HTTP Basic).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use integro_core::SendError;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Credentials, ProviderUrls, http};

/// Where the account's owner authorizes the app (X's docs use x.com/i; the
/// OpenAPI file names another host, which the docs do not).
pub const AUTHORIZE_URL: &str = "https://x.com/i/oauth2/authorize";

/// What a connected bot needs: read and write posts and DMs, read its own
/// user, and a refresh token.
pub const SCOPES: &str = "tweet.read tweet.write users.read dm.read dm.write offline.access";

/// A PKCE verifier (43 to 128 unreserved characters; 64 here) and a state,
/// both random.
pub fn new_verifier_and_state() -> (String, String) {
    let mut bytes = [0u8; 80];
    rand::fill(&mut bytes[..]);
    let verifier = B64URL.encode(&bytes[..48]);
    let state = B64URL.encode(&bytes[48..]);
    (verifier, state)
}

/// `code_challenge` for S256: base64url(SHA-256(verifier)), unpadded.
pub fn challenge(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

/// The URL the account's owner opens to authorize the app.
pub fn authorize_url(client_id: &str, redirect_uri: &str, state: &str, verifier: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", SCOPES)
        .append_pair("state", state)
        .append_pair("code_challenge", &challenge(verifier))
        .append_pair("code_challenge_method", "S256")
        .finish()
        // X's examples separate scopes with %20.
        .replace('+', "%20");
    format!("{AUTHORIZE_URL}?{query}")
}

/// Tokens from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    /// Present with `offline.access`; X may rotate it on each refresh.
    pub refresh_token: Option<String>,
    /// Seconds the access token lives.
    pub expires_in: Option<u64>,
}

/// Exchanges an authorization code (valid 30 s) for tokens.
pub async fn exchange_code(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Tokens, SendError> {
    token_request(
        client,
        urls,
        creds,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A new access token for a refresh token.
pub async fn refresh(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
    refresh_token: &str,
) -> Result<Tokens, SendError> {
    token_request(
        client,
        urls,
        creds,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// `POST /2/oauth2/token`: a confidential client (with `client_secret`)
/// authenticates with Basic; a public client names itself in the body.
async fn token_request(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    creds: &Credentials,
    form: &[(&str, &str)],
) -> Result<Tokens, SendError> {
    let client_id = creds.require("client_id")?;
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let url = format!("{}/2/oauth2/token", urls.x.trim_end_matches('/'));
    let mut request = client.post(url);
    match creds.get("client_secret") {
        Ok(secret) => request = request.basic_auth(client_id, Some(secret)),
        Err(_) => form.push(("client_id", client_id)),
    }
    let http::Answer {
        status,
        headers,
        body,
    } = http::call(request.form(&form)).await?;
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    if !status.is_success() {
        // OAuth errors: `{"error":"invalid_request","error_description":"…"}`.
        let code = v["error"].as_str().map(String::from);
        let message = v["error_description"]
            .as_str()
            .or(v["error"].as_str())
            .map(String::from)
            .unwrap_or_else(|| body.chars().take(300).collect());
        return Err(http::classify(status, &headers, code, message));
    }
    let access_token = v["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SendError::retryable(None, "X's token answer has no access_token"))?;
    Ok(Tokens {
        access_token: access_token.to_string(),
        refresh_token: v["refresh_token"].as_str().map(String::from),
        expires_in: v["expires_in"].as_u64(),
    })
}

/// The token's own user (`GET /2/users/me`): id and username.
pub async fn me(
    client: &reqwest::Client,
    urls: &ProviderUrls,
    access_token: &str,
) -> Result<(String, String), SendError> {
    let url = crate::x::api(urls, "/2/users/me");
    let v = crate::x::read_json(client.get(url).bearer_auth(access_token)).await?;
    let id = v["data"]["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| SendError::retryable(None, "X's answer names no user"))?;
    Ok((
        id.to_string(),
        v["data"]["username"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_unpadded_base64url_sha256_of_the_verifier() {
        // As Python's hashlib and base64.urlsafe_b64encode compute it.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mJ92IgRw34BiBJeYhvENBYrLp6xiSI"),
            "BR0xZy7Ik5wh2AdkjAvR-uS8XWs-n3NGkt_YKosQzVo"
        );
    }

    #[test]
    fn the_authorize_url_asks_for_every_scope_with_s256() {
        let (verifier, state) = new_verifier_and_state();
        assert_eq!(verifier.len(), 64);
        assert!(
            verifier
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let url = authorize_url(
            "cid",
            "https://bots.example/oauth/x/callback",
            &state,
            &verifier,
        );
        assert!(
            url.starts_with("https://x.com/i/oauth2/authorize?response_type=code&client_id=cid&")
        );
        assert!(url.contains("redirect_uri=https%3A%2F%2Fbots.example%2Foauth%2Fx%2Fcallback"));
        assert!(url.contains(
            "scope=tweet.read%20tweet.write%20users.read%20dm.read%20dm.write%20offline.access"
        ));
        assert!(url.contains(&format!("code_challenge={}", challenge(&verifier))));
        assert!(url.ends_with("code_challenge_method=S256"));
    }
}
