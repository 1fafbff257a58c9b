//! What the benchmark binaries share: the machine's steal, a fresh
//! PostgreSQL database, an API call.

#![allow(dead_code)]

use anyhow::bail;
use serde_json::Value;
use sqlx::Connection;

/// The CPU time the machine lost to other guests (steal), from /proc/stat.
pub fn steal_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    (cpu.get(7).copied().unwrap_or(0), cpu.iter().sum())
}

/// A new database on the server `admin_url` names: (its URL, (the admin
/// URL, its name)) to drop it afterwards.
pub async fn fresh_postgres(admin_url: &str) -> anyhow::Result<(String, (String, String))> {
    let name = format!("integro_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let mut url = url_without_db(admin_url);
    url.push('/');
    url.push_str(&name);
    Ok((url, (admin_url.to_string(), name)))
}

fn url_without_db(url: &str) -> String {
    let (head, tail) = url.split_at(url.find("://").map_or(0, |i| i + 3));
    match tail.find('/') {
        Some(i) => format!("{head}{}", &tail[..i]),
        None => url.to_string(),
    }
}

pub async fn api(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: Option<&str>,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body);
    if let Some(t) = tenant {
        req = req.header("x-integro-tenant", t);
    }
    let res = req.send().await?;
    if !res.status().is_success() {
        bail!("POST {path}: {} {}", res.status(), res.text().await?);
    }
    Ok(res.json().await?)
}

/// Drops a database made by `fresh_postgres`.
pub async fn drop_postgres(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Integro serving on a free local port, in this process.
pub struct Serving {
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    pub async fn start(app: integro_server::App) -> anyhow::Result<Serving> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = app
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Serving { base, stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Signs the operator in and makes a tenant: (the operator's token, the
/// tenant's id).
pub async fn operator_tenant(
    client: &reqwest::Client,
    base: &str,
    (email, password): (&str, &str),
    tenant: &str,
) -> anyhow::Result<(String, String)> {
    use anyhow::Context as _;
    let token = api(
        client,
        base,
        "",
        None,
        "/api/v1/auth/login",
        serde_json::json!({ "email": email, "password": password }),
    )
    .await?["access_token"]
        .as_str()
        .context("a token")?
        .to_string();
    let tenant = api(
        client,
        base,
        &token,
        None,
        "/api/v1/tenants",
        serde_json::json!({ "name": tenant }),
    )
    .await?["id"]
        .as_str()
        .context("a tenant id")?
        .to_string();
    Ok((token, tenant))
}
