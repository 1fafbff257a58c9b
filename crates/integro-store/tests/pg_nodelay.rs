//! The connections to PostgreSQL run without Nagle's algorithm (see
//! `pg_socket.rs`, ADR 0011): with it, a statement bigger than the send
//! buffer waited for the server's delayed ACK. Its own test binary, so that
//! no other test's connection to the server is counted.

use integro_store::Db;

#[tokio::test]
async fn every_connection_to_postgres_has_tcp_nodelay() {
    let Some(url) = std::env::var("INTEGRO_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        return; // The server's tests say how to run PostgreSQL's.
    };
    let port = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .get_port();
    let db = Db::connect(&url).await.unwrap();
    // Several connections at once: the pool opens more than one.
    let held = futures_util::future::try_join_all((0..3).map(|_| db.writer()))
        .await
        .unwrap();
    let (total, with_nodelay) = integro_store::pg_socket::nodelay_to_port(port);
    assert!(total >= 3, "expected the pool's connections, found {total}");
    assert_eq!(with_nodelay, total, "connections without TCP_NODELAY");
    drop(held);
    db.close().await;
}
