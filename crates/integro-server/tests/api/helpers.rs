//! Every test starts the real application on an ephemeral port with its own
//! database (a fresh SQLite file, or a fresh PostgreSQL database) and talks
//! HTTP to it.

use std::sync::Once;

use integro_server::App;
use integro_server::config::Config;
use integro_server::state::AppState;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

pub const ADMIN_EMAIL: &str = "operator@example.com";
pub const ADMIN_PASSWORD: &str = "operator-password-1";

/// Runs each named test once per database. A test skipped for lack of
/// PostgreSQL returns early; `tests/postgres_notice.rs` says so once.
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::DbKind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::DbKind::Postgres).await
                }
            )*
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub config: Config,
    _dir: TempDir,
    pg: Option<PgDatabase>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// The operator's access token, signed in once per test: sign-in is
    /// throttled per account and address.
    operator: tokio::sync::OnceCell<String>,
}

fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl TestApp {
    /// `None` for PostgreSQL when `INTEGRO_TEST_POSTGRES_URL` is not set.
    pub async fn spawn(kind: DbKind) -> Option<TestApp> {
        TestApp::spawn_with(kind, |_| {}).await
    }

    pub async fn spawn_with(kind: DbKind, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
        install_tls_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("data"),
            admin_email: Some(ADMIN_EMAIL.into()),
            admin_password: Some(ADMIN_PASSWORD.into()),
            master_key: Some(integro_store::secrets::MasterKey::generate().to_base64()),
            ..Config::default()
        };
        let pg = match kind {
            DbKind::Sqlite => None,
            DbKind::Postgres => {
                let db = PgDatabase::create().await?;
                config.database_url = Some(db.url.clone());
                Some(db)
            }
        };
        // Mock providers and webhooks listen on 127.0.0.1, which the outbound
        // URL policy refuses unless excepted; the policy's own tests (in
        // outbound.rs) set their exceptions in `tweak`.
        config.outbound_allow = vec!["127.0.0.1:*".into()];
        tweak(&mut config);
        let app = App::build(config.clone())
            .await
            .expect("application builds");
        let state = app.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Some(TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            state,
            config,
            _dir: dir,
            pg,
            shutdown: Some(tx),
            server: Some(server),
            operator: tokio::sync::OnceCell::new(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, token).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path, token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// An access token of the bootstrapped operator.
    pub async fn operator_token(&self) -> String {
        self.operator
            .get_or_init(|| async {
                let res = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
                assert_eq!(res.status(), StatusCode::OK);
                res.json::<Value>().await.unwrap()["access_token"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .await
            .clone()
    }

    /// Creates a tenant as the operator; returns its id.
    pub async fn create_tenant(&self, name: &str) -> String {
        let token = self.operator_token().await;
        let res = self
            .post("/api/v1/tenants", &token, json!({ "name": name }))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates an API key with `role` in `tenant`; returns (id, secret).
    pub async fn create_key(&self, tenant: &str, role: &str) -> (String, String) {
        let token = self.operator_token().await;
        let res = self
            .request(Method::POST, "/api/v1/api-keys", &token)
            .header("x-integro-tenant", tenant)
            .json(&json!({ "name": format!("{role} key"), "role": role }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        (
            body["id"].as_str().unwrap().to_string(),
            body["key"].as_str().unwrap().to_string(),
        )
    }

    /// Invites `email` into `tenant` with `role` as the operator; returns
    /// the invitation's token.
    pub async fn invite(&self, tenant: &str, email: &str, role: &str) -> String {
        let token = self.operator_token().await;
        let res = self
            .request(Method::POST, "/api/v1/invitations", &token)
            .header("x-integro-tenant", tenant)
            .json(&json!({ "email": email, "role": role }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        res.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Signs in; the access token.
    pub async fn access_token(&self, email: &str, password: &str) -> String {
        let res = self.login(email, password).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Adds a new user with `role` to `tenant` (invited, then accepting with
    /// the password `a-long-password`); returns an access token for them.
    pub async fn user_token(&self, tenant: &str, email: &str, role: &str) -> String {
        let invitation = self.invite(tenant, email, role).await;
        let res = self
            .client
            .post(self.url("/api/v1/invitations/accept"))
            .json(&json!({ "token": invitation, "password": "a-long-password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        self.access_token(email, "a-long-password").await
    }
}

impl TestApp {
    /// Asks the server to shut down gracefully; true when it finished within `limit`.
    pub async fn stop_within(&mut self, limit: std::time::Duration) -> bool {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(server) => tokio::time::timeout(limit, server).await.is_ok(),
            None => true,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_database();
        }
    }
}

/// Asserts an RFC 9457 problem with `status` and `code`; returns its body.
pub async fn assert_problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// A throwaway PostgreSQL database for one test.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Option<PgDatabase> {
        let admin_url = std::env::var("INTEGRO_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        let name = format!("integro_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("INTEGRO_TEST_POSTGRES_URL is set but PostgreSQL does not answer");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        Some(PgDatabase {
            admin_url,
            name,
            url,
        })
    }

    fn drop_database(self) {
        // Drop runs outside any runtime we may block, so use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// The same server URL with another database name.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
