//! SQLite reads on the message loop's path, run on the caller's own thread
//! (ADR 0010). Through sqlx every read on SQLite is a round trip to the
//! connection's thread, two wake-ups and a switch or two each way; with the
//! writes on the committer's own connection, the reading threads were the
//! loop's largest remaining cost of the kind. The loop's reads are short
//! (a row by its key, a few by an index), so running them where the task
//! is costs the runtime's thread less than handing them over.
//!
//! Reads of the API (pages, filters, reports) stay on `Db::pool`, where a
//! long one waits on its own thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::StoreError;
use crate::sql::Conn;

/// Idle connections kept; more are opened when more read at once, and
/// closed after.
const KEEP: usize = 8;

pub(crate) struct DirectReaders {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl DirectReaders {
    pub(crate) fn new(path: PathBuf) -> Arc<DirectReaders> {
        Arc::new(DirectReaders {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn lend(self: &Arc<Self>) -> Result<DirectReader, StoreError> {
        let idle = self.idle.lock().expect("direct readers").pop();
        let conn = match idle {
            Some(conn) => conn,
            // Read-only, like the pool's readers.
            None => crate::db::open_sqlite(&self.path, true)?,
        };
        Ok(DirectReader {
            conn: Some(conn),
            home: self.clone(),
        })
    }

    pub(crate) fn close(&self) {
        self.idle.lock().expect("direct readers").clear();
    }
}

/// A reading connection, back to the idle ones when dropped. Its reads run
/// to their end before they return, so it never holds a statement open.
pub struct DirectReader {
    conn: Option<rusqlite::Connection>,
    home: Arc<DirectReaders>,
}

impl DirectReader {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        Conn::Sqlite(self.conn.as_mut().expect("lent until dropped"))
    }
}

impl Drop for DirectReader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.home.idle.lock().expect("direct readers");
            if idle.len() < KEEP {
                idle.push(conn);
            }
        }
    }
}
