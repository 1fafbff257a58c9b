//! Lists with optional filters: conditions are added one at a time, each
//! with its bound value, and the page's cursor and order come last.
//!
//! Not `sqlx::QueryBuilder`: over the `Any` driver it writes `?`
//! placeholders (`AnyArguments` keeps the default `format_placeholder`,
//! sqlx-core 0.9.0), which PostgreSQL refuses; here they are `$n`, which
//! both databases take. Values keep their type (`Bind`).

use sqlx::any::AnyRow;

use crate::page::PageRequest;
use crate::{Db, StoreError};

pub(crate) struct Where {
    sql: String,
    binds: Vec<Bind>,
}

/// A filter's value, bound with its own SQL type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl From<uuid::Uuid> for Bind {
    fn from(v: uuid::Uuid) -> Bind {
        Bind::Text(v.to_string())
    }
}

impl From<&str> for Bind {
    fn from(v: &str) -> Bind {
        Bind::Text(v.to_string())
    }
}

impl From<&String> for Bind {
    fn from(v: &String) -> Bind {
        Bind::Text(v.clone())
    }
}

impl From<String> for Bind {
    fn from(v: String) -> Bind {
        Bind::Text(v)
    }
}

impl From<i64> for Bind {
    fn from(v: i64) -> Bind {
        Bind::Int(v)
    }
}

impl From<bool> for Bind {
    fn from(v: bool) -> Bind {
        Bind::Bool(v)
    }
}

impl Where {
    /// `select` is a `SELECT … FROM …` without a `WHERE`.
    pub fn new(select: &str) -> Where {
        Where {
            sql: format!("{select} WHERE 1 = 1"),
            binds: Vec::new(),
        }
    }

    /// Adds a condition that takes no value.
    pub fn and_always(mut self, condition: &str) -> Where {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self
    }

    /// Adds `condition` (with `{}` where the value goes) when `value` is given.
    pub fn and(mut self, condition: &str, value: Option<impl Into<Bind>>) -> Where {
        if let Some(v) = value {
            self.binds.push(v.into());
            let placeholder = format!("${}", self.binds.len());
            self.sql.push_str(" AND ");
            self.sql
                .push_str(&condition.replacen("{}", &placeholder, 1));
        }
        self
    }

    /// The page after the cursor, oldest first.
    pub fn oldest_first(self, page: &PageRequest) -> Where {
        let limit = page.fetch_limit();
        let mut w = self.and("id > {}", page.after_text());
        w.sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
        w
    }

    /// The page after the cursor, newest first.
    pub fn newest_first(self, page: &PageRequest) -> Where {
        let limit = page.fetch_limit();
        let mut w = self.and("id < {}", page.after_text());
        w.sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
        w
    }

    pub async fn fetch<R>(self, db: &Db) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
    {
        let mut q = sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(self.sql));
        for b in self.binds {
            q = match b {
                Bind::Text(v) => q.bind(v),
                Bind::Int(v) => q.bind(v),
                Bind::Bool(v) => q.bind(v),
            };
        }
        Ok(q.fetch_all(db.pool()).await?)
    }
}
