//! Statements of the message loop (ADR 0010). A write unit (`Db::write`)
//! runs its statements through a `Conn`: on PostgreSQL, and in an API
//! transaction, an sqlx connection; on SQLite inside the group commit, the
//! committer's own synchronous connection (rusqlite, the same bundled
//! SQLite), so that a statement is a function call on the committer's thread
//! instead of a round trip to sqlx's thread for the connection. The loop's
//! reads go the same way (`Db::reader`). The code is written once: the
//! builder here takes sqlx's `$n` placeholders and decodes rows on both.

use std::borrow::Cow;
use std::fmt;

use sqlx::any::AnyRow;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Any, AnyConnection, SqlSafeStr, SqlStr};

use crate::StoreError;
use crate::db::Tx;

/// Where the statements of a write unit, or of a read on the loop, go.
pub enum Conn<'t> {
    /// An sqlx transaction (PostgreSQL, or an API transaction on SQLite).
    Sqlx(&'t mut AnyConnection),
    /// A connection of ours to SQLite: the committer's, inside its batch's
    /// transaction, or a reading one (`Db::reader`).
    Sqlite(&'t mut rusqlite::Connection),
}

impl<'t> Conn<'t> {
    /// Statements of `tx`, an sqlx transaction.
    pub fn of(tx: &'t mut Tx<'_>) -> Conn<'t> {
        Conn::Sqlx(tx)
    }

    pub fn is_sqlite(&self) -> bool {
        match self {
            Conn::Sqlx(conn) => conn.backend_name().eq_ignore_ascii_case("sqlite"),
            Conn::Sqlite(_) => true,
        }
    }
}

/// A bound value. Nulls keep their type: PostgreSQL checks a parameter's
/// type against its column even when it is null.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

macro_rules! value_from {
    ($variant:ident: $($t:ty => $conv:expr),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                let conv: fn($t) -> _ = $conv;
                Value::$variant(conv(v))
            }
        }
    )*};
}

value_from!(Int: i64 => Some, Option<i64> => |v| v, i32 => |v| Some(v.into()));
value_from!(Real: f64 => Some, Option<f64> => |v| v);
value_from!(Bool: bool => Some, Option<bool> => |v| v);
value_from!(Text:
    String => Some,
    Option<String> => |v| v,
    &str => |v| Some(v.to_string()),
    &String => |v| Some(v.clone()),
    Option<&str> => |v| v.map(String::from),
    Option<&String> => |v| v.cloned(),
);

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Bool(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*v))),
            Value::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Int(None) | Value::Real(None) | Value::Bool(None) | Value::Text(None) => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
        })
    }
}

/// A column both drivers decode.
pub trait Col: Sized {
    fn from_any(row: &AnyRow, i: usize) -> Result<Self, sqlx::Error>;
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
}

impl<T> Col for T
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + rusqlite::types::FromSql,
{
    fn from_any(row: &AnyRow, i: usize) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(row, i)
    }

    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T> {
        row.get(i)
    }
}

/// A row of either driver, read column by column.
pub trait Columns {
    fn col<T: Col>(&self, i: usize) -> Result<T, StoreError>;
}

impl Columns for AnyRow {
    fn col<T: Col>(&self, i: usize) -> Result<T, StoreError> {
        Ok(T::from_any(self, i)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn col<T: Col>(&self, i: usize) -> Result<T, StoreError> {
        T::from_sqlite(self, i).map_err(|e| sqlite_error(e, "(reading a column)"))
    }
}

/// What a row decodes into: a tuple of columns, or a type of the store's.
pub trait FromCols: Sized {
    fn from_cols(row: &impl Columns) -> Result<Self, StoreError>;
}

macro_rules! tuple_from_cols {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Col),+> FromCols for ($($t,)+) {
            fn from_cols(row: &impl Columns) -> Result<Self, StoreError> {
                Ok(($(row.col::<$t>($i)?,)+))
            }
        }
    };
}

tuple_from_cols!(A 0);
tuple_from_cols!(A 0, B 1);
tuple_from_cols!(A 0, B 1, C 2);
tuple_from_cols!(A 0, B 1, C 2, D 3);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
tuple_from_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);

/// A statement and its parameters, for a `Conn`.
pub struct Query {
    sql: SqlStr,
    args: Vec<Value>,
    persistent: bool,
}

/// A statement with `$n` placeholders (or `?` ones, in order, on SQLite:
/// see `db::values_rows`).
pub fn query(sql: impl SqlSafeStr) -> Query {
    Query {
        sql: sql.into_sql_str(),
        args: Vec::new(),
        persistent: true,
    }
}

impl Query {
    pub fn bind(mut self, value: impl Into<Value>) -> Query {
        self.args.push(value.into());
        self
    }

    /// Whether the prepared statement is kept for the next time (as sqlx's
    /// `persistent`): not for statements whose text varies with a batch.
    pub fn persistent(mut self, keep: bool) -> Query {
        self.persistent = keep;
        self
    }

    /// Runs the statement; the number of rows it changed.
    pub async fn execute(self, tx: &mut Conn<'_>) -> Result<u64, StoreError> {
        match tx {
            Conn::Sqlx(conn) => Ok(self.sqlx().execute(&mut **conn).await?.rows_affected()),
            Conn::Sqlite(conn) => {
                let changed = self.sqlite(conn, |stmt| stmt.raw_execute())?;
                Ok(changed as u64)
            }
        }
    }

    pub async fn fetch_all<R: FromCols>(self, tx: &mut Conn<'_>) -> Result<Vec<R>, StoreError> {
        match tx {
            Conn::Sqlx(conn) => {
                let rows = self.sqlx().fetch_all(&mut **conn).await?;
                rows.iter().map(R::from_cols).collect()
            }
            Conn::Sqlite(conn) => self.sqlite(conn, |stmt| {
                let mut rows = stmt.raw_query();
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    // A row that does not decode ends the statement at once.
                    match R::from_cols(row) {
                        Ok(r) => out.push(r),
                        Err(e) => return Ok(Err(e)),
                    }
                }
                Ok(Ok(out))
            })?,
        }
    }

    /// The first row, if any. The statement runs to its end all the same
    /// (every row of an `UPDATE … RETURNING` is written).
    pub async fn fetch_optional<R: FromCols>(
        self,
        tx: &mut Conn<'_>,
    ) -> Result<Option<R>, StoreError> {
        Ok(self.fetch_all(tx).await?.into_iter().next())
    }

    pub async fn fetch_one<R: FromCols>(self, tx: &mut Conn<'_>) -> Result<R, StoreError> {
        self.fetch_optional(tx)
            .await?
            .ok_or(StoreError::Db(sqlx::Error::RowNotFound))
    }

    /// The first column of the first row, if any.
    pub async fn scalar_optional<T: Col>(self, tx: &mut Conn<'_>) -> Result<Option<T>, StoreError> {
        Ok(self.fetch_optional::<(T,)>(tx).await?.map(|(v,)| v))
    }

    pub async fn scalar<T: Col>(self, tx: &mut Conn<'_>) -> Result<T, StoreError> {
        Ok(self.fetch_one::<(T,)>(tx).await?.0)
    }

    pub async fn scalars<T: Col>(self, tx: &mut Conn<'_>) -> Result<Vec<T>, StoreError> {
        Ok(self
            .fetch_all::<(T,)>(tx)
            .await?
            .into_iter()
            .map(|(v,)| v)
            .collect())
    }

    fn sqlx(self) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(self.sql).persistent(self.persistent);
        for value in self.args {
            q = match value {
                Value::Int(v) => q.bind(v),
                Value::Real(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bool(v) => q.bind(v),
            };
        }
        q
    }

    /// Prepares the statement, binds its parameters (`$n` by number, `?` in
    /// order) and hands it to `run`.
    fn sqlite<T>(
        &self,
        conn: &rusqlite::Connection,
        run: impl FnOnce(&mut rusqlite::Statement<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let sql = self.sql.as_str();
        let result = if self.persistent {
            conn.prepare_cached(sql)
                .and_then(|mut stmt| self.bind_and_run(&mut stmt, run))
        } else {
            conn.prepare(sql)
                .and_then(|mut stmt| self.bind_and_run(&mut stmt, run))
        };
        result.map_err(|e| sqlite_error(e, sql))
    }

    fn bind_and_run<T>(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        run: impl FnOnce(&mut rusqlite::Statement<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut next = 0;
        for i in 1..=stmt.parameter_count() {
            let n = match stmt.parameter_name(i) {
                Some(name) => name
                    .strip_prefix(['$', '?'])
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_string()))?,
                None => {
                    next += 1;
                    next
                }
            };
            let value = self
                .args
                .get(n.wrapping_sub(1))
                .ok_or(rusqlite::Error::InvalidParameterCount(n, self.args.len()))?;
            stmt.raw_bind_parameter(i, value)?;
        }
        run(stmt)
    }
}

pub(crate) fn sqlite_error(e: rusqlite::Error, sql: &str) -> StoreError {
    StoreError::Db(sqlx::Error::Database(Box::new(SqliteError::new(e, sql))))
}

/// A rusqlite error as sqlx reports SQLite's: constraint violations keep
/// their kind, so `OnUnique` and the API's mapping treat both alike.
#[derive(Debug)]
pub struct SqliteError {
    message: String,
    code: Option<i32>,
}

impl SqliteError {
    pub(crate) fn new(error: rusqlite::Error, sql: &str) -> SqliteError {
        let code = match &error {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.extended_code),
            _ => None,
        };
        let statement: String = sql.chars().take(120).collect();
        SqliteError {
            message: format!("{error} (in `{statement}`)"),
            code,
        }
    }
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqliteError {}

impl DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|c| Cow::Owned(c.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::query;
    use crate::{Db, StoreError};

    async fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE p (id TEXT PRIMARY KEY); \
             CREATE TABLE c (id INTEGER PRIMARY KEY, p TEXT NOT NULL REFERENCES p (id), a TEXT, b INTEGER, f REAL, ok BOOLEAN)",
        )
        .execute(&mut *db.writer().await.unwrap())
        .await
        .unwrap();
        (dir, db)
    }

    /// On the committer's connection `$n` binds the n-th value wherever it
    /// stands and however often, `?` binds in order, nulls and booleans
    /// round-trip, and rows decode into tuples.
    #[tokio::test]
    async fn parameters_bind_by_number_or_in_order() {
        let (_dir, db) = sqlite().await;
        let rows = db
            .write(|tx| {
                Box::pin(async move {
                    query("INSERT INTO p (id) VALUES ($1)")
                        .bind("x")
                        .execute(tx)
                        .await?;
                    let n = query(
                        "INSERT INTO c (p, a, b, f, ok) VALUES ($3, $1, $2, NULL, $4), ($3, $1, NULL, 1.5, NULL)",
                    )
                    .bind("text")
                    .bind(7i64)
                    .bind("x")
                    .bind(true)
                    .execute(tx)
                    .await?;
                    assert_eq!(n, 2);
                    query("INSERT INTO c (p, a, b) VALUES (?, ?, ?)")
                        .bind("x")
                        .bind(None::<String>)
                        .bind(9i64)
                        .persistent(false)
                        .execute(tx)
                        .await?;
                    query("SELECT a, b, f, ok FROM c WHERE p = $1 ORDER BY id")
                        .bind("x")
                        .fetch_all::<(Option<String>, Option<i64>, Option<f64>, Option<bool>)>(tx)
                        .await
                })
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (Some("text".into()), Some(7), None, Some(true)),
                (Some("text".into()), None, Some(1.5), None),
                (None, Some(9), None, None),
            ]
        );
        // Committed: readers see it.
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM c")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 3);
    }

    /// Constraint violations on the committer's connection are reported as
    /// sqlx reports SQLite's (so `OnUnique` and the API's error mapping hold),
    /// foreign keys are enforced there too, and a missing parameter is an
    /// error, not a null.
    #[tokio::test]
    async fn errors_keep_their_kind() {
        let (_dir, db) = sqlite().await;
        let kind = |e: StoreError| match e {
            StoreError::Db(sqlx::Error::Database(e)) => format!("{:?}", e.kind()),
            other => format!("not a database error: {other}"),
        };
        let insert = |sql: &'static str, value: &'static str| {
            let db = db.clone();
            async move {
                db.write(move |tx| {
                    Box::pin(async move { query(sql).bind(value).execute(tx).await })
                })
                .await
            }
        };
        let parent = "INSERT INTO p (id) VALUES ($1)";
        insert(parent, "a").await.unwrap();
        assert_eq!(
            kind(insert(parent, "a").await.unwrap_err()),
            "UniqueViolation"
        );
        let orphan = insert("INSERT INTO c (p) VALUES ($1)", "nobody").await;
        assert_eq!(kind(orphan.unwrap_err()), "ForeignKeyViolation");
        let missing = insert("INSERT INTO p (id) VALUES ($2)", "b").await;
        assert!(missing.is_err(), "{missing:?}");
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM p")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(ids, vec!["a".to_string()]);
    }
}
