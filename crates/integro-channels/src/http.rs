//! What every provider call shares: the client, and reading an HTTP failure
//! as retryable or permanent.

use std::time::Duration;

use integro_core::SendError;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// A client with the timeouts a send job needs: a provider that hangs must not
/// hold a worker for long.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("integro/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client")
}

/// A failed response: 429 and 5xx are worth retrying, other 4xx are not.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    code: Option<String>,
    message: String,
) -> SendError {
    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    SendError {
        retryable,
        retry_after_secs: if retryable {
            integro_core::retry_after::secs_from_headers(headers)
        } else {
            None
        },
        code,
        message: format!("HTTP {}: {message}", status.as_u16()),
    }
}

/// A provider's answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends the request and reads the answer; no answer at all is a retryable
/// transport error.
pub async fn call(request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
    let res = request.send().await.map_err(transport)?;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.text().await.map_err(transport)?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A request that got no answer: timeouts and connection failures are retried.
pub fn transport(e: reqwest::Error) -> SendError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    SendError::retryable(None, format!("request {what}: {e}"))
}
