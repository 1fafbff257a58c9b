//! `integro backup FILE` and `integro restore FILE`.
//!
//! SQLite: the backup is `VACUUM INTO`, one read transaction, so the copy is
//! consistent while the server keeps running; a bar follows the copy's size
//! against the database's. Restoring checks the file is an Integro database
//! that passes SQLite's integrity check, moves the current database aside
//! and puts the copy in its place, and refuses while a server answers on
//! the configured address. PostgreSQL: `pg_dump` is the tool; the command
//! says so and names the server's version.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use integro_server::Config;
use integro_store::db::{ConnectOptions, redact_url};
use integro_store::secrets::SecretStore;
use integro_store::{Backend, Db};

use crate::admin::open_existing_database;

pub async fn backup(config: &Config, target: &Path) -> anyhow::Result<()> {
    let url = config.database_url();
    if Backend::from_url(&url)? == Backend::Postgres {
        return postgres_advice(&url).await;
    }
    if target.exists() {
        bail!(
            "{} exists already; name a new file (a backup never overwrites one)",
            target.display()
        );
    }
    let db = open_existing_database(config).await?;
    let source = sqlite_file(&url);
    let total = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(total.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .expect("a valid template"),
    );
    bar.set_message(format!("→ {}", target.display()));
    let watched = target.to_path_buf();
    let watch_bar = bar.clone();
    let watcher = tokio::spawn(async move {
        loop {
            if let Ok(meta) = std::fs::metadata(&watched) {
                watch_bar.set_position(meta.len().min(watch_bar.length().unwrap_or(0)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(target.display().to_string())
        .execute(&mut *db.writer().await?)
        .await;
    watcher.abort();
    copied.with_context(|| format!("copying the database into {}", target.display()))?;
    restrict(target)?;
    let size = std::fs::metadata(target)?.len();
    bar.set_length(size.max(1));
    bar.finish_with_message(format!("→ {}", target.display()));
    db.close().await;
    println!(
        "Backed up the SQLite database to {} ({size} bytes). Keep the master key with it \
         (INTEGRO_MASTER_KEY, or {} and {}): the sealed credentials open only with it.",
        target.display(),
        config.master_key_path().display(),
        integro_server::startup::previous_keys_path(config).display()
    );
    Ok(())
}

pub async fn restore(config: &Config, source: &Path) -> anyhow::Result<()> {
    let url = config.database_url();
    if Backend::from_url(&url)? == Backend::Postgres {
        return postgres_advice(&url).await;
    }
    if !source.is_file() {
        bail!("{} is not a file", source.display());
    }
    let listen = config.listen_addr()?;
    if std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(500)).is_ok() {
        bail!(
            "something answers on {listen} (is `integro serve` running?): stop every Integro \
             process using this database before restoring it"
        );
    }
    let live = sqlite_file(&url);
    let dir = live.parent().map(Path::to_path_buf).unwrap_or_default();
    integro_server::startup::create_private_dir(&dir)?;
    // Checked on a copy beside the database, then moved into place.
    let staged = dir.join("integro.db.restoring");
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(source, &staged)
        .with_context(|| format!("copying {} into {}", source.display(), dir.display()))?;
    restrict(&staged)?;
    if let Err(e) = check_backup(config, &staged).await {
        let _ = std::fs::remove_file(&staged);
        return Err(e.context(format!("{} cannot be restored", source.display())));
    }
    let aside = if live.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = dir.join(format!("integro.db.before-restore-{stamp}"));
        std::fs::rename(&live, &aside)
            .with_context(|| format!("moving {} aside", live.display()))?;
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(&live, suffix));
        }
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staged, &live).with_context(|| format!("replacing {}", live.display()))?;
    println!("Restored {} from {}.", live.display(), source.display());
    if let Some(aside) = aside {
        println!("The database it replaced is kept as {}.", aside.display());
    }
    Ok(())
}

/// The copy opens, passes `PRAGMA integrity_check`, holds Integro's
/// migrations, and its secrets open with the configured master key (a
/// warning only: the key may be restored next).
async fn check_backup(config: &Config, file: &Path) -> anyhow::Result<()> {
    let url = format!("sqlite://{}", file.display());
    let db = Db::connect_with(
        &url,
        ConnectOptions {
            max_connections: 1,
            ..ConnectOptions::default()
        },
    )
    .await
    .context("it does not open as an SQLite database")?;
    let result = async {
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut *db.writer().await?)
            .await
            .context("it is not an SQLite database")?;
        if integrity != "ok" {
            bail!("SQLite's integrity check failed: {integrity}");
        }
        let applied = db
            .applied_migrations()
            .await
            .context("it is not an Integro database (no migrations)")?;
        if applied.is_empty() {
            bail!("it is not an Integro database (no migrations)");
        }
        if config.master_key.is_some() || config.master_key_path().exists() {
            let (keyring, _) = integro_server::startup::load_keyring(config)?;
            let unknown = SecretStore::unknown_keys(&db, &keyring).await?;
            if !unknown.is_empty() {
                eprintln!(
                    "warning: its secrets were sealed with master key(s) {} that are not configured: \
                     restore the master key that was kept with the backup",
                    unknown.join(", ")
                );
            }
        }
        Ok(())
    }
    .await;
    db.close().await;
    result
}

async fn postgres_advice(url: &str) -> anyhow::Result<()> {
    let shown = redact_url(url);
    let db = Db::connect_with(
        url,
        ConnectOptions {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
            ..ConnectOptions::default()
        },
    )
    .await
    .with_context(|| format!("connecting to {shown}"))?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut *db.writer().await?)
        .await?;
    db.close().await;
    bail!(
        "the database is PostgreSQL {version} ({shown}): back it up and restore it with \
         PostgreSQL's own tools, of version {major} or later, e.g. \
         `pg_dump --format=custom --file integro.dump \"$INTEGRO_DATABASE_URL\"` and \
         `pg_restore --clean --if-exists --dbname \"$INTEGRO_DATABASE_URL\" integro.dump`",
        major = version.split('.').next().unwrap_or(&version)
    )
}

/// The SQLite file a `sqlite://PATH[?…]` URL names.
fn sqlite_file(url: &str) -> PathBuf {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    PathBuf::from(path.split('?').next().unwrap_or(path))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A copy of every conversation: readable by this user only.
fn restrict(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    Ok(())
}
