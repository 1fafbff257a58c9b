//! Building the application from configuration: data directory, master key,
//! database and migrations, the first operator, then the HTTP router. Tests
//! start the same application on port 0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use integro_core::Actor;
use integro_store::Db;
use integro_store::credentials::generate_password;
use integro_store::db::ConnectOptions;
use integro_store::secrets::{Keyring, Keys, MasterKey, Reload};
use integro_store::users::{self, NewUser};
use integro_worker::accounts::{ACCOUNT_TTL, AccountCache};
use integro_worker::egress::Egress;
use integro_worker::{Engine, Worker, WorkerConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::rate_limit::{RateLimit, SharedLimits};
use crate::state::AppState;
use crate::tokens::TokenKeys;

/// Makes glibc give blocks of 1 MiB and more back to the system when they
/// are freed. By default it raises that threshold to the largest block
/// freed so far, so after the first password hash each 19 MiB argon2 block
/// stayed cached in whichever of its per-thread arenas served it, and a
/// burst of failed sign-ins grew the process by hundreds of MiB for good. A
/// mapping per hash costs far less than the hash. Process-wide, so set
/// once when the server is built.
pub fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; any value
            // is valid for M_MMAP_THRESHOLD up to its documented maximum.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        });
    }
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(std::path::PathBuf),
    Generated(std::path::PathBuf),
}

/// The master key from `INTEGRO_MASTER_KEY`, or from `master.key` in the data
/// directory, created (mode 0600) on first run. Previous keys come from
/// `INTEGRO_PREVIOUS_MASTER_KEYS` and, with the key file, from
/// `master.key.previous` (one a line), which `integro secrets rotate`
/// writes. A keyring read from files reads them again when it meets a
/// secret sealed with a key it does not know, so a running server follows
/// a rotation.
pub fn load_keyring(config: &Config) -> anyhow::Result<(Keyring, KeySource)> {
    let previous = config
        .previous_master_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            MasterKey::from_base64(k)
                .with_context(|| format!("INTEGRO_PREVIOUS_MASTER_KEYS entry {}", i + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(text) = &config.master_key {
        let key = MasterKey::from_base64(text).context("INTEGRO_MASTER_KEY")?;
        return Ok((Keyring::new(key, previous), KeySource::Environment));
    }
    let path = config.master_key_path();
    let generated = !path.exists();
    if generated {
        write_private(&path, MasterKey::generate().to_base64().as_bytes())?;
    }
    {
        let keys = read_key_files(config, &previous)?;
        let reload_config = config.clone();
        let reload: Reload = Arc::new(move || match read_key_files(&reload_config, &previous) {
            Ok(keys) => Some(keys),
            Err(e) => {
                tracing::error!(error = %e, "could not read the master key files again");
                None
            }
        });
        let keyring = Keyring::new(keys.current, keys.previous).with_reload(reload);
        let source = if generated {
            KeySource::Generated(path)
        } else {
            KeySource::File(path)
        };
        Ok((keyring, source))
    }
}

/// `master.key` and `master.key.previous` (plus the configured previous keys).
fn read_key_files(config: &Config, configured: &[MasterKey]) -> anyhow::Result<Keys> {
    let path = config.master_key_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let current = MasterKey::from_base64(&text)
        .with_context(|| format!("master key file {}", path.display()))?;
    let mut previous = configured.to_vec();
    let previous_path = previous_keys_path(config);
    if previous_path.exists() {
        let text = std::fs::read_to_string(&previous_path)
            .with_context(|| format!("reading {}", previous_path.display()))?;
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            previous.push(
                MasterKey::from_base64(line)
                    .with_context(|| format!("{} line {}", previous_path.display(), i + 1))?,
            );
        }
    }
    Ok(Keys { current, previous })
}

pub fn previous_keys_path(config: &Config) -> PathBuf {
    config.data_dir.join("master.key.previous")
}

/// Rotates the key files: a new `master.key`, the old one added to
/// `master.key.previous`. Returns the new keys. Servers reading these files
/// pick the new key up the first time they meet a secret sealed with it.
pub fn rotate_key_files(config: &Config) -> anyhow::Result<Keys> {
    let old = read_key_files(config, &[])?;
    let new = MasterKey::generate();
    let previous_path = previous_keys_path(config);
    let mut lines: Vec<String> = std::iter::once(old.current.to_base64())
        .chain(old.previous.iter().map(MasterKey::to_base64))
        .collect();
    lines.dedup();
    replace_private(&previous_path, format!("{}\n", lines.join("\n")).as_bytes())?;
    replace_private(&config.master_key_path(), new.to_base64().as_bytes())?;
    read_key_files(config, &load_configured_previous(config)?)
}

fn load_configured_previous(config: &Config) -> anyhow::Result<Vec<MasterKey>> {
    config
        .previous_master_keys
        .iter()
        .map(|k| MasterKey::from_base64(k).context("INTEGRO_PREVIOUS_MASTER_KEYS"))
        .collect()
}

/// Writes `contents` to `path` (mode 0600) in one step: a reader sees the
/// old file or the new one, never half of one.
fn replace_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, contents)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// Creates `dir` (and its parents) readable by this user only: it holds the
/// master key and the database.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Connects to the configured database (creating the data directory for the
/// default SQLite file) and applies pending migrations.
pub async fn open_database(config: &Config, migrate: bool) -> anyhow::Result<Db> {
    let url = config.database_url();
    if url.starts_with("sqlite:") && config.database_url.is_none() {
        create_private_dir(&config.data_dir)?;
    }
    let db = Db::connect_with(
        &url,
        ConnectOptions {
            max_connections: config.db_max_connections,
            pg_group_commit: config.pg_group_commit,
            ..ConnectOptions::default()
        },
    )
    .await?;
    if migrate {
        integro_store::migrations::migrate(&db).await?;
    }
    Ok(db)
}

/// Fails, saying what to run, when the database lacks a migration this
/// binary needs (`INTEGRO_AUTO_MIGRATE=false`).
pub async fn require_migrated(db: &Db) -> anyhow::Result<()> {
    let applied = db.applied_migrations().await.unwrap_or_default();
    let latest = integro_store::migrations::latest();
    if !applied.contains(&latest) {
        bail!(
            "the {} database is at schema version {} and this binary needs {latest}; \
             INTEGRO_AUTO_MIGRATE is false, so run `integro migrate` first",
            db.backend().name(),
            applied.last().copied().unwrap_or(0)
        );
    }
    Ok(())
}

/// The first operator account, created when none exists.
#[derive(Debug, Clone)]
pub struct BootstrappedOperator {
    pub email: String,
    /// Set when the password was generated: it is shown this once.
    pub generated_password: Option<String>,
}

pub async fn bootstrap_operator(
    db: &Db,
    config: &Config,
) -> anyhow::Result<Option<BootstrappedOperator>> {
    if users::operator_exists(db).await? {
        return Ok(None);
    }
    let email = config
        .admin_email
        .clone()
        .unwrap_or_else(|| "admin@integro.local".to_string());
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.clone(), None),
        None => {
            let p = generate_password();
            (p.clone(), Some(p))
        }
    };
    let mut tx = db.begin().await?;
    users::create(
        &mut tx,
        &Actor::system(),
        None,
        NewUser {
            email: &email,
            name: Some("Operator"),
            password: &password,
            is_operator: true,
        },
    )
    .await
    .context("creating the first operator (INTEGRO_ADMIN_EMAIL / INTEGRO_ADMIN_PASSWORD)")?;
    tx.commit().await?;
    Ok(Some(BootstrappedOperator {
        email,
        generated_password: generated,
    }))
}

/// The process-wide Prometheus recorder (metrics has one global recorder).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("valid buckets")
                .install_recorder()
                .expect("the metrics recorder is installed once");
            // A histogram keeps every sample until upkeep folds them into its
            // buckets. Run only when /metrics was scraped, a process nobody
            // scraped grew by every sample it recorded (ADR 0029).
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("integro-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("the metrics upkeep thread starts");
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(1);

/// The reply engine: LLM calls retried twice with backoff, and a provider
/// credential's circuit opened after `breaker_threshold` failures in a row.
/// Its HTTP client carries the outbound URL policy (`INTEGRO_OUTBOUND_ALLOW`;
/// a configuration that fails validation falls back to no exception).
pub fn engine(config: &Config) -> Engine {
    let outbound = config.outbound_policy().unwrap_or_else(|e| {
        tracing::error!(error = %e, "outbound URL policy without exceptions");
        integro_core::outbound::OutboundPolicy::default()
    });
    Engine::new(integro_ai::client::AiClient::with_outbound(
        outbound,
        integro_ai::retry::RetryPolicy::default(),
        Arc::new(integro_core::breaker::CircuitBreakers::new(
            config.breaker_threshold,
            Duration::from_secs(config.breaker_cool_down_secs),
        )),
    ))
}

/// A ready application: state, and what bootstrapping did.
pub struct App {
    pub state: AppState,
    pub key_source: KeySource,
    pub operator: Option<BootstrappedOperator>,
    /// Tells workers and event streams that the process is stopping.
    stop: watch::Sender<bool>,
}

impl App {
    /// The application a server runs; it creates the first operator account
    /// when there is none (and prints a generated password).
    pub async fn build(config: Config) -> anyhow::Result<App> {
        App::build_as(config, true).await
    }

    /// The application a worker process runs: it creates no operator
    /// account, so that a generated password is shown by `serve`, never
    /// lost in a worker's log.
    pub async fn build_for_workers(config: Config) -> anyhow::Result<App> {
        App::build_as(config, false).await
    }

    async fn build_as(mut config: Config, bootstrap: bool) -> anyhow::Result<App> {
        return_large_blocks_to_the_system();
        config.normalize();
        config.validate()?;
        let (keyring, key_source) = load_keyring(&config)?;
        let db = open_database(&config, config.auto_migrate).await?;
        if !config.auto_migrate {
            require_migrated(&db).await?;
        }
        let operator = if bootstrap {
            bootstrap_operator(&db, &config).await?
        } else {
            None
        };
        let tokens = TokenKeys::new(&keyring.current().derive("jwt-access-v1"));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (stop, stopping) = watch::channel(false);
        let engine = Arc::new(engine(&config));
        let trusted_proxies: Arc<[std::net::IpAddr]> = config.trusted_proxy_addrs()?.into();
        let shared = SharedLimits::connect(config.redis_url.as_deref(), &db).await?;
        let shared = shared.as_ref();
        let state = AppState::new(crate::state::Shared {
            stopping,
            ingest: crate::ingest::Ingestor::start(db.clone(), wake.clone()),
            accounts: AccountCache::new(ACCOUNT_TTL),
            wake,
            db,
            rate_limit: Arc::new(
                RateLimit::per_hour("api", config.rate_limit_per_hour).shared_in(shared),
            ),
            login_guard: Arc::new(crate::login_guard::LoginGuard::new(shared)),
            refusals: crate::webhooks::refusals::Refusals::new(trusted_proxies.clone(), shared),
            trusted_proxies,
            visitors: Arc::new(crate::api::web::public::Visitors::new(
                &keyring
                    .current()
                    .derive(crate::api::web::public::TOKEN_KEY_PURPOSE),
                shared,
            )),
            streams: crate::streams::StreamSlots::new(
                crate::streams::PER_CALLER,
                crate::streams::PER_TENANT,
            ),
            config: Arc::new(config),
            keyring: Arc::new(keyring),
            tokens,
            metrics: metrics_handle(),
            engine,
            x_crc: RateLimit::per_minute("x_crc", crate::webhooks::x::CRC_PER_MINUTE)
                .shared_in(shared),
        });
        Ok(App {
            state,
            key_source,
            operator,
            stop,
        })
    }

    /// A worker sharing this application's database, keys and wake-up signal.
    pub fn worker(&self) -> Arc<Worker> {
        build_worker(&self.state)
    }

    /// Runs only workers (`integro worker`) until `shutdown` resolves.
    pub async fn run_workers(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let task = tokio::spawn(self.worker().run(self.state.stopping.clone()));
        shutdown.await;
        let _ = self.stop.send(true);
        let _ = task.await;
        self.state.db.close().await;
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` alone on `listener`
    /// until the process stops: a worker process is probed and scraped
    /// there.
    pub fn spawn_probes(&self, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        let router = crate::api::health::router()
            .split_for_parts()
            .0
            .with_state(self.state.clone());
        let mut stopping = self.state.stopping.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "the probes' server stopped");
            }
        })
    }

    /// Serves until `shutdown` resolves, then drains open requests; runs
    /// `INTEGRO_WORKERS` workers alongside.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let limiter = self.state.rate_limit.clone();
        let login_guard = self.state.login_guard.clone();
        let refusals = self.state.refusals.clone();
        let visitors = self.state.visitors.clone();
        let janitor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.forget_idle();
                login_guard.forget_idle();
                refusals.forget_idle();
                visitors.forget_idle();
            }
        });
        let stopping = self.state.stopping.clone();
        let workers = (self.state.config.workers > 0).then(|| {
            let worker = self.worker();
            self.state.ingest.attach(worker.clone());
            tokio::spawn(worker.run(stopping))
        });
        let db = self.state.db.clone();
        let router = crate::http::router(self.state);
        let stop = Arc::new(self.stop);
        let stop_on_signal = stop.clone();
        // The peer's address reaches handlers that throttle by source.
        let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                // Long-lived responses (event streams) end, so draining finishes.
                let _ = stop_on_signal.send(true);
            })
            .await;
        janitor.abort();
        let _ = stop.send(true);
        if let Some(w) = workers {
            let _ = w.await;
        }
        db.close().await;
        if let Err(e) = result {
            bail!("server error: {e}");
        }
        Ok(())
    }
}

pub fn build_worker(state: &AppState) -> Arc<Worker> {
    let config = &state.config;
    let egress = Egress {
        client: integro_channels::http::client(Duration::from_secs(config.provider_timeout_secs)),
        urls: config.provider_urls(),
        public_url: config.public_url.clone(),
    };
    let worker_config = WorkerConfig {
        concurrency: config.workers.max(1),
        webhook_log_retention: Duration::from_secs(config.webhook_log_retention_days * 24 * 3600),
        lease: Duration::from_secs(config.job_lease_secs.max(1)),
        status_grace: Duration::from_secs(config.send_status_grace_secs),
        x_poll_interval: Duration::from_secs(config.x_poll_secs.max(1)),
        x_metrics_interval: Duration::from_secs(config.x_metrics_secs.max(1)),
        breaker_threshold: config.breaker_threshold,
        breaker_cool_down: Duration::from_secs(config.breaker_cool_down_secs),
        ..WorkerConfig::default()
    };
    Arc::new(Worker::new(
        state.db.clone(),
        state.keyring.clone(),
        egress,
        state.engine.clone(),
        state.accounts.clone(),
        worker_config,
        state.wake.clone(),
    ))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing open requests");
}
