//! What the tests of the `integro` binary share: running it (a command, or
//! a server or worker process killed when dropped), plain HTTP requests to
//! it, and a mock provider it can call. Each test binary uses a part.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use sqlx::Connection as _;

/// Runs `integro` with `args` and `--data-dir data_dir`, in an environment
/// without the caller's `INTEGRO_*` settings, plus `env`.
pub fn integro(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_integro"));
    cmd.args(args).arg("--data-dir").arg(data_dir);
    for name in [
        "INTEGRO_DATABASE_URL",
        "INTEGRO_MASTER_KEY",
        "INTEGRO_PREVIOUS_MASTER_KEYS",
        "INTEGRO_CONFIG",
        "INTEGRO_OUTBOUND_ALLOW",
        "INTEGRO_LISTEN",
        "INTEGRO_USER_PASSWORD",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("INTEGRO_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("integro runs")
}

/// What a command printed, standard output then standard error.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A new master key: base64 of 32 random bytes.
pub fn new_master_key() -> String {
    integro_store::secrets::MasterKey::generate().to_base64()
}

/// A free port on 127.0.0.1.
pub fn free_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// One HTTP/1.1 request to a local server; the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    http_with(addr, method, path, token, &[], body)
}

/// `http`, with more headers.
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut head = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{head}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A fresh PostgreSQL database on the server `INTEGRO_TEST_POSTGRES_URL`
/// names (dropped with the value); `None`, said on stderr, without one.
pub fn postgres_or_skip(test: &str) -> Option<Database> {
    let Some(admin) = std::env::var("INTEGRO_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!("{test}: PostgreSQL skipped, INTEGRO_TEST_POSTGRES_URL is not set");
        return None;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Some(runtime.block_on(Database::create(&admin)))
}

/// On a server started with `INTEGRO_ADMIN_EMAIL=operator@integro.test`:
/// signs the operator in, makes a tenant named `tenant` and returns an
/// owner's API key in it.
pub fn owner_key(addr: &str, tenant: &str) -> String {
    let json = |(status, text): (u16, String)| -> (u16, serde_json::Value) {
        (status, serde_json::from_str(&text).unwrap_or_default())
    };
    let (status, login) = json(http(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        r#"{"email": "operator@integro.test", "password": "operator-password-1"}"#,
    ));
    assert_eq!(status, 200, "{login}");
    let operator = login["access_token"].as_str().unwrap().to_string();
    let (status, made) = json(http(
        addr,
        "POST",
        "/api/v1/tenants",
        Some(&operator),
        &serde_json::json!({ "name": tenant }).to_string(),
    ));
    assert_eq!(status, 201, "{made}");
    let tenant = made["id"].as_str().unwrap().to_string();
    // The operator's calls in the tenant go through an owner's key.
    let (status, key) = json(http_with(
        addr,
        "POST",
        "/api/v1/api-keys",
        Some(&operator),
        &[("x-integro-tenant", &tenant)],
        r#"{"name": "owner", "role": "owner"}"#,
    ));
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().unwrap().to_string()
}

/// Kills the server it holds when dropped, so a failed assertion does not
/// leave it running.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `integro serve` on a free port of 127.0.0.1 with `data_dir`, once it
/// listens (up to 30 s: a debug build on a loaded runner may take a while
/// to migrate and bind); the server and its address.
pub fn serve(data_dir: &Path) -> (Server, String) {
    serve_with(data_dir, &[])
}

/// `serve`, with more environment variables.
pub fn serve_with(data_dir: &Path, env: &[(&str, &str)]) -> (Server, String) {
    start("serve", data_dir, env)
}

/// `integro serve` or `integro worker` with `--listen` on a free port, once
/// it listens there.
pub fn start(what: &str, data_dir: &Path, env: &[(&str, &str)]) -> (Server, String) {
    start_logged(what, data_dir, env, None)
}

/// `start`, writing what the process prints to `log` (nowhere without one).
pub fn start_logged(
    what: &str,
    data_dir: &Path,
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> (Server, String) {
    let listen = free_address();
    let (stdout, stderr) = match log {
        Some(path) => {
            let file = std::fs::File::create(path).unwrap();
            (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let child = Command::new(env!("CARGO_BIN_EXE_integro"))
        .args([what, "--listen", &listen, "--data-dir"])
        .arg(data_dir)
        .env_remove("INTEGRO_DATABASE_URL")
        .env_remove("INTEGRO_MASTER_KEY")
        .env_remove("INTEGRO_CONFIG")
        .env("INTEGRO_LOG", "warn")
        .env("INTEGRO_ADMIN_PASSWORD", "operator-password-1")
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let server = Server(child);
    let up = (0..300).any(|_| {
        let up = std::net::TcpStream::connect(&listen).is_ok();
        if !up {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        up
    });
    assert!(up, "the server started on {listen}");
    (server, listen)
}

/// A canned HTTP answer of the mock provider.
#[derive(Clone)]
pub struct Canned {
    pub status: u16,
    pub body: String,
}

/// A request the mock provider received.
#[derive(Clone, Debug)]
pub struct Request {
    /// Request line and headers, lowercased.
    pub head: String,
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub body: String,
}

/// What the mock provider received, one entry per request.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<Request>>>;

/// A local HTTP server answering every request (each on a thread of its
/// own) with the answer `answer` picks for it (the provider's wire format is
/// the tests' business); its address and what it received.
pub fn mock_provider(
    answer: impl Fn(&Request) -> Canned + Send + Sync + 'static,
) -> (std::net::SocketAddr, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Default::default();
    let log = received.clone();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (log, answer) = (log.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    return;
                }
                let mut head = request_line.to_ascii_lowercase();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&lower);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let mut words = request_line.split_whitespace();
                let request = Request {
                    head,
                    method: words.next().unwrap_or("").to_string(),
                    path: words.next().unwrap_or("").to_string(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let canned = answer(&request);
                log.lock().unwrap().push(request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    canned.status,
                    canned.body.len(),
                    canned.body
                );
            });
        }
    });
    (addr, received)
}

/// A fresh database on the server of the admin URL, dropped (WITH (FORCE))
/// when this is.
pub struct Database {
    admin: String,
    name: String,
}

impl Database {
    pub async fn create(admin: &str) -> Database {
        let name = format!("integro_test_{}", uuid::Uuid::new_v4().simple());
        admin_sql(admin, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Database {
            admin: admin.to_string(),
            name,
        }
    }

    pub fn url(&self) -> String {
        let server = self.admin.rsplit_once('/').unwrap().0;
        format!("{server}/{}", self.name)
    }

    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url()).await.unwrap()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which must not be blocked on.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin_sql(&admin, &sql))
        })
        .join();
    }
}

async fn admin_sql(admin: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await?;
    conn.close().await
}
