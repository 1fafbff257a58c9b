//! Multi-row inserts of the message loop (a batch of webhooks' messages,
//! jobs and log entries), written once for both databases (ADR 0014).
//!
//! On SQLite the rows go in as `VALUES` lists of `?` parameters, in chunks
//! of a power of two rows (`chunk_sizes`): a table has at most nine such
//! statements, which stay prepared on the committer's connection. One
//! statement of the batch's exact size was parsed anew at nearly every
//! batch.
//!
//! On PostgreSQL the rows travel as one JSON parameter, read into the table's
//! own row type by `json_populate_recordset`: the statement's text is the
//! same for every batch size, so it stays prepared. A `VALUES` list changed
//! with each batch size: PostgreSQL parsed, analysed and planned every batch
//! anew, and sqlx described each such statement in a round trip of its own
//! before running it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

use crate::StoreError;
use crate::sql::{self, Conn, Value};

/// Rows a statement takes at most: 256 rows of up to 18 columns stay far
/// under SQLite's parameter limit (32,766).
pub const CHUNK: usize = 256;

/// `INSERT INTO table (columns) … [suffix]`, for many rows.
pub struct Insert {
    table: &'static str,
    columns: &'static [&'static str],
    suffix: &'static str,
    rows: Vec<Vec<Value>>,
}

/// Rows for `table`, each with a value for every one of `columns`, in order.
/// `suffix` follows the rows (e.g. `ON CONFLICT (…) DO NOTHING`).
pub fn insert(
    table: &'static str,
    columns: &'static [&'static str],
    suffix: &'static str,
) -> Insert {
    Insert {
        table,
        columns,
        suffix,
        rows: Vec::new(),
    }
}

impl Insert {
    /// Adds a row: one value per column, in the columns' order.
    pub fn row(&mut self, values: Vec<Value>) {
        assert_eq!(
            values.len(),
            self.columns.len(),
            "a row of {} has a value for each column",
            self.table
        );
        self.rows.push(values);
    }

    /// Inserts the rows in the caller's transaction; returns how many went
    /// in (fewer when the suffix skips conflicting ones).
    pub async fn execute(mut self, tx: &mut Conn<'_>) -> Result<u64, StoreError> {
        let sqlite = tx.is_sqlite();
        let rows = std::mem::take(&mut self.rows);
        let mut inserted = 0;
        let sizes = chunk_sizes(sqlite, rows.len());
        let mut rows = rows.into_iter();
        for size in sizes {
            let chunk: Vec<Vec<Value>> = rows.by_ref().take(size).collect();
            let statement = if sqlite {
                self.values_statement(chunk)
            } else {
                self.json_statement(&chunk)
            };
            inserted += statement.execute(tx).await?;
        }
        Ok(inserted)
    }

    /// SQLite: the values bound as they are (moved, not copied: this runs
    /// on the committer's thread).
    fn values_statement(&self, chunk: Vec<Vec<Value>>) -> sql::Query {
        let mut q = sql::query(sqlx::AssertSqlSafe(self.values_sql(chunk.len())));
        for value in chunk.into_iter().flatten() {
            q = q.bind(value);
        }
        q
    }

    /// The statement's text for `rows` rows, written once: a chunk's text is
    /// the same at every batch (chunk sizes are powers of two), and writing
    /// its thousands of placeholders again took the committer's time.
    fn values_sql(&self, rows: usize) -> Arc<str> {
        type Key = (&'static str, usize, &'static str, usize);
        static TEXTS: LazyLock<Mutex<HashMap<Key, Arc<str>>>> = LazyLock::new(Mutex::default);
        // The columns' address tells apart two lists for one table.
        let key = (
            self.table,
            self.columns.as_ptr() as usize,
            self.suffix,
            rows,
        );
        let mut texts = TEXTS.lock().expect("statement texts");
        texts
            .entry(key)
            .or_insert_with(|| {
                let values = crate::db::placeholder_rows(true, rows, self.columns.len(), |p| {
                    format!("({})", p.join(", "))
                });
                format!(
                    "INSERT INTO {} ({}) VALUES {values}{}",
                    self.table,
                    self.columns.join(", "),
                    self.suffix
                )
                .into()
            })
            .clone()
    }

    fn json_statement(&self, chunk: &[Vec<Value>]) -> sql::Query {
        let columns = self.columns.join(", ");
        let sql = format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} \
             FROM json_populate_recordset(NULL::{table}, $1::json){suffix}",
            table = self.table,
            suffix = self.suffix
        );
        sql::query(sqlx::AssertSqlSafe(sql)).bind(json_rows(self.columns, chunk))
    }
}

/// How many of `rows` rows each statement takes, at most `CHUNK`. On SQLite
/// powers of two, largest first (`CHUNK` is one), so that a statement's text
/// recurs from batch to batch and stays prepared; on PostgreSQL the text is
/// the same for any number of rows.
pub fn chunk_sizes(sqlite: bool, mut rows: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (rows > 0).then(|| {
            let size = if sqlite {
                (1usize << rows.ilog2()).min(CHUNK)
            } else {
                rows.min(CHUNK)
            };
            rows -= size;
            size
        })
    })
}

/// `[{"column": value, …}, …]`: the rows as `json_populate_recordset` reads
/// them (a JSON string into a text column arrives unescaped).
pub fn json_rows(columns: &[&str], rows: &[Vec<Value>]) -> String {
    let mut json = Vec::with_capacity(rows.len() * columns.len() * 24);
    json.push(b'[');
    for (r, row) in rows.iter().enumerate() {
        json.extend_from_slice(if r == 0 { b"{" } else { b",{" });
        for (c, (column, value)) in columns.iter().zip(row).enumerate() {
            if c > 0 {
                json.push(b',');
            }
            // Writing into a Vec cannot fail.
            let _ = write!(json, "\"{column}\":");
            let _ = match value {
                Value::Int(Some(v)) => write!(json, "{v}"),
                Value::Real(Some(v)) if v.is_finite() => write!(json, "{v:?}"),
                Value::Text(Some(v)) => {
                    serde_json::to_writer(&mut json, v).expect("a string serialises");
                    Ok(())
                }
                Value::Bool(Some(v)) => write!(json, "{v}"),
                _ => write!(json, "null"),
            };
        }
        json.push(b'}');
    }
    json.push(b']');
    String::from_utf8(json).expect("JSON is UTF-8")
}

/// PostgreSQL: rows as one array per column (`unnest($1::text[], …)`),
/// bound in the binary protocol, where each element arrives as its bytes.
/// The same rows as JSON were parsed character by character (escapes,
/// strings copied a byte at a time), most of all the webhook log's bodies
/// and headers, a large share of PostgreSQL's CPU at ingest (ADR 0017).
/// sqlx's `Any` driver binds no arrays, so these go through a PostgreSQL
/// connection (`Db::batch_writer`).
#[derive(Debug, PartialEq)]
pub enum ColumnArray {
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
}

impl ColumnArray {
    /// The array's type, for the statement's casts.
    pub fn sql_type(&self) -> &'static str {
        match self {
            ColumnArray::Int(_) => "int8[]",
            ColumnArray::Real(_) => "float8[]",
            ColumnArray::Text(_) => "text[]",
            ColumnArray::Bool(_) => "bool[]",
        }
    }

    /// Whether every row holds the same value.
    fn is_uniform(&self) -> bool {
        fn same<T: PartialEq>(v: &[T]) -> bool {
            v.windows(2).all(|w| w[0] == w[1])
        }
        match self {
            ColumnArray::Int(v) => same(v),
            ColumnArray::Real(v) => same(v),
            ColumnArray::Text(v) => same(v),
            ColumnArray::Bool(v) => same(v),
        }
    }
}

/// A column's parameter: its array, or, for a column the caller names as
/// the same in every row (a batch's time, a fixed state or kind) when it
/// is, its one value. PostgreSQL receives and unnests each array element
/// by element; a value bound once is read once (ADR 0017).
#[derive(Debug, PartialEq)]
pub struct ColumnParam {
    pub(crate) values: ColumnArray,
    pub(crate) once: bool,
}

impl ColumnParam {
    /// The parameter's type, for the statement's casts.
    pub fn sql_type(&self) -> &'static str {
        let array = self.values.sql_type();
        match self.once {
            true => array.trim_end_matches("[]"),
            false => array,
        }
    }

    /// Binds the parameter by reference: a statement that fails can be
    /// tried again with the same parameters.
    pub fn bind<'q>(
        &'q self,
        q: sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments> {
        match (&self.values, self.once) {
            (ColumnArray::Int(v), true) => q.bind(v[0]),
            (ColumnArray::Real(v), true) => q.bind(v[0]),
            (ColumnArray::Text(v), true) => q.bind(v[0].as_deref()),
            (ColumnArray::Bool(v), true) => q.bind(v[0]),
            (ColumnArray::Int(v), false) => q.bind(v),
            (ColumnArray::Real(v), false) => q.bind(v),
            (ColumnArray::Text(v), false) => q.bind(v),
            (ColumnArray::Bool(v), false) => q.bind(v),
        }
    }
}

/// `rows` as one parameter per column (`column_arrays`); the columns named
/// in `once` that hold one value in every row are bound as that value.
pub fn column_params(
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
    once: &[&str],
) -> Result<Vec<ColumnParam>, StoreError> {
    Ok(column_arrays(table, columns, rows)?
        .into_iter()
        .zip(columns)
        .map(|(values, column)| ColumnParam {
            once: once.contains(column) && values.is_uniform(),
            values,
        })
        .collect())
}

/// `rows` turned into one array per column. A column's type is its value's
/// in the first row (a null keeps its type); a row whose value differs is a
/// bug of its builder, reported as an error.
pub fn column_arrays(
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<Vec<ColumnArray>, StoreError> {
    let Some(first) = rows.first() else {
        return Err(StoreError::Internal(format!("no rows for {table}")));
    };
    let n = rows.len();
    let mut arrays: Vec<ColumnArray> = first
        .iter()
        .map(|v| match v {
            Value::Int(_) => ColumnArray::Int(Vec::with_capacity(n)),
            Value::Real(_) => ColumnArray::Real(Vec::with_capacity(n)),
            Value::Text(_) => ColumnArray::Text(Vec::with_capacity(n)),
            Value::Bool(_) => ColumnArray::Bool(Vec::with_capacity(n)),
        })
        .collect();
    for row in rows {
        if row.len() != columns.len() {
            return Err(StoreError::Internal(format!(
                "a row of {table} has {} values for {} columns",
                row.len(),
                columns.len()
            )));
        }
        for ((array, value), column) in arrays.iter_mut().zip(row).zip(columns) {
            match (array, value) {
                (ColumnArray::Int(a), Value::Int(v)) => a.push(v),
                (ColumnArray::Real(a), Value::Real(v)) => a.push(v),
                (ColumnArray::Text(a), Value::Text(v)) => a.push(v),
                (ColumnArray::Bool(a), Value::Bool(v)) => a.push(v),
                (array, value) => {
                    return Err(StoreError::Internal(format!(
                        "{table}.{column}: a {value:?} among values of {}",
                        array.sql_type()
                    )));
                }
            }
        }
    }
    Ok(arrays)
}

/// The rows of `params` as a table, their parameters numbered from
/// `first`: each column's value (`r.column` from the unnested arrays, or
/// `$n::type` for a value bound once), and the `unnest(…) AS r(…)` of the
/// arrays. At least one column (a row's id) must vary.
pub fn rows_sql(params: &[ColumnParam], columns: &[&str], first: usize) -> (Vec<String>, String) {
    let mut values = Vec::with_capacity(params.len());
    let (mut arrays, mut names) = (Vec::new(), Vec::new());
    for (i, (param, column)) in params.iter().zip(columns).enumerate() {
        let cast = format!("${}::{}", first + i, param.sql_type());
        match param.once {
            true => values.push(cast),
            false => {
                values.push(format!("r.{column}"));
                arrays.push(cast);
                names.push(*column);
            }
        }
    }
    let from = format!("unnest({}) AS r({})", arrays.join(", "), names.join(", "));
    (values, from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;
    use crate::sql::query;

    const COLUMNS: &[&str] = &["id", "t", "n", "f", "b"];
    type Row = (
        String,
        Option<String>,
        Option<i64>,
        Option<f64>,
        Option<bool>,
    );
    /// A row as read back, with the column left to its default.
    type Stored = (
        String,
        Option<String>,
        Option<i64>,
        Option<f64>,
        Option<bool>,
        String,
    );

    /// Texts that JSON escapes come back as they went in, nulls stay null,
    /// numbers and booleans keep their value, and a conflicting row is
    /// skipped and not counted, on both databases, in one chunk and over
    /// several.
    async fn round_trip(db: &Db) {
        sqlx::raw_sql(
            "CREATE TABLE ins (id TEXT PRIMARY KEY, t TEXT, n BIGINT, f DOUBLE PRECISION, b BOOLEAN, \
             d TEXT NOT NULL DEFAULT 'kept')",
        )
        .execute(&mut *db.writer().await.unwrap())
        .await
        .unwrap();
        let texts = [
            "plain",
            "quote \" backslash \\ slash / ",
            "line\nbreak\ttab\r",
            "ünïcödé ✓ 😀",
            "{\"json\": [1, 2]}",
            "",
        ];
        let rows: Vec<Row> = (0..300)
            .map(|i| {
                let t = (i % 7 != 6).then(|| texts[i % 7 % texts.len()].to_string());
                let n = (i % 5 != 0).then_some(i as i64 * 1_000_000_007);
                let f = (i % 3 == 0).then_some(i as f64 / 8.0);
                let b = (i % 4 != 0).then_some(i % 2 == 0);
                (format!("row{i:03}"), t, n, f, b)
            })
            .collect();
        let n = db
            .write({
                let rows = rows.clone();
                move |tx| {
                    Box::pin(async move {
                        query("INSERT INTO ins (id, t) VALUES ($1, 'first')")
                            .bind("row007")
                            .execute(tx)
                            .await?;
                        let mut insert = insert("ins", COLUMNS, " ON CONFLICT (id) DO NOTHING");
                        for (id, t, n, f, b) in rows {
                            insert.row(vec![id.into(), t.into(), n.into(), f.into(), b.into()]);
                        }
                        insert.execute(tx).await
                    })
                }
            })
            .await
            .unwrap();
        assert_eq!(n, 299, "the conflicting row is skipped");
        let stored: Vec<Stored> = query("SELECT id, t, n, f, b, d FROM ins ORDER BY id")
            .fetch_all(&mut db.reader().await.unwrap().conn())
            .await
            .unwrap();
        assert_eq!(stored.len(), 300);
        for (row, got) in rows.iter().zip(&stored) {
            if row.0 == "row007" {
                assert_eq!(got.1.as_deref(), Some("first"));
                continue;
            }
            assert_eq!(
                (&got.0, &got.1, &got.2, &got.3, &got.4),
                (&row.0, &row.1, &row.2, &row.3, &row.4)
            );
            assert_eq!(got.5, "kept", "columns not inserted take their default");
        }
    }

    /// Every row is in exactly one chunk, and chunks are of the few sizes
    /// that stay prepared.
    /// Each column's array takes its type from the first row (nulls keep
    /// theirs); a value of another type is an error, not a silent null.
    #[test]
    fn column_arrays_keep_each_columns_type() {
        let rows = vec![
            vec![Value::from("a"), Value::Int(None), Value::from(true)],
            vec![Value::Text(None), Value::from(2i64), Value::Bool(None)],
        ];
        let arrays = column_arrays("t", &["s", "n", "b"], rows).unwrap();
        assert_eq!(
            arrays,
            [
                ColumnArray::Text(vec![Some("a".into()), None]),
                ColumnArray::Int(vec![None, Some(2)]),
                ColumnArray::Bool(vec![Some(true), None]),
            ]
        );
        let mixed = vec![vec![Value::from(1i64)], vec![Value::from("x")]];
        let error = column_arrays("t", &["n"], mixed).unwrap_err().to_string();
        assert!(error.contains("t.n"), "{error}");
    }

    /// A column named as the same in every row is bound once when it is,
    /// and stays an array when it is not.
    #[test]
    fn a_column_the_same_in_every_row_is_bound_once() {
        let rows = vec![
            vec![Value::from("a"), Value::from(7i64), Value::from(true)],
            vec![Value::from("b"), Value::from(7i64), Value::from(false)],
        ];
        let params = column_params("t", &["s", "n", "b"], rows, &["n", "b"]).unwrap();
        let once: Vec<bool> = params.iter().map(|p| p.once).collect();
        assert_eq!(once, [false, true, false]);
        let (values, from) = rows_sql(&params, &["s", "n", "b"], 3);
        assert_eq!(values, ["r.s", "$4::int8", "r.b"]);
        assert_eq!(from, "unnest($3::text[], $5::bool[]) AS r(s, b)");
    }

    #[test]
    fn chunks_cover_the_rows_in_sizes_that_stay_prepared() {
        assert_eq!(chunk_sizes(true, 0).count(), 0);
        assert_eq!(chunk_sizes(true, 27).collect::<Vec<_>>(), [16, 8, 2, 1]);
        assert_eq!(
            chunk_sizes(true, 600).collect::<Vec<_>>(),
            [256, 256, 64, 16, 8]
        );
        assert_eq!(chunk_sizes(false, 600).collect::<Vec<_>>(), [256, 256, 88]);
        for n in 0..1000 {
            let sizes: Vec<usize> = chunk_sizes(true, n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= CHUNK));
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
            assert_eq!(chunk_sizes(false, n).sum::<usize>(), n);
        }
    }

    #[tokio::test]
    async fn rows_round_trip_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        round_trip(&Db::connect(&url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn rows_round_trip_on_postgres() {
        let Some(db) = crate::testing::fresh_postgres("insert").await else {
            return; // The server's tests say how to run PostgreSQL's.
        };
        round_trip(&db).await;
        crate::testing::drop_postgres(db).await;
    }
}
