//! The outbound URL policy: which URLs Integro may call on a tenant's behalf
//! (AI providers' base URLs, alert webhooks, and every later URL a tenant
//! supplies). A tenant must not make Integro reach the network it runs in:
//! loopback, private and link-local ranges, cloud metadata endpoints.
//!
//! Enforced in three places (docs/adr/0024-outbound-url-policy.md):
//! - when a URL is saved: [`OutboundPolicy::check_url_resolving`] (syntax,
//!   IP literals, well-known names, and what the name resolves to now);
//! - before each request: [`OutboundClient::request`] runs
//!   [`OutboundPolicy::check_url`] (IP literals never reach a resolver);
//! - when connecting: the [`OutboundClient`]'s resolver drops forbidden
//!   addresses from every answer (DNS rebinding), and its redirect policy
//!   checks each hop like a new URL.
//!
//! Operators exempt exact `host:port` pairs with `INTEGRO_OUTBOUND_ALLOW`
//! (e.g. `127.0.0.1:11434` for a local Ollama, `ollama:11434` for a
//! container; `*` as the port allows every port of that host).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Url};

/// The variable (and config key `outbound_allow`) listing the exceptions.
pub const ALLOW_VAR: &str = "INTEGRO_OUTBOUND_ALLOW";

/// How many redirects an [`OutboundClient`] follows (each one checked).
const MAX_REDIRECTS: usize = 5;

/// How long a save waits for a name to resolve before accepting it.
const SAVE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Names that always point inside: `localhost` and its subdomains, and the
/// cloud metadata services' names.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Why an address (or name) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    Loopback,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64/10 (carrier-grade NAT).
    Shared,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// A cloud provider's instance metadata service (address or name).
    Metadata,
    /// fc00::/7 (and the deprecated site-local fec0::/10).
    UniqueLocal,
    /// 0.0.0.0/8, `::` (0.0.0.0 reaches the host itself on Linux).
    Unspecified,
    Multicast,
    Broadcast,
    /// Documentation and benchmarking ranges, 240/4, IETF assignments.
    Reserved,
    /// `localhost` and `*.localhost`.
    LocalName,
}

impl Forbidden {
    fn describe(self) -> &'static str {
        match self {
            Forbidden::Loopback => "a loopback address",
            Forbidden::Private => "a private address",
            Forbidden::Shared => "a shared (carrier-grade NAT) address",
            Forbidden::LinkLocal => "a link-local address",
            Forbidden::Metadata => "a cloud metadata endpoint",
            Forbidden::UniqueLocal => "a unique-local address",
            Forbidden::Unspecified => "an unspecified address",
            Forbidden::Multicast => "a multicast address",
            Forbidden::Broadcast => "a broadcast address",
            Forbidden::Reserved => "a reserved address",
            Forbidden::LocalName => "a local name",
        }
    }

    /// A class for an exception to lift: the metadata service never is
    /// suggested (it still can be listed).
    fn hint(self) -> bool {
        self != Forbidden::Metadata
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Whether an address is one Integro must not call for a tenant, and why.
/// IPv4 inside IPv6 (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`) is judged as the IPv4 address it carries.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    let o = ip.octets();
    Some(match o {
        [169, 254, 169, 254] | [100, 100, 100, 200] => Forbidden::Metadata,
        [0, ..] => Forbidden::Unspecified,
        [127, ..] => Forbidden::Loopback,
        [10, ..] | [192, 168, ..] => Forbidden::Private,
        [172, b, ..] if (16..32).contains(&b) => Forbidden::Private,
        [100, b, ..] if (64..128).contains(&b) => Forbidden::Shared,
        [169, 254, ..] => Forbidden::LinkLocal,
        [255, 255, 255, 255] => Forbidden::Broadcast,
        [224..=239, ..] => Forbidden::Multicast,
        [240..=255, ..] => Forbidden::Reserved,
        // IETF protocol assignments, documentation, benchmarking.
        [192, 0, 0, _] | [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => {
            Forbidden::Reserved
        }
        [198, 18 | 19, ..] => Forbidden::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    if ip.is_unspecified() {
        return Some(Forbidden::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Forbidden::Loopback);
    }
    let s = ip.segments();
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64).
    let carried = match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 0, 0, 0, 0, ..] => {
            Some(Ipv4Addr::new(
                (s[6] >> 8) as u8,
                s[6] as u8,
                (s[7] >> 8) as u8,
                s[7] as u8,
            ))
        }
        _ => None,
    };
    if let Some(v4) = carried {
        return classify_v4(v4);
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(Forbidden::Metadata);
    }
    Some(match s[0] {
        0xfc00..=0xfdff => Forbidden::UniqueLocal,
        0xfe80..=0xfebf => Forbidden::LinkLocal,
        0xfec0..=0xfeff => Forbidden::UniqueLocal,
        0xff00..=0xffff => Forbidden::Multicast,
        // 2001:db8::/32 documentation, 100::/64 discard-only.
        0x2001 if s[1] == 0xdb8 => Forbidden::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => Forbidden::Reserved,
        _ => return None,
    })
}

/// Why a name is refused without resolving it.
fn classify_name(name: &str) -> Option<Forbidden> {
    let name = normal_name(name);
    if name == "localhost" || name.ends_with(".localhost") {
        Some(Forbidden::LocalName)
    } else if METADATA_NAMES.contains(&name.as_str()) {
        Some(Forbidden::Metadata)
    } else {
        None
    }
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A URL refused by the policy. The messages name the host, never the path
/// or query (a webhook URL often carries its secret there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("the URL is not valid ({0})")]
    Invalid(String),
    #[error("only http:// and https:// URLs are allowed")]
    Scheme,
    #[error("the URL must not contain a user name or password")]
    Userinfo,
    #[error("the URL has no host")]
    NoHost,
    /// The host is (or resolves to) a forbidden address or name.
    #[error("{}", blocked_message(host, *port, *class, *resolved))]
    Blocked {
        /// As written in the URL (`[::1]` with brackets), or the name looked up.
        host: String,
        /// Unknown when the resolver refused the name (it is not told the port).
        port: Option<u16>,
        class: Forbidden,
        /// The name resolved to it (the address is not shown: it may be an
        /// internal one the tenant should not learn).
        resolved: bool,
    },
    /// The host is an exception, but on other ports.
    #[error("{host} is allowed on port {allowed} only ({ALLOW_VAR})")]
    Port { host: String, allowed: String },
}

fn blocked_message(host: &str, port: Option<u16>, class: Forbidden, resolved: bool) -> String {
    let verb = if resolved { "resolves to" } else { "is" };
    let mut message = format!("{host} {verb} {class}");
    if class.hint() {
        let port = port.map_or_else(|| "PORT".to_string(), |p| p.to_string());
        message.push_str(&format!(
            "; an operator can allow it with {ALLOW_VAR}={host}:{port}"
        ));
    }
    message
}

/// The policy error somewhere in an error's chain of sources (a request
/// refused by the resolver or the redirect policy of an [`OutboundClient`]).
pub fn blocked_by<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a OutboundError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<OutboundError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A parsed URL's host: the URL parser writes every IPv4 form as a dotted
/// quad and IPv6 in brackets, so what does not parse as an address is a name.
fn host_of(host: &str) -> Host {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        && let Ok(ip) = v6.parse::<Ipv6Addr>()
    {
        return Host::Ip(IpAddr::V6(ip));
    }
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(IpAddr::V4(ip)),
        Err(_) => Host::Name(normal_name(host)),
    }
}

/// One `INTEGRO_OUTBOUND_ALLOW` entry: a host (name or IP) and a port, or
/// every port (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    host: Host,
    port: Option<u16>,
}

impl FromStr for Exception {
    type Err = String;

    /// `host:port`, `1.2.3.4:port`, `[v6]:port`; `*` for every port.
    fn from_str(entry: &str) -> Result<Exception, String> {
        let entry = entry.trim();
        let bad =
            || format!("{ALLOW_VAR} entry `{entry}` must be host:port (the port a number or *)");
        let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
        let port = match port {
            "*" => None,
            p => Some(p.parse::<u16>().map_err(|_| bad())?),
        };
        let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Host::Ip(IpAddr::V6(v6.parse().map_err(|_| bad())?))
        } else if let Ok(v4) = host.parse::<Ipv4Addr>() {
            Host::Ip(IpAddr::V4(v4))
        } else {
            let name = normal_name(host);
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
            if !valid {
                return Err(bad());
            }
            Host::Name(name)
        };
        Ok(Exception { host, port })
    }
}

impl Exception {
    fn allows_port(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

/// What Integro may call for a tenant: every public address, plus the
/// operator's exceptions. The default allows no exception.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<Exception>,
}

impl OutboundPolicy {
    /// A policy with exceptions (`host:port` entries, see [`Exception`]).
    pub fn allowing<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<OutboundPolicy, String> {
        let allow = entries
            .into_iter()
            .filter(|e| !e.as_ref().trim().is_empty())
            .map(|e| e.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboundPolicy { allow })
    }

    /// Checks a URL without resolving it: http(s), no user name or password,
    /// a host that is neither a forbidden IP literal nor a forbidden name.
    /// Decimal, octal and hex IPv4 forms (`http://2130706433/`) are parsed as
    /// the address they denote. Returns the parsed URL.
    pub fn check_url(&self, url: &str) -> Result<Url, OutboundError> {
        let parsed = Url::parse(url.trim()).map_err(|e| OutboundError::Invalid(e.to_string()))?;
        self.check(&parsed)?;
        Ok(parsed)
    }

    /// [`check_url`](Self::check_url) on a parsed URL.
    pub fn check(&self, url: &Url) -> Result<(), OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::Userinfo);
        }
        let host_str = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => return Err(OutboundError::NoHost),
        };
        let host = host_of(&host_str);
        let port = url.port_or_known_default().unwrap_or(80);
        if self.allows(&host, port) {
            return Ok(());
        }
        let class = match &host {
            Host::Ip(ip) => classify(*ip),
            Host::Name(name) => {
                // The resolver lets an excepted name resolve to anything,
                // whatever the port: refuse its other ports here.
                let ports: Vec<String> = self
                    .allow
                    .iter()
                    .filter(|e| matches!(&e.host, Host::Name(n) if n == name))
                    .filter_map(|e| e.port.map(|p| p.to_string()))
                    .collect();
                if !ports.is_empty() {
                    return Err(OutboundError::Port {
                        host: host_str,
                        allowed: ports.join(", "),
                    });
                }
                classify_name(name)
            }
        };
        match class {
            Some(class) => Err(OutboundError::Blocked {
                host: host_str,
                port: Some(port),
                class,
                resolved: false,
            }),
            None => Ok(()),
        }
    }

    /// [`check_url`](Self::check_url), then, for a name, what it resolves to
    /// now: any forbidden address refuses it. A name that does not resolve
    /// (yet) is accepted: the connection is checked again.
    pub async fn check_url_resolving(&self, url: &str) -> Result<Url, OutboundError> {
        let parsed = self.check_url(url)?;
        let Some(Host::Name(name)) = parsed.host_str().map(host_of) else {
            return Ok(parsed);
        };
        let name = name.as_str();
        let port = parsed.port_or_known_default().unwrap_or(80);
        if self.allows_name(name) {
            return Ok(parsed);
        }
        let lookup = tokio::net::lookup_host((name, port));
        if let Ok(Ok(addrs)) = tokio::time::timeout(SAVE_LOOKUP_TIMEOUT, lookup).await {
            refuse_any_forbidden(name, port, addrs.map(|a| a.ip()))?;
        }
        Ok(parsed)
    }

    fn allows(&self, host: &Host, port: u16) -> bool {
        self.allow
            .iter()
            .any(|e| &e.host == host && e.allows_port(port))
    }

    /// The name is an exception on some port ([`check`](Self::check) has
    /// checked the port).
    fn allows_name(&self, name: &str) -> bool {
        let name = normal_name(name);
        self.allow
            .iter()
            .any(|e| matches!(&e.host, Host::Name(n) if *n == name))
    }

    /// Resolves `name` and keeps the addresses the policy allows; an error
    /// when none is left.
    async fn resolve_allowed(&self, name: &str) -> Result<Vec<SocketAddr>, OutboundError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|e| OutboundError::Invalid(format!("{name} does not resolve: {e}")))?
            .collect();
        if self.allows_name(name) {
            return Ok(addrs);
        }
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match classify(a.ip()) {
                Some(class) => {
                    refused.get_or_insert(class);
                    false
                }
                None => true,
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some(class)) => Err(OutboundError::Blocked {
                host: name.to_string(),
                port: None,
                class,
                resolved: true,
            }),
            _ => Ok(allowed),
        }
    }
}

/// At save, a name with any forbidden address is refused (at connect, the
/// resolver would only drop those addresses).
fn refuse_any_forbidden(
    name: &str,
    port: u16,
    addrs: impl IntoIterator<Item = IpAddr>,
) -> Result<(), OutboundError> {
    match addrs.into_iter().find_map(classify) {
        Some(class) => Err(OutboundError::Blocked {
            host: name.to_string(),
            port: Some(port),
            class,
            resolved: true,
        }),
        None => Ok(()),
    }
}

/// Resolves through the policy: forbidden addresses never reach a connect.
struct PolicyResolver {
    policy: Arc<OutboundPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs = policy.resolve_allowed(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client for tenant-supplied URLs: every request URL and redirect
/// hop is checked, and names resolve through the policy. System proxies are
/// not used (through a proxy the addresses could not be checked). Cheap to
/// clone.
#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    policy: Arc<OutboundPolicy>,
}

impl OutboundClient {
    /// A client under `policy`. `configure` sets timeouts, the user agent,
    /// or `redirect(Policy::none())`; by default up to 5 redirects are
    /// followed, each checked. The resolver and the proxy setting are
    /// applied after it.
    pub fn new(
        policy: OutboundPolicy,
        configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<OutboundClient, reqwest::Error> {
        let policy = Arc::new(policy);
        let redirects = policy.clone();
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::custom(
            move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error("too many redirects");
                }
                match redirects.check(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            },
        ));
        let http = configure(builder)
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .build()?;
        Ok(OutboundClient { http, policy })
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// A request to `url`, once the policy allows it.
    pub fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, OutboundError> {
        let url = self.policy.check_url(url)?;
        Ok(self.http.request(method, url))
    }

    pub fn post(&self, url: &str) -> Result<RequestBuilder, OutboundError> {
        self.request(Method::POST, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn strict() -> OutboundPolicy {
        OutboundPolicy::default()
    }

    fn class_of(url: &str) -> Forbidden {
        match strict().check_url(url) {
            Err(OutboundError::Blocked { class, .. }) => class,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn public_urls_pass() {
        for url in [
            "https://api.openai.com/v1",
            "https://hooks.slack.com/services/T/B/X",
            "http://8.8.8.8:8080/x",
            "http://[2606:4700::1111]/",
            "https://example.com./",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
        ] {
            assert!(strict().check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn each_forbidden_class_is_refused() {
        for (url, class) in [
            ("http://127.0.0.1/", Forbidden::Loopback),
            ("http://127.9.9.9:8080/", Forbidden::Loopback),
            ("http://10.0.0.1/", Forbidden::Private),
            ("http://172.16.0.1/", Forbidden::Private),
            ("http://172.31.255.255/", Forbidden::Private),
            ("http://192.168.1.1/", Forbidden::Private),
            ("http://100.64.0.1/", Forbidden::Shared),
            ("http://169.254.1.1/", Forbidden::LinkLocal),
            (
                "http://169.254.169.254/latest/meta-data/",
                Forbidden::Metadata,
            ),
            ("http://100.100.100.200/", Forbidden::Metadata),
            ("http://0.0.0.0/", Forbidden::Unspecified),
            ("http://[::]/", Forbidden::Unspecified),
            ("http://[::1]/", Forbidden::Loopback),
            ("http://[fe80::1]/", Forbidden::LinkLocal),
            ("http://[fc00::1]/", Forbidden::UniqueLocal),
            ("http://[fd12:3456::1]/", Forbidden::UniqueLocal),
            ("http://[fd00:ec2::254]/", Forbidden::Metadata),
            ("http://224.0.0.1/", Forbidden::Multicast),
            ("http://[ff02::1]/", Forbidden::Multicast),
            ("http://255.255.255.255/", Forbidden::Broadcast),
            ("http://192.0.2.1/", Forbidden::Reserved),
            ("http://[2001:db8::1]/", Forbidden::Reserved),
            ("http://240.0.0.1/", Forbidden::Reserved),
            ("http://localhost:11434/v1", Forbidden::LocalName),
            ("http://LOCALHOST./", Forbidden::LocalName),
            ("http://api.localhost/", Forbidden::LocalName),
            ("http://metadata.google.internal/", Forbidden::Metadata),
            ("http://metadata.google.internal./", Forbidden::Metadata),
        ] {
            assert_eq!(class_of(url), class, "{url}");
        }
    }

    #[test]
    fn other_spellings_of_an_address_are_the_address() {
        // The URL parser reads decimal, hex, octal and short IPv4 forms.
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
        ] {
            assert_eq!(class_of(url), Forbidden::Loopback, "{url}");
        }
        assert_eq!(class_of("http://[::ffff:127.0.0.1]/"), Forbidden::Loopback);
        assert_eq!(class_of("http://[::ffff:a00:1]/"), Forbidden::Private);
        assert_eq!(
            class_of("http://[::ffff:169.254.169.254]/"),
            Forbidden::Metadata
        );
        assert_eq!(class_of("http://[::127.0.0.1]/"), Forbidden::Loopback);
        assert_eq!(class_of("http://[64:ff9b::10.0.0.1]/"), Forbidden::Private);
        assert_eq!(class_of("http://2852039166/"), Forbidden::Metadata);
    }

    #[test]
    fn syntax() {
        assert_eq!(
            strict().check_url("http://user:pass@example.com/"),
            Err(OutboundError::Userinfo)
        );
        assert_eq!(
            strict().check_url("https://token@example.com/"),
            Err(OutboundError::Userinfo)
        );
        assert_eq!(
            strict().check_url("ftp://example.com/"),
            Err(OutboundError::Scheme)
        );
        assert_eq!(
            strict().check_url("file:///etc/passwd"),
            Err(OutboundError::Scheme)
        );
        assert!(matches!(
            strict().check_url("localhost:11434/v1"),
            Err(OutboundError::Scheme)
        ));
        assert!(matches!(
            strict().check_url("not a url"),
            Err(OutboundError::Invalid(_))
        ));
        assert!(matches!(
            strict().check_url("http://"),
            Err(OutboundError::Invalid(_) | OutboundError::NoHost)
        ));
    }

    #[test]
    fn messages_name_the_host_and_the_exception() {
        let e = strict()
            .check_url("http://10.0.0.1/hook/secret-token")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "10.0.0.1 is a private address; an operator can allow it with \
             INTEGRO_OUTBOUND_ALLOW=10.0.0.1:80"
        );
        let e = strict()
            .check_url("https://[::1]:8443/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("INTEGRO_OUTBOUND_ALLOW=[::1]:8443"), "{e}");
        let e = strict()
            .check_url("http://169.254.169.254/")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "169.254.169.254 is a cloud metadata endpoint");
    }

    #[test]
    fn exceptions_lift_exactly_their_host_and_port() {
        let p = OutboundPolicy::allowing([
            "127.0.0.1:11434",
            "[::1]:8080",
            "ollama:11434",
            "10.1.2.3:*",
            " LocalHost.:9000 ",
        ])
        .unwrap();
        assert!(p.check_url("http://127.0.0.1:11434/v1").is_ok());
        assert!(p.check_url("http://2130706433:11434/v1").is_ok());
        assert!(p.check_url("http://127.0.0.1:11435/v1").is_err());
        assert!(p.check_url("http://127.0.0.1/v1").is_err());
        assert!(p.check_url("http://[::1]:8080/").is_ok());
        assert!(p.check_url("http://[::1]:8081/").is_err());
        assert!(p.check_url("http://10.1.2.3:1/").is_ok());
        assert!(p.check_url("https://10.1.2.3/").is_ok());
        assert!(p.check_url("http://10.1.2.4/").is_err());
        assert!(p.check_url("http://localhost:9000/").is_ok());
        assert!(p.check_url("http://localhost:9001/").is_err());
        assert!(p.check_url("http://ollama:11434/v1").is_ok());
        assert_eq!(
            p.check_url("http://ollama:22/").unwrap_err(),
            OutboundError::Port {
                host: "ollama".into(),
                allowed: "11434".into()
            }
        );
        // An exception does not lift the syntax rules.
        assert_eq!(
            p.check_url("http://a:b@127.0.0.1:11434/"),
            Err(OutboundError::Userinfo)
        );
    }

    #[test]
    fn bad_exceptions_are_explained() {
        for bad in [
            "127.0.0.1",
            "host:",
            "host:port",
            ":80",
            "[::1:80",
            "a b:80",
            "h:70000",
        ] {
            let e = OutboundPolicy::allowing([bad]).unwrap_err();
            assert!(e.contains("INTEGRO_OUTBOUND_ALLOW entry"), "{bad}: {e}");
        }
        assert_eq!(
            OutboundPolicy::allowing(["", " "]).unwrap(),
            OutboundPolicy::default()
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_forbidden_addresses() {
        let p = strict();
        match p.resolve_allowed("localhost").await {
            Err(OutboundError::Blocked {
                class: Forbidden::Loopback,
                resolved: true,
                port: None,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let p = OutboundPolicy::allowing(["localhost:1"]).unwrap();
        assert!(!p.resolve_allowed("localhost").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn saving_a_name_checks_what_it_resolves_to() {
        // `localhost` is refused by name; a name resolving to loopback is
        // refused by its address (`localhost.` is the name, fully qualified).
        let e = strict()
            .check_url_resolving("http://localhost:8080/")
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            OutboundError::Blocked {
                class: Forbidden::LocalName,
                ..
            }
        ));
        let e = refuse_any_forbidden(
            "rebind.example.com",
            443,
            [
                "93.184.216.34".parse().unwrap(),
                "10.0.0.1".parse().unwrap(),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rebind.example.com resolves to a private address; an operator can allow it with \
             INTEGRO_OUTBOUND_ALLOW=rebind.example.com:443"
        );
        assert!(refuse_any_forbidden("x.example", 80, ["93.184.216.34".parse().unwrap()]).is_ok());
        // A name that does not resolve is accepted at save.
        assert!(
            strict()
                .check_url_resolving("http://does-not-exist.invalid/")
                .await
                .is_ok()
        );
    }

    /// A one-shot HTTP server on 127.0.0.1 answering `response`.
    async fn serve_once(response: String) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        port
    }

    fn client(policy: OutboundPolicy) -> OutboundClient {
        let _ = rustls::crypto::ring::default_provider().install_default();
        OutboundClient::new(policy, |b| b.timeout(Duration::from_secs(5))).unwrap()
    }

    #[tokio::test]
    async fn connections_resolve_through_the_policy() {
        let port = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into()).await;
        // Allowed by address: the name `localhost` still is not (exceptions
        // lift exactly what they name).
        let c = client(OutboundPolicy::allowing([format!("127.0.0.1:{port}")]).unwrap());
        let ok = c
            .request(Method::GET, &format!("http://127.0.0.1:{port}/"))
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert!(
            c.request(Method::GET, &format!("http://localhost:{port}/"))
                .is_err()
        );

        // Past the URL check (a request built on the inner client), the
        // resolver still refuses a name that resolves to loopback.
        let err = c
            .http
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        match blocked_by(&err) {
            Some(OutboundError::Blocked { resolved: true, .. }) => {}
            other => panic!("{err:?}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn redirects_are_checked_hop_by_hop() {
        let to_metadata = serve_once(
            "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\n\r\n"
                .into(),
        )
        .await;
        let target = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into()).await;
        let to_allowed = serve_once(format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target}/\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let c = client(
            OutboundPolicy::allowing([
                format!("127.0.0.1:{to_metadata}"),
                format!("127.0.0.1:{to_allowed}"),
                format!("127.0.0.1:{target}"),
            ])
            .unwrap(),
        );
        let err = c
            .request(Method::GET, &format!("http://127.0.0.1:{to_metadata}/"))
            .unwrap()
            .send()
            .await
            .unwrap_err();
        assert!(err.is_redirect(), "{err:?}");
        assert!(matches!(
            blocked_by(&err),
            Some(OutboundError::Blocked {
                class: Forbidden::Metadata,
                ..
            })
        ));
        let ok = c
            .request(Method::GET, &format!("http://127.0.0.1:{to_allowed}/"))
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
}
