//! `integro doctor`: checks what `serve` needs and says exactly what is wrong
//! and how to fix it. Exit code 1 when anything is wrong.

use std::process::ExitCode;
use std::time::Duration;

use integro_server::Config;
use integro_store::db::{ConnectOptions, redact_url};
use integro_store::secrets::MasterKey;
use integro_store::{Backend, Db};

struct Report {
    failed: bool,
    /// Print nothing as it goes; one JSON document at the end.
    json: bool,
    checks: Vec<serde_json::Value>,
}

impl Report {
    fn add(&mut self, level: &str, what: &str, detail: impl std::fmt::Display) {
        if !self.json {
            let shown = if level == "fail" { "FAIL" } else { level };
            println!("  {shown:<5} {what}: {detail}");
        }
        self.checks.push(serde_json::json!({
            "check": what,
            "status": level,
            "detail": detail.to_string(),
        }));
    }
    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.add("ok", what, detail);
    }
    fn warn(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.add("warn", what, detail);
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.failed = true;
        self.add("fail", what, detail);
    }
}

/// What an Integro server at `base` answers on `path` (`/healthz`,
/// `/readyz`): its version when it says `ok`, otherwise why not. Shared by
/// `doctor` (is the busy port our own server?) and `integro health`.
pub async fn server_status(base: &str, path: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let res = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .map_err(|e| format!("{base} cannot be reached: {e}"))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    if status.is_success() && body["status"] == "ok" {
        Ok(body["version"].as_str().unwrap_or("?").to_string())
    } else {
        let reason = body["reason"].as_str().unwrap_or("no reason given");
        Err(format!("{base} answered {status}: {reason}"))
    }
}

/// Runs every check; `config_file` is the file the configuration was read
/// from, if any.
pub async fn run(config: &Config, config_file: Option<&std::path::Path>, json: bool) -> ExitCode {
    let mut r = Report {
        failed: false,
        json,
        checks: Vec::new(),
    };
    if !json {
        println!("Integro {} doctor", env!("CARGO_PKG_VERSION"));
    }
    match config_file {
        Some(path) => r.ok(
            "configuration",
            format!("{} and INTEGRO_* variables", path.display()),
        ),
        None => r.ok(
            "configuration",
            "INTEGRO_* variables and defaults (no configuration file)",
        ),
    }

    match config.listen_addr() {
        Err(e) => r.fail("listen address", e),
        Ok(addr) => match std::net::TcpListener::bind(addr) {
            Ok(_) => r.ok("listen address", format!("{addr} is free")),
            Err(e) => match server_status(&format!("http://{addr}"), "/healthz").await.ok() {
                Some(version) => r.ok(
                    "listen address",
                    format!("{addr} is held by a running Integro server (version {version})"),
                ),
                None => r.fail(
                    "listen address",
                    format!(
                        "cannot listen on {addr}: {e}; stop what uses it or choose another with --listen or INTEGRO_LISTEN"
                    ),
                ),
            },
        },
    }

    match &config.master_key {
        Some(text) => match MasterKey::from_base64(text) {
            Ok(k) => r.ok(
                "master key",
                format!("INTEGRO_MASTER_KEY is valid (key id {})", k.id()),
            ),
            Err(e) => r.fail("master key", format!("INTEGRO_MASTER_KEY: {e}")),
        },
        None => {
            let path = config.master_key_path();
            if path.exists() {
                match std::fs::read_to_string(&path).map(|t| MasterKey::from_base64(&t)) {
                    Ok(Ok(k)) => {
                        r.ok(
                            "master key",
                            format!("{} (key id {})", path.display(), k.id()),
                        );
                        check_mode(&mut r, &path);
                    }
                    Ok(Err(e)) => r.fail("master key", format!("{}: {e}", path.display())),
                    Err(e) => r.fail("master key", format!("cannot read {}: {e}", path.display())),
                }
            } else {
                r.warn(
                    "master key",
                    format!(
                        "none yet; `integro serve` will generate {}. In production set INTEGRO_MASTER_KEY (openssl rand -base64 32)",
                        path.display()
                    ),
                );
            }
        }
    }
    for (i, k) in config.previous_master_keys.iter().enumerate() {
        if let Err(e) = MasterKey::from_base64(k) {
            r.fail("previous master keys", format!("entry {}: {e}", i + 1));
        }
    }

    check_database(&mut r, config).await;

    match &config.public_url {
        Some(url) => r.ok("public URL", url),
        None => r.warn(
            "public URL",
            format!(
                "INTEGRO_PUBLIC_URL is not set: providers cannot reach http://{} to deliver webhooks, \
                 and signatures are checked against that address, which is wrong behind a proxy",
                config.listen
            ),
        ),
    }

    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": !r.failed,
                "version": env!("CARGO_PKG_VERSION"),
                "checks": r.checks,
            }))
            .expect("JSON values serialise")
        );
    } else if r.failed {
        println!("\nSomething is wrong: fix the FAIL lines above.");
    } else {
        println!("\nAll checks passed.");
    }
    if r.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_mode(r: &mut Report, path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                r.fail(
                    "master key",
                    format!(
                        "{} is readable by others (mode {mode:o}); run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    ),
                );
            }
        }
    }
}

async fn check_database(r: &mut Report, config: &Config) {
    let url = config.database_url();
    let shown = redact_url(&url);
    let backend = match Backend::from_url(&url) {
        Ok(b) => b,
        Err(e) => return r.fail("database", e),
    };
    if backend == Backend::Sqlite && config.database_url.is_none() && !config.data_dir.exists() {
        return r.warn(
            "database",
            format!(
                "{shown} does not exist yet; `integro serve` creates it in {}",
                config.data_dir.display()
            ),
        );
    }
    let opts = ConnectOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    let db = match tokio::time::timeout(Duration::from_secs(10), Db::connect_with(&url, opts)).await
    {
        Err(_) => {
            return r.fail(
                "database",
                format!("{shown}: no answer within 10 s; is the server running and reachable?"),
            );
        }
        Ok(Err(e)) => {
            return r.fail(
                "database",
                format!("{e}; check INTEGRO_DATABASE_URL (postgres://USER:PASSWORD@HOST:5432/DB) and that the server runs"),
            );
        }
        Ok(Ok(db)) => db,
    };
    match db.applied_migrations().await {
        Err(e) => r.fail(
            "database",
            format!("{shown}: connected, but cannot read migrations: {e}"),
        ),
        Ok(applied) => {
            let latest = integro_store::migrations::latest();
            if applied.contains(&latest) {
                r.ok(
                    "database",
                    format!("{} at {shown}, schema version {latest}", backend.name()),
                );
            } else {
                r.warn(
                    "database",
                    format!("{shown} answers but is not migrated to version {latest}; run `integro migrate` (serve also does)"),
                );
            }
        }
    }
    check_secrets(r, config, &db).await;
    db.close().await;
}

/// The master key (with the previous ones) opens every stored secret.
async fn check_secrets(r: &mut Report, config: &Config, db: &Db) {
    if config.master_key.is_none() && !config.master_key_path().exists() {
        return;
    }
    let keyring = match integro_server::startup::load_keyring(config) {
        Ok((keyring, _)) => keyring,
        Err(e) => return r.fail("stored secrets", format!("{e:#}")),
    };
    match integro_store::secrets::SecretStore::unknown_keys(db, &keyring).await {
        Ok(unknown) if unknown.is_empty() => {
            r.ok("stored secrets", "the master key opens every stored secret")
        }
        Ok(unknown) => r.fail(
            "stored secrets",
            format!(
                "sealed with key(s) {} that are not configured (current key {}): set the key that sealed them in INTEGRO_MASTER_KEY, or the old one in INTEGRO_PREVIOUS_MASTER_KEYS",
                unknown.join(", "),
                keyring.current().id()
            ),
        ),
        Err(e) => r.warn("stored secrets", format!("cannot read them: {e}")),
    }
}
