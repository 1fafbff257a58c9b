//! Lists with optional filters: conditions are added one at a time, each
//! with its bound value, and the page's cursor and order come last.

use sqlx::any::AnyRow;

use crate::page::PageRequest;
use crate::{Db, StoreError};

pub(crate) struct Where {
    sql: String,
    binds: Vec<String>,
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
    pub fn and(mut self, condition: &str, value: Option<impl ToString>) -> Where {
        if let Some(v) = value {
            self.binds.push(v.to_string());
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
            q = q.bind(b);
        }
        Ok(q.fetch_all(db.pool()).await?)
    }
}
