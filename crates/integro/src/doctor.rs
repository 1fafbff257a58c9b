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
}

impl Report {
    fn ok(&self, what: &str, detail: impl std::fmt::Display) {
        println!("  ok    {what}: {detail}");
    }
    fn warn(&self, what: &str, detail: impl std::fmt::Display) {
        println!("  warn  {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.failed = true;
        println!("  FAIL  {what}: {detail}");
    }
}

pub async fn run(config: &Config) -> ExitCode {
    let mut r = Report { failed: false };
    println!("Integro {} doctor", env!("CARGO_PKG_VERSION"));
    r.ok("configuration", "loaded (file and INTEGRO_* variables)");

    match config.listen_addr() {
        Err(e) => r.fail("listen address", e),
        Ok(addr) => match std::net::TcpListener::bind(addr) {
            Ok(_) => r.ok("listen address", format!("{addr} is free")),
            Err(e) => r.fail(
                "listen address",
                format!("cannot listen on {addr}: {e}; stop what uses it or set INTEGRO_LISTEN"),
            ),
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

    if r.failed {
        println!("\nSomething is wrong: fix the FAIL lines above.");
        ExitCode::FAILURE
    } else {
        println!("\nAll checks passed.");
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
            let latest = Db::latest_migration();
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
    db.close().await;
}
