//! Says, in one line, whether the PostgreSQL half of the test suite runs.
//! (Every API test runs on SQLite and, when INTEGRO_TEST_POSTGRES_URL is set,
//! again on PostgreSQL, each test in a fresh database.)

fn main() {
    match std::env::var("INTEGRO_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => {
            println!(
                "PostgreSQL tests ran against {}",
                integro_store::db::redact_url(&url)
            );
        }
        _ => println!(
            "note: PostgreSQL tests were NOT run (SQLite only); to run them: \
             INTEGRO_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test --workspace"
        ),
    }
}
