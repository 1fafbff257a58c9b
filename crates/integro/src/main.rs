//! `integro`: the one binary. `serve` runs the platform; the other commands
//! manage it from the server's shell, on the same database.

mod admin;
mod backup;
mod doctor;
mod reply;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use integro_core::Role;
use integro_server::Config;
use integro_server::startup::{self, App, KeySource};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "integro",
    version,
    about = "Self-hosted, multi-tenant, omnichannel AI bot platform",
    long_about = "Integro connects WhatsApp, Instagram, X and web chats to bots that answer with rules, \
workflows and LLMs.\n\nWith no configuration, `integro serve` keeps everything in ./integro-data \
(SQLite) and prints the operator's first password. Settings come from a TOML file (--config or \
INTEGRO_CONFIG) and INTEGRO_* environment variables, which win. `integro doctor` checks them.",
    after_help = "Examples:\n  integro serve\n  integro doctor\n  integro tenant create \"Acme\"\n  integro apikey create --tenant <ID> --name ci --role admin"
)]
struct Cli {
    /// TOML configuration file (also INTEGRO_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory for the SQLite database and master key (also INTEGRO_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and workers (migrates the database first).
    Serve {
        /// Address to listen on (also INTEGRO_LISTEN; default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Run only workers, e.g. several processes sharing one PostgreSQL; serves
    /// /healthz, /readyz and /metrics on its own address.
    Worker {
        /// Address of the probes (also INTEGRO_WORKER_LISTEN; default 127.0.0.1:9091).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Exit 0 when the server is ready (its /readyz answers ok), 1 otherwise:
    /// for container health checks, where there is no curl.
    Health {
        /// The server's base URL (default: http://<INTEGRO_LISTEN>).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Copy the SQLite database to FILE, consistently, while the server runs
    /// (PostgreSQL: says how to use pg_dump). Keep the master key with it.
    Backup {
        /// The new file (never overwritten).
        file: PathBuf,
    },
    /// Put a backup made by `integro backup` in place of the SQLite database
    /// (the one it replaces is kept aside). Stop every Integro process first.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// Check configuration, master key, database and listen address; exits non-zero on a problem.
    Doctor {
        /// Address the server listens on (also INTEGRO_LISTEN).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys.
    #[command(subcommand, name = "apikey")]
    ApiKey(ApiKeyCommand),
    /// Manage bots.
    #[command(subcommand)]
    Bot(BotCommand),
    /// Manage channel accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Export and import a bot's rules as YAML.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Check AI provider credentials.
    #[command(subcommand)]
    Ai(AiCommand),
    /// Manage sealed secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

/// A tenant named on the command line by its id or its name.
#[derive(Debug, Clone)]
pub struct TenantRef(pub String);

impl std::str::FromStr for TenantRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("name a tenant by its id or its name".into());
        }
        Ok(TenantRef(s.trim().to_string()))
    }
}

#[derive(Subcommand)]
pub enum BotCommand {
    /// Create a bot.
    Create {
        #[arg(long)]
        tenant: TenantRef,
        #[arg(long)]
        name: String,
        /// What the bot answers when nothing else does.
        #[arg(long)]
        fallback_reply: String,
    },
    /// List a tenant's bots.
    List {
        #[arg(long)]
        tenant: TenantRef,
    },
    /// Dry run: decide the reply to a made-up message and print the trace
    /// (rules, prompt, history, provider, tokens). Nothing is stored or sent.
    Try {
        bot: Uuid,
        message: String,
        /// The contact's name, for templates and conditions.
        #[arg(long)]
        contact_name: Option<String>,
        /// The channel to pretend.
        #[arg(long, default_value = "web")]
        channel: integro_core::ChannelKind,
    },
}

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Print a bot's rules as YAML (or write them to --file).
    Export {
        bot: Uuid,
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Replace a bot's rules with those of a YAML file (`-` reads stdin).
    /// Nothing changes unless every rule is valid.
    Import { bot: Uuid, file: PathBuf },
}

#[derive(Subcommand)]
pub enum AiCommand {
    /// Check a credential against its provider and say what it answered.
    Test {
        credential: Uuid,
        /// Also check that this model answers.
        #[arg(long)]
        model: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Register a channel account; prints the webhook URL(s) to configure at the provider.
    Add {
        #[arg(long)]
        tenant: TenantRef,
        #[arg(long)]
        bot: Uuid,
        /// twilio_whatsapp, whatsapp_cloud, instagram, x or web.
        #[arg(long)]
        kind: integro_core::ChannelKind,
        #[arg(long)]
        name: String,
        /// A credential as NAME=VALUE; repeat for each (e.g. --credential auth_token=…).
        #[arg(long = "credential", value_name = "NAME=VALUE")]
        credentials: Vec<String>,
    },
    /// List a tenant's channel accounts (secrets masked).
    List {
        #[arg(long)]
        tenant: TenantRef,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// The tenant's name.
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user, optionally a member of a tenant or a platform operator.
    Create {
        #[arg(long)]
        email: String,
        /// Generated and printed when omitted.
        #[arg(long, env = "INTEGRO_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Tenant to add the user to (with --role).
        #[arg(long, requires = "role")]
        tenant: Option<TenantRef>,
        /// owner, admin, agent or viewer.
        #[arg(long, requires = "tenant")]
        role: Option<Role>,
        /// Make the user a platform operator.
        #[arg(long)]
        operator: bool,
    },
    /// List users (of one tenant with --tenant).
    List {
        #[arg(long)]
        tenant: Option<TenantRef>,
    },
    /// Set a new password for a user (printed once when generated); every
    /// session of the user ends.
    ResetPassword {
        #[arg(long)]
        email: String,
        /// Generated and printed when omitted.
        #[arg(long, env = "INTEGRO_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Disable a user: no sign-in, and every session ends at once.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user again.
    Enable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key; its secret is printed once.
    Create {
        #[arg(long)]
        tenant: TenantRef,
        #[arg(long)]
        name: String,
        /// owner, admin, agent or viewer.
        #[arg(long)]
        role: Role,
    },
    /// List a tenant's API keys.
    List {
        #[arg(long)]
        tenant: TenantRef,
    },
    /// Revoke an API key.
    Revoke {
        /// The key's id.
        id: Uuid,
        #[arg(long)]
        tenant: TenantRef,
    },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Rotate the master key and re-seal every secret with it. With the key
    /// file (the default), a new master.key is made and the old key kept in
    /// master.key.previous; running servers follow on their own. With
    /// INTEGRO_MASTER_KEY, restart every server first with the new key as
    /// INTEGRO_MASTER_KEY and the old one in INTEGRO_PREVIOUS_MASTER_KEYS,
    /// then run this with the same variables.
    Rotate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS provider for every HTTPS client (pure Rust, no system library).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Command::Serve {
        listen: Some(listen),
    }
    | Command::Doctor {
        listen: Some(listen),
    } = &cli.command
    {
        config.listen = listen.clone();
    }
    if let Command::Worker {
        listen: Some(listen),
    } = &cli.command
    {
        config.worker_listen = listen.clone();
    }
    let config_file = cli
        .config
        .clone()
        .or_else(|| std::env::var_os("INTEGRO_CONFIG").map(PathBuf::from));
    let telemetry = integro_server::telemetry::init(&config.log, &config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { .. } => serve(config).await,
            Command::Worker { .. } => worker(config).await,
            Command::Health { url } => return Ok(health(&config, url.as_deref()).await),
            Command::Bot(cmd) => admin::bot(&config, cmd, cli.json).await,
            Command::Rules(cmd) => reply::rules(&config, cmd).await,
            Command::Ai(cmd) => reply::ai(&config, cmd).await,
            Command::Account(cmd) => admin::account(&config, cmd, cli.json).await,
            Command::Migrate => migrate(config).await,
            Command::Backup { file } => backup::backup(&config, &file).await,
            Command::Restore { file } => backup::restore(&config, &file).await,
            Command::Doctor { .. } => {
                return Ok(doctor::run(&config, config_file.as_deref(), cli.json).await);
            }
            Command::Tenant(cmd) => admin::tenant(&config, cmd, cli.json).await,
            Command::User(cmd) => admin::user(&config, cmd, cli.json).await,
            Command::ApiKey(cmd) => admin::api_key(&config, cmd, cli.json).await,
            Command::Secrets(SecretsCommand::Rotate) => admin::rotate_secrets(&config).await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr}: {e}; choose another address with --listen or INTEGRO_LISTEN"
        )
    })?;
    let bound = listener.local_addr()?;
    let app = App::build(config).await?;
    let base = app.state.config.public_url(bound);
    println!(
        "Integro {} is listening on http://{bound}",
        env!("CARGO_PKG_VERSION")
    );
    println!("  API      {base}/api/v1");
    println!("  Docs     {base}/docs   (OpenAPI: {base}/api/v1/openapi.json)");
    println!("  Health   {base}/healthz   {base}/readyz   {base}/metrics");
    println!(
        "  Database {} ({})",
        app.state.db.backend().name(),
        integro_store::db::redact_url(&app.state.config.database_url())
    );
    if let Some(op) = &app.operator {
        match &op.generated_password {
            Some(pw) => println!(
                "\nCreated the first operator account (shown once, keep it safe):\n  email    {}\n  password {pw}\n",
                op.email
            ),
            None => println!(
                "\nCreated the first operator account {} from INTEGRO_ADMIN_EMAIL.",
                op.email
            ),
        }
    }
    if let KeySource::Generated(path) | KeySource::File(path) = &app.key_source {
        eprintln!(
            "warning: the master key is kept in {} (mode 0600). In production set INTEGRO_MASTER_KEY \
             from a secret store: whoever reads that file can open every sealed credential.",
            path.display()
        );
    }
    app.serve(listener, startup::shutdown_signal()).await?;
    println!("Integro stopped.");
    Ok(())
}

async fn worker(config: Config) -> anyhow::Result<()> {
    if config.workers == 0 {
        anyhow::bail!("INTEGRO_WORKERS is 0: a worker process needs at least one");
    }
    let listener = tokio::net::TcpListener::bind(&config.worker_listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} for the worker's probes: {e}; choose another address with --listen or INTEGRO_WORKER_LISTEN",
                config.worker_listen
            )
        })?;
    let probes = listener.local_addr()?;
    let app = App::build_for_workers(config).await?;
    let _probes = app.spawn_probes(listener);
    println!(
        "  Probes   http://{probes}/healthz   http://{probes}/readyz   http://{probes}/metrics"
    );
    println!(
        "Integro {} worker running {} jobs at a time on {}",
        env!("CARGO_PKG_VERSION"),
        app.state.config.workers,
        app.state.db.backend().name()
    );
    app.run_workers(startup::shutdown_signal()).await;
    println!("Integro worker stopped.");
    Ok(())
}

/// `integro health`: GET `<url>/readyz`; ready or not, in one line.
async fn health(config: &Config, url: Option<&str>) -> ExitCode {
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            // A server bound to every interface is reached on loopback.
            let listen = config
                .listen
                .replace("0.0.0.0", "127.0.0.1")
                .replace("[::]", "[::1]");
            format!("http://{listen}")
        }
    };
    match doctor::server_status(&base, "/readyz").await {
        Ok(version) => {
            println!("ready: {base} (version {version})");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("not ready: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let db = startup::open_database(&config, false).await?;
    let before = db.applied_migrations().await?;
    integro_store::migrations::migrate(&db).await?;
    let after = db.applied_migrations().await?;
    let new: Vec<_> = after.iter().filter(|v| !before.contains(v)).collect();
    if new.is_empty() {
        println!(
            "The {} database is up to date (version {}).",
            db.backend().name(),
            after.last().unwrap_or(&0)
        );
    } else {
        println!(
            "Applied migrations {new:?} to the {} database.",
            db.backend().name()
        );
    }
    Ok(())
}
