//! [`AiClient`]: one HTTP client for every provider, with retries, a circuit
//! breaker per credential and a fallback chain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integro_core::breaker::{CircuitBreakers, Permit};
use integro_core::outbound::{OutboundClient, OutboundPolicy};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::error::AiError;
use crate::retry::{self, RetryPolicy};
use crate::{ChatMessage, ChatRequest, ChatResponse, ChatRole, Endpoint, ProviderKind};
use crate::{anthropic, openai, wire};

/// One link of a fallback chain.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub endpoint: Endpoint,
    pub request: ChatRequest,
    pub timeout: Duration,
}

/// Calls LLM providers. Cheap to clone (the HTTP connection pool and the
/// breakers are shared). Base URLs are tenants' input: every call goes
/// through the outbound URL policy.
#[derive(Clone)]
pub struct AiClient {
    http: OutboundClient,
    policy: RetryPolicy,
    breakers: Arc<CircuitBreakers>,
}

/// An HTTP request ready to send (again).
struct Call {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

impl Call {
    fn describe(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

/// A 2xx answer.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A failed attempt, with what the provider said about retrying.
struct Failure {
    error: AiError,
    /// The HTTP status, when there was an answer.
    status: Option<u16>,
    retry_after: Option<Duration>,
    should_retry: Option<bool>,
    request_id: Option<String>,
}

impl Failure {
    fn plain(error: AiError) -> Failure {
        Failure {
            error,
            status: None,
            retry_after: None,
            should_retry: None,
            request_id: None,
        }
    }

    /// The provider's `x-should-retry` wins over our classes, except that an
    /// exhausted quota is never retried.
    fn retryable(&self) -> bool {
        if matches!(self.error, AiError::Quota { .. }) {
            return false;
        }
        self.should_retry
            .unwrap_or_else(|| self.error.is_retryable())
    }
}

/// Settles the breaker for one call. A call dropped before it finished (the
/// caller gave up) counts as a failure: otherwise a half-open trial would
/// never end and the credential would stay blocked.
struct BreakerCall<'a> {
    breakers: &'a CircuitBreakers,
    key: String,
    settled: bool,
}

impl BreakerCall<'_> {
    fn succeeded(&mut self) {
        self.breakers.success(&self.key);
        self.settled = true;
    }

    /// Provider-level failures count against the credential. Other errors
    /// (a bad request, no quota, an unknown model) mean the provider
    /// answered, so they close a half-open circuit like a success.
    fn failed(&mut self, error: &AiError) {
        if error.counts_against_provider() {
            self.breakers.failure(&self.key);
        } else {
            self.breakers.success(&self.key);
        }
        self.settled = true;
    }
}

impl Drop for BreakerCall<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breakers.failure(&self.key);
        }
    }
}

impl AiClient {
    /// A client with its own HTTP connection pool, under the strict outbound
    /// policy (no exception: no loopback or private address).
    ///
    /// # Panics
    /// If no rustls crypto provider is installed for the process (the binary
    /// installs ring at start-up; tests install it first).
    pub fn new(policy: RetryPolicy, breakers: Arc<CircuitBreakers>) -> AiClient {
        AiClient::with_outbound(OutboundPolicy::default(), policy, breakers)
    }

    /// A client under `outbound`, the operator's exceptions included.
    ///
    /// # Panics
    /// As [`AiClient::new`].
    pub fn with_outbound(
        outbound: OutboundPolicy,
        policy: RetryPolicy,
        breakers: Arc<CircuitBreakers>,
    ) -> AiClient {
        let http = OutboundClient::new(outbound, |builder| {
            builder
                .user_agent(concat!("integro/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                // A redirected POST would turn into a GET: report it instead.
                .redirect(reqwest::redirect::Policy::none())
        })
        .expect("building the HTTP client (is a rustls crypto provider installed?)");
        AiClient {
            http,
            policy,
            breakers,
        }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The HTTP client for tenant-supplied URLs, with the outbound policy
    /// (redirects are not followed). Alert webhooks share it.
    pub fn outbound(&self) -> &OutboundClient {
        &self.http
    }

    /// One provider, with retries (honouring `retry-after`, capped at four
    /// times `max_delay`), under `timeout` per attempt. Checks the breaker
    /// first (`CircuitOpen` if open, nothing sent) and records the outcome on
    /// it.
    pub async fn chat(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
        timeout: Duration,
    ) -> Result<ChatResponse, AiError> {
        let provider = endpoint.provider;
        let call = match chat_call(endpoint, request) {
            Ok(call) => call,
            Err(e) => {
                tracing::warn!(
                    provider = provider.as_str(),
                    credential = %endpoint.credential_id,
                    code = e.code(),
                    error = %e,
                    "model call not sent"
                );
                count(provider, e.code());
                return Err(e);
            }
        };
        let key = breaker_key(endpoint);
        if let Permit::Wait(wait) = self.breakers.permit(&key) {
            tracing::debug!(
                provider = provider.as_str(),
                credential = %endpoint.credential_id,
                retry_in_ms = wait.as_millis() as u64,
                "circuit open; model not called"
            );
            count(provider, AiError::CircuitOpen.code());
            return Err(AiError::CircuitOpen);
        }
        let mut breaker = BreakerCall {
            breakers: &self.breakers,
            key,
            settled: false,
        };

        let mut attempt = 0u32;
        loop {
            tracing::debug!(
                provider = provider.as_str(),
                credential = %endpoint.credential_id,
                model = %request.model,
                attempt = attempt + 1,
                url = %call.url,
                "calling the model"
            );
            let started = Instant::now();
            let result = match self.exchange(&call, provider, timeout).await {
                Ok(answer) => {
                    parse(provider, &answer, &request.model, true).map_err(|error| Failure {
                        request_id: wire::header_text(&answer.headers, request_id_header(provider)),
                        ..Failure::plain(error)
                    })
                }
                Err(failure) => Err(failure),
            };
            let elapsed = started.elapsed();
            metrics::histogram!("integro_ai_request_seconds", "provider" => provider.as_str())
                .record(elapsed.as_secs_f64());

            let failure = match result {
                Ok(response) => {
                    count(provider, "ok");
                    count_tokens(provider, &response);
                    breaker.succeeded();
                    tracing::debug!(
                        provider = provider.as_str(),
                        credential = %endpoint.credential_id,
                        model = %response.model,
                        attempt = attempt + 1,
                        elapsed_ms = elapsed.as_millis() as u64,
                        input_tokens = response.input_tokens,
                        output_tokens = response.output_tokens,
                        request_id = response.request_id.as_deref().unwrap_or(""),
                        "model answered"
                    );
                    return Ok(response);
                }
                Err(failure) => failure,
            };
            count(provider, failure.error.code());

            if attempt >= self.policy.max_retries || !failure.retryable() {
                breaker.failed(&failure.error);
                tracing::warn!(
                    provider = provider.as_str(),
                    credential = %endpoint.credential_id,
                    model = %request.model,
                    attempts = attempt + 1,
                    code = failure.error.code(),
                    request_id = failure.request_id.as_deref().unwrap_or(""),
                    error = %failure.error,
                    "model call failed"
                );
                return Err(failure.error);
            }

            let delay = match failure.retry_after {
                Some(wait) if !wait.is_zero() => wait.min(self.policy.max_retry_after()),
                _ => retry::backoff(&self.policy, attempt),
            };
            tracing::warn!(
                provider = provider.as_str(),
                credential = %endpoint.credential_id,
                model = %request.model,
                attempt = attempt + 1,
                code = failure.error.code(),
                request_id = failure.request_id.as_deref().unwrap_or(""),
                delay_ms = delay.as_millis() as u64,
                "model call failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Tries each link in order: the first that answers wins. An open breaker
    /// or any failure moves on to the next. Returns the index that answered,
    /// or every error in order.
    pub async fn chat_with_fallback(
        &self,
        chain: &[Attempt],
    ) -> Result<(usize, ChatResponse), Vec<AiError>> {
        let mut errors = Vec::with_capacity(chain.len());
        for (index, link) in chain.iter().enumerate() {
            match self.chat(&link.endpoint, &link.request, link.timeout).await {
                Ok(response) => {
                    if index > 0 {
                        tracing::info!(
                            index,
                            provider = link.endpoint.provider.as_str(),
                            credential = %link.endpoint.credential_id,
                            model = %link.request.model,
                            "answered by a fallback model"
                        );
                    }
                    return Ok((index, response));
                }
                Err(e) => {
                    if index + 1 < chain.len() {
                        tracing::warn!(
                            index,
                            provider = link.endpoint.provider.as_str(),
                            credential = %link.endpoint.credential_id,
                            code = e.code(),
                            "trying the next model in the chain"
                        );
                    }
                    errors.push(e);
                }
            }
        }
        Err(errors)
    }

    /// Checks a credential with one small request: a one-token chat with
    /// `model` when given, else the model list. Not retried and not counted
    /// on the breaker. Returns a short report such as "OK: gpt-4o-mini
    /// answered" or "OK: the key is valid (12 models available)"; an error
    /// quotes what the provider said (for the operator's command line;
    /// tenants get [`AiClient::check`]).
    pub async fn test(
        &self,
        endpoint: &Endpoint,
        model: Option<&str>,
        timeout: Duration,
    ) -> Result<String, AiError> {
        self.probe(endpoint, model, timeout)
            .await
            .map(|(_, message)| message)
            .map_err(|f| f.error)
    }

    /// [`AiClient::test`] as a report that never carries what the target
    /// answered (a base URL may point anywhere): a status, a classified
    /// reason and our own words.
    pub async fn check(
        &self,
        endpoint: &Endpoint,
        model: Option<&str>,
        timeout: Duration,
    ) -> TestReport {
        match self.probe(endpoint, model, timeout).await {
            Ok((status, message)) => TestReport {
                ok: true,
                status: Some(status),
                reason: "ok",
                code: None,
                message,
            },
            Err(failure) => {
                let e = &failure.error;
                let message = match failure.status {
                    Some(status) => format!("{} (HTTP {status})", e.summary()),
                    None => e.summary(),
                };
                TestReport {
                    ok: false,
                    status: failure.status,
                    reason: e.reason(),
                    code: Some(e.code()),
                    message,
                }
            }
        }
    }

    /// One test request; the status and our report, or the failure.
    async fn probe(
        &self,
        endpoint: &Endpoint,
        model: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, String), Failure> {
        let provider = endpoint.provider;
        let call = match model {
            Some(model) => chat_call(endpoint, &probe(model)),
            None => models_call(endpoint),
        }
        .map_err(Failure::plain)?;
        tracing::debug!(
            provider = provider.as_str(),
            credential = %endpoint.credential_id,
            url = %call.url,
            "testing the credential"
        );
        let answer = self.exchange(&call, provider, timeout).await?;
        let status = answer.status;
        let report = match model {
            Some(model) => {
                let response = parse(provider, &answer, model, false).map_err(|error| Failure {
                    status: Some(status),
                    ..Failure::plain(error)
                })?;
                count_tokens(provider, &response);
                format!("OK: {model} answered")
            }
            None => {
                let models = match provider {
                    ProviderKind::Anthropic => anthropic::model_count(&answer.body),
                    _ => openai::model_count(&answer.body),
                };
                let what = if api_key(endpoint).is_some() {
                    "the key is valid"
                } else {
                    "the server answered"
                };
                match models {
                    Some(1) => format!("OK: {what} (1 model available)"),
                    Some(n) => format!("OK: {what} ({n} models available)"),
                    None => format!("OK: {what}"),
                }
            }
        };
        Ok((status, report))
    }

    /// Sends once and reads the answer; an error status becomes a `Failure`.
    async fn exchange(
        &self,
        call: &Call,
        provider: ProviderKind,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let mut builder = self
            .http
            .request(call.method.clone(), &call.url)
            .map_err(|e| {
                Failure::plain(AiError::Blocked {
                    message: e.to_string(),
                })
            })?
            .headers(call.headers.clone())
            .timeout(timeout);
        if let Some(body) = &call.body {
            builder = builder.body(body.clone());
        }
        let response = builder
            .send()
            .await
            .map_err(|e| Failure::plain(wire::request_error(&e, &call.url)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = wire::header_text(&headers, request_id_header(provider));

        if status.is_success() {
            let (body, truncated) = wire::read_body(response, wire::MAX_ANSWER_BYTES, &call.url)
                .await
                .map_err(|error| Failure {
                    status: Some(status.as_u16()),
                    request_id: request_id.clone(),
                    ..Failure::plain(error)
                })?;
            if truncated {
                return Err(Failure {
                    status: Some(status.as_u16()),
                    request_id,
                    ..Failure::plain(AiError::InvalidResponse {
                        message: format!(
                            "the answer is larger than {} MiB",
                            wire::MAX_ANSWER_BYTES >> 20
                        ),
                    })
                });
            }
            return Ok(Answer {
                status: status.as_u16(),
                headers,
                body,
            });
        }

        // An error body that cannot be read in full is still worth quoting.
        let body = wire::read_body(response, wire::MAX_ERROR_BYTES, &call.url)
            .await
            .map(|(body, _)| body)
            .unwrap_or_default();
        let described = call.describe();
        let error = match provider {
            ProviderKind::Anthropic => {
                anthropic::error_from_response(status.as_u16(), &headers, &body, &described)
            }
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                openai::error_from_response(status.as_u16(), &headers, &body, &described)
            }
        };
        Err(Failure {
            error,
            status: Some(status.as_u16()),
            retry_after: integro_core::retry_after::from_headers(&headers),
            should_retry: integro_core::retry_after::should_retry(&headers),
            request_id,
        })
    }
}

/// What a credential test found, fit to show a tenant: never the target's
/// body or messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    pub ok: bool,
    /// The HTTP status, when the target answered.
    pub status: Option<u16>,
    /// `ok`, or [`AiError::reason`].
    pub reason: &'static str,
    /// When not ok, [`AiError::code`] (finer than `reason`).
    pub code: Option<&'static str>,
    /// In plain words, ours only.
    pub message: String,
}

/// The circuit for a credential.
fn breaker_key(endpoint: &Endpoint) -> String {
    format!("ai:{}", endpoint.credential_id)
}

fn request_id_header(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Anthropic => anthropic::REQUEST_ID_HEADER,
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => openai::REQUEST_ID_HEADER,
    }
}

fn parse(
    provider: ProviderKind,
    answer: &Answer,
    model: &str,
    require_text: bool,
) -> Result<ChatResponse, AiError> {
    match provider {
        ProviderKind::Anthropic => {
            anthropic::parse(&answer.body, &answer.headers, model, require_text)
        }
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            openai::parse(&answer.body, &answer.headers, model, require_text)
        }
    }
}

/// The smallest useful chat: one token.
fn probe(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_string(),
        system: String::new(),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: "Reply with OK.".into(),
        }],
        temperature: None,
        max_output_tokens: 1,
    }
}

/// The base URL without trailing slashes, the provider's default when empty;
/// it must be an http(s) URL.
fn base_url(endpoint: &Endpoint) -> Result<String, AiError> {
    let configured = endpoint.base_url.trim().trim_end_matches('/');
    let base = if configured.is_empty() {
        endpoint
            .provider
            .default_base_url()
            .ok_or_else(|| AiError::BadRequest {
                status: 0,
                message: "no base URL is set for this OpenAI-compatible server".into(),
            })?
    } else {
        configured
    };
    match reqwest::Url::parse(base) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(base.to_string())
        }
        _ => Err(AiError::BadRequest {
            status: 0,
            message: format!("the base URL \"{base}\" is not an http(s) URL"),
        }),
    }
}

/// The key, if one is set and not blank.
fn api_key(endpoint: &Endpoint) -> Option<&str> {
    endpoint
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

fn required_key(endpoint: &Endpoint) -> Result<&str, AiError> {
    api_key(endpoint).ok_or_else(|| AiError::BadRequest {
        status: 0,
        message: format!("no API key is set for this {} endpoint", endpoint.provider),
    })
}

fn auth_headers(endpoint: &Endpoint) -> Result<HeaderMap, AiError> {
    let mut headers = match endpoint.provider {
        ProviderKind::Openai => openai::headers(Some(required_key(endpoint)?))?,
        ProviderKind::OpenaiCompatible => openai::headers(api_key(endpoint))?,
        ProviderKind::Anthropic => anthropic::headers(required_key(endpoint)?)?,
    };
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    Ok(headers)
}

fn chat_call(endpoint: &Endpoint, request: &ChatRequest) -> Result<Call, AiError> {
    if let Some(t) = request.temperature
        && !t.is_finite()
    {
        return Err(AiError::BadRequest {
            status: 0,
            message: "the temperature is not a number".into(),
        });
    }
    let base = base_url(endpoint)?;
    let mut headers = auth_headers(endpoint)?;
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (url, body) = match endpoint.provider {
        ProviderKind::Openai => (
            openai::chat_url(&base),
            openai::request_body(request, false)?,
        ),
        ProviderKind::OpenaiCompatible => (
            openai::chat_url(&base),
            openai::request_body(request, true)?,
        ),
        ProviderKind::Anthropic => (
            anthropic::messages_url(&base),
            anthropic::request_body(request)?,
        ),
    };
    Ok(Call {
        method: Method::POST,
        url,
        headers,
        body: Some(body),
    })
}

fn models_call(endpoint: &Endpoint) -> Result<Call, AiError> {
    let base = base_url(endpoint)?;
    let url = match endpoint.provider {
        ProviderKind::Anthropic => anthropic::models_url(&base),
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => openai::models_url(&base),
    };
    Ok(Call {
        method: Method::GET,
        url,
        headers: auth_headers(endpoint)?,
        body: None,
    })
}

fn count(provider: ProviderKind, outcome: &'static str) {
    metrics::counter!(
        "integro_ai_requests_total",
        "provider" => provider.as_str(),
        "outcome" => outcome
    )
    .increment(1);
}

fn count_tokens(provider: ProviderKind, response: &ChatResponse) {
    metrics::counter!(
        "integro_ai_tokens_total",
        "provider" => provider.as_str(),
        "direction" => "input"
    )
    .increment(response.input_tokens);
    metrics::counter!(
        "integro_ai_tokens_total",
        "provider" => provider.as_str(),
        "direction" => "output"
    )
    .increment(response.output_tokens);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(provider: ProviderKind, base: &str, key: Option<&str>) -> Endpoint {
        Endpoint {
            credential_id: "c".into(),
            provider,
            base_url: base.into(),
            api_key: key.map(str::to_string),
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url(&endpoint(ProviderKind::Openai, "", Some("k"))).unwrap(),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            base_url(&endpoint(
                ProviderKind::Anthropic,
                " https://x.test// ",
                Some("k")
            ))
            .unwrap(),
            "https://x.test"
        );
        assert!(matches!(
            base_url(&endpoint(ProviderKind::OpenaiCompatible, "", None)),
            Err(AiError::BadRequest { status: 0, .. })
        ));
        assert!(matches!(
            base_url(&endpoint(
                ProviderKind::OpenaiCompatible,
                "localhost:11434/v1",
                None
            )),
            Err(AiError::BadRequest { status: 0, .. })
        ));
        assert!(matches!(
            base_url(&endpoint(
                ProviderKind::OpenaiCompatible,
                "ftp://x/v1",
                None
            )),
            Err(AiError::BadRequest { status: 0, .. })
        ));
    }

    #[test]
    fn keys_are_required_except_for_compatible_servers() {
        assert!(auth_headers(&endpoint(ProviderKind::Openai, "", None)).is_err());
        assert!(auth_headers(&endpoint(ProviderKind::Anthropic, "", Some("  "))).is_err());
        let h = auth_headers(&endpoint(ProviderKind::OpenaiCompatible, "", Some(""))).unwrap();
        assert!(h.get("authorization").is_none());
        let h = auth_headers(&endpoint(ProviderKind::Openai, "", Some("sk-1\n"))).unwrap();
        assert_eq!(h.get("authorization").unwrap(), "Bearer sk-1");
        assert!(h.get("authorization").unwrap().is_sensitive());
        assert!(matches!(
            auth_headers(&endpoint(ProviderKind::Openai, "", Some("sk\u{7f}x"))),
            Err(AiError::BadRequest { status: 0, .. })
        ));
    }

    #[test]
    fn endpoint_debug_hides_the_key() {
        let e = endpoint(ProviderKind::Openai, "", Some("sk-secret"));
        let shown = format!("{e:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn provider_kinds_serialize_snake_case() {
        assert_eq!(
            serde_json::to_string(&ProviderKind::OpenaiCompatible).unwrap(),
            "\"openai_compatible\""
        );
        assert_eq!(
            serde_json::from_str::<ProviderKind>("\"anthropic\"").unwrap(),
            ProviderKind::Anthropic
        );
        assert_eq!(ProviderKind::OpenaiCompatible.default_base_url(), None);
        assert_eq!(
            serde_json::to_string(&ChatRole::Assistant).unwrap(),
            "\"assistant\""
        );
    }
}
