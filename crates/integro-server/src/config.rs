//! Configuration: defaults that need nothing, then a TOML file (`INTEGRO_CONFIG`
//! or `--config`), then `INTEGRO_*` environment variables; the environment wins.
//! Every setting is documented here, with its variable and default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `INTEGRO_LISTEN`: address the HTTP server binds.
    pub listen: String,
    /// `INTEGRO_DATA_DIR`: where the SQLite database and the generated master key live.
    pub data_dir: PathBuf,
    /// `INTEGRO_DATABASE_URL`: `postgres://…` or `sqlite://…`; default SQLite in the data dir.
    pub database_url: Option<String>,
    /// `INTEGRO_MASTER_KEY`: base64 of 32 bytes; seals secrets and signs tokens.
    pub master_key: Option<String>,
    /// `INTEGRO_PREVIOUS_MASTER_KEYS`: older master keys (comma-separated) still
    /// accepted for opening secrets during a rotation.
    #[serde(deserialize_with = "string_or_list")]
    pub previous_master_keys: Vec<String>,
    /// `INTEGRO_PUBLIC_URL`: the externally visible base URL (behind a proxy).
    pub public_url: Option<String>,
    /// `INTEGRO_ADMIN_EMAIL` / `INTEGRO_ADMIN_PASSWORD`: the first operator;
    /// generated and printed once when unset.
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    /// `INTEGRO_ACCESS_TOKEN_TTL_SECS`: lifetime of JWT access tokens.
    pub access_token_ttl_secs: i64,
    /// `INTEGRO_REFRESH_TOKEN_TTL_SECS`: lifetime of refresh tokens.
    pub refresh_token_ttl_secs: i64,
    /// `INTEGRO_RATE_LIMIT_PER_HOUR`: API requests per hour per API key or user.
    pub rate_limit_per_hour: u32,
    /// `INTEGRO_BODY_LIMIT_BYTES`: largest accepted request body.
    pub body_limit_bytes: usize,
    /// `INTEGRO_REQUEST_TIMEOUT_SECS`: a request taking longer answers 408.
    pub request_timeout_secs: u64,
    /// `INTEGRO_CORS_ORIGINS`: origins allowed to call the API from a browser
    /// (comma-separated, `*` for any); none by default.
    #[serde(deserialize_with = "string_or_list")]
    pub cors_origins: Vec<String>,
    /// `INTEGRO_TRUSTED_PROXIES`: addresses of reverse proxies (exact IPs,
    /// comma-separated) whose `X-Forwarded-For` names the client; the
    /// per-address throttles then count the client, not the proxy.
    #[serde(deserialize_with = "string_or_list")]
    pub trusted_proxies: Vec<String>,
    /// `INTEGRO_DB_MAX_CONNECTIONS`: database pool size.
    pub db_max_connections: u32,
    /// `INTEGRO_PG_GROUP_COMMIT`: on PostgreSQL, the workers' writes share
    /// commits (`true`: for storage whose flushes are slow); by default
    /// each commits on its own.
    pub pg_group_commit: bool,
    /// `INTEGRO_LOG`: log filter, e.g. `info` or `integro=debug,info`.
    pub log: String,
    /// `INTEGRO_LOG_FORMAT`: `auto` (JSON unless on a terminal), `json` or `pretty`.
    pub log_format: String,
    /// `INTEGRO_TWILIO_API_BASE`: Twilio's REST API (tests and proxies point elsewhere).
    pub twilio_api_base: String,
    /// `INTEGRO_GRAPH_API_BASE`: Meta's Graph API, for the WhatsApp Cloud API.
    pub graph_api_base: String,
    /// `INTEGRO_GRAPH_API_VERSION`: Graph API version used in request paths.
    pub graph_api_version: String,
    /// `INTEGRO_INSTAGRAM_API_BASE`: Instagram's Graph API.
    pub instagram_api_base: String,
    /// `INTEGRO_X_API_BASE`: X's API.
    pub x_api_base: String,
    /// `INTEGRO_PROVIDER_TIMEOUT_SECS`: a provider call taking longer is retried.
    pub provider_timeout_secs: u64,
    /// `INTEGRO_MAX_IN_FLIGHT`: requests handled at once; past it, 503 with
    /// `Retry-After` (providers deliver again) instead of piling up memory.
    pub max_in_flight: usize,
    /// `INTEGRO_WORKERS`: jobs run at once by this process (0: `serve` runs no workers).
    pub workers: usize,
    /// `INTEGRO_AUTO_MIGRATE`: `serve` and `worker` apply pending migrations
    /// when they start (default); with `false` they refuse to start on a
    /// database that is behind (migrations then run as their own step,
    /// `integro migrate`, e.g. a deployment's hook job).
    pub auto_migrate: bool,
    /// `INTEGRO_WORKER_LISTEN`: where `integro worker` serves `/healthz`,
    /// `/readyz` and `/metrics`.
    pub worker_listen: String,
    /// `INTEGRO_WEBHOOK_LOG_RETENTION_DAYS`: how long the webhook log keeps entries.
    pub webhook_log_retention_days: u64,
    /// `INTEGRO_JOB_LEASE_SECS`: how long a worker holds a job without
    /// renewing it; the jobs of a worker that died are taken again after this.
    pub job_lease_secs: u64,
    /// `INTEGRO_SEND_STATUS_GRACE_SECS`: how long a WhatsApp Cloud send whose
    /// outcome is unknown waits for Meta's status report before it is sent
    /// again.
    pub send_status_grace_secs: u64,
    /// `INTEGRO_X_POLL_SECS`: how often X accounts set to `receive=polling`
    /// are polled (X allows a user's direct messages to be read 15 times in
    /// 15 minutes: 60 s or more).
    pub x_poll_secs: u64,
    /// `INTEGRO_X_METRICS_SECS`: how often published X posts' public
    /// metrics are read again (each post an owned read, for 30 days).
    pub x_metrics_secs: u64,
    /// `INTEGRO_BREAKER_THRESHOLD`: failures in a row that open a provider's
    /// circuit (channel accounts and AI credentials alike).
    pub breaker_threshold: u32,
    /// `INTEGRO_BREAKER_COOL_DOWN_SECS`: how long an open circuit waits before
    /// one trial call.
    pub breaker_cool_down_secs: u64,
    /// `INTEGRO_OUTBOUND_ALLOW`: exceptions to the outbound URL policy, which
    /// keeps tenants' URLs (AI base URLs, alert webhooks) off loopback,
    /// private, link-local and metadata addresses. Comma-separated `host:port`
    /// entries (`127.0.0.1:11434` for a local Ollama, `ollama:11434`,
    /// `[::1]:8080`; `*` as the port for every port); none by default.
    #[serde(deserialize_with = "string_or_list")]
    pub outbound_allow: Vec<String>,
    /// `INTEGRO_REDIS_URL`: where the processes keep their shared rate limits
    /// and sign-in throttles (`redis://host:6379`). Without it they are kept
    /// in PostgreSQL when that is the database, in memory on SQLite.
    pub redis_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./integro-data"),
            database_url: None,
            master_key: None,
            previous_master_keys: Vec::new(),
            public_url: None,
            admin_email: None,
            admin_password: None,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            rate_limit_per_hour: 1000,
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            db_max_connections: 10,
            pg_group_commit: false,
            log: "info".into(),
            log_format: "auto".into(),
            twilio_api_base: "https://api.twilio.com".into(),
            graph_api_base: "https://graph.facebook.com".into(),
            graph_api_version: "v23.0".into(),
            instagram_api_base: "https://graph.instagram.com".into(),
            x_api_base: "https://api.x.com".into(),
            provider_timeout_secs: 15,
            workers: 16,
            auto_migrate: true,
            worker_listen: "127.0.0.1:9091".into(),
            max_in_flight: 2048,
            webhook_log_retention_days: 7,
            job_lease_secs: 60,
            send_status_grace_secs: 30,
            x_poll_secs: 60,
            x_metrics_secs: 900,
            redis_url: None,
            breaker_threshold: 5,
            breaker_cool_down_secs: 30,
            outbound_allow: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist (set by INTEGRO_CONFIG or --config)")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then the file (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("INTEGRO_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("INTEGRO_").ignore(&["config"]));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.normalize();
        config.validate()?;
        Ok(config)
    }

    /// Puts values that have several spellings into one, once, so that
    /// everything reading them agrees: the public URL loses its trailing
    /// slashes (`https://x/` and `https://x/integro/` would otherwise give
    /// callback URLs with `//`, which providers' signatures or proxies
    /// refuse).
    pub fn normalize(&mut self) {
        if let Some(url) = &mut self.public_url {
            let trimmed = url.trim().trim_end_matches('/').to_string();
            *url = trimmed;
        }
        if self.public_url.as_deref() == Some("") {
            self.public_url = None;
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.trusted_proxy_addrs()?;
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "INTEGRO_PUBLIC_URL `{url}` must start with http:// or https://"
            )));
        }
        if self.rate_limit_per_hour == 0 {
            return Err(ConfigError::Invalid(
                "INTEGRO_RATE_LIMIT_PER_HOUR must be at least 1".into(),
            ));
        }
        if self.access_token_ttl_secs <= 0 || self.refresh_token_ttl_secs <= 0 {
            return Err(ConfigError::Invalid(
                "token lifetimes must be positive".into(),
            ));
        }
        self.outbound_policy()?;
        Ok(())
    }

    /// The outbound URL policy with `INTEGRO_OUTBOUND_ALLOW`'s exceptions.
    pub fn outbound_policy(&self) -> Result<integro_core::outbound::OutboundPolicy, ConfigError> {
        integro_core::outbound::OutboundPolicy::allowing(&self.outbound_allow)
            .map_err(ConfigError::Invalid)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "INTEGRO_LISTEN `{}` is not an address like 127.0.0.1:8080 or 0.0.0.0:8080",
                self.listen
            ))
        })
    }

    /// The database URL in force: the configured one, or SQLite in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => format!("sqlite://{}", self.data_dir.join("integro.db").display()),
        }
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    pub fn provider_urls(&self) -> integro_channels::ProviderUrls {
        integro_channels::ProviderUrls {
            twilio: self.twilio_api_base.clone(),
            graph: self.graph_api_base.clone(),
            graph_version: self.graph_api_version.clone(),
            instagram: self.instagram_api_base.clone(),
            x: self.x_api_base.clone(),
        }
    }

    /// The base URL the outside world uses to reach us, given the address
    /// the server is bound to.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{bound}"),
        }
    }

    /// `trusted_proxies` parsed.
    pub fn trusted_proxy_addrs(&self) -> Result<Vec<std::net::IpAddr>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.trim().parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "INTEGRO_TRUSTED_PROXIES entry `{p}` is not an IP address"
                    ))
                })
            })
            .collect()
    }

    /// The base URL of webhooks and links: the public URL, or else the
    /// listen address (which providers cannot reach).
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Why providers cannot reach the webhook URLs, when that is so.
    pub fn public_url_warning(&self) -> Option<String> {
        self.public_url.is_none().then(|| {
            format!(
                "INTEGRO_PUBLIC_URL is not set, so these URLs name http://{}, which a provider cannot reach: \
                 set it to the HTTPS address that reaches this server (a tunnel while trying it)",
                self.listen
            )
        })
    }
}

/// Accepts `["a", "b"]` in TOML and `a,b` in an environment variable.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Error is what Jail closures return
    fn env_wins_over_file_and_lists_split_on_commas() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "integro.toml",
                "listen = \"127.0.0.1:9000\"\nrate_limit_per_hour = 5\ncors_origins = [\"https://a\"]",
            )?;
            jail.set_env("INTEGRO_LISTEN", "127.0.0.1:9100");
            jail.set_env("INTEGRO_PREVIOUS_MASTER_KEYS", "k1, k2");
            let c = Config::load(Some(Path::new("integro.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "127.0.0.1:9100");
            assert_eq!(c.rate_limit_per_hour, 5);
            assert_eq!(c.cors_origins, vec!["https://a"]);
            assert_eq!(c.previous_master_keys, vec!["k1", "k2"]);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Error is what Jail closures return
    fn outbound_exceptions_are_a_list_and_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("INTEGRO_OUTBOUND_ALLOW", "127.0.0.1:11434, ollama:*");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.outbound_allow, vec!["127.0.0.1:11434", "ollama:*"]);
            let policy = c.outbound_policy().map_err(|e| e.to_string())?;
            assert!(policy.check_url("http://127.0.0.1:11434/v1").is_ok());
            assert!(policy.check_url("http://127.0.0.1:8080/").is_err());
            jail.set_env("INTEGRO_OUTBOUND_ALLOW", "127.0.0.1");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("INTEGRO_OUTBOUND_ALLOW entry"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_listen_address_is_explained() {
        let c = Config {
            listen: "localhost".into(),
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("INTEGRO_LISTEN")
        );
    }

    #[test]
    fn missing_file_is_reported() {
        let err = Config::load(Some(Path::new("/nonexistent/integro.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }
}
