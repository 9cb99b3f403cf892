//! The loader's state: what each source's capture came to, in SQLite under the data directory.
//!
//! One row per flat hash (its SRI spelling). A row is written in one statement once the work it
//! records is on disk (the recipe renamed into the store), so a run killed at any point, even by
//! `kill -9`, loses at most the capture in flight: the next run finds the recipe in the store, or
//! does that one again. Failed captures keep their attempt count and last error, and are tried
//! again by the next run.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
#[error("failed to use the loader state {}", path.display())]
pub struct StateError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// What became of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its recipe and bridge index entry are in the store.
    Captured,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Captured => "captured",
            Status::Failed => "failed",
        }
    }
}

/// A source's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub tree: Option<String>,
}

pub struct State {
    path: PathBuf,
    db: Connection,
}

impl State {
    /// Opens (creating if need be) the state at `path`.
    pub fn open(path: &Path) -> Result<State, StateError> {
        let error = |source| StateError { path: path.to_owned(), source };
        if let Some(parent) = path.parent() {
            // An error here shows up, better worded, as failing to open the database.
            let _ = std::fs::create_dir_all(parent);
        }
        let db = Connection::open(path).map_err(error)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS captures (
                 integrity TEXT PRIMARY KEY,
                 status TEXT NOT NULL CHECK (status IN ('captured', 'failed')),
                 attempts INTEGER NOT NULL,
                 last_error TEXT,
                 tree TEXT,
                 updated TEXT NOT NULL DEFAULT (datetime('now'))
             );",
        )
        .map_err(error)?;
        Ok(State { path: path.to_owned(), db })
    }

    fn error(&self, source: rusqlite::Error) -> StateError {
        StateError { path: self.path.clone(), source }
    }

    /// The row of the source with flat hash `integrity`, if it has one.
    pub fn get(&self, integrity: &str) -> Result<Option<Record>, StateError> {
        self.db
            .query_row(
                "SELECT status, attempts, last_error, tree FROM captures WHERE integrity = ?1",
                params![integrity],
                |row| {
                    Ok(Record {
                        status: row.get(0)?,
                        attempts: row.get(1)?,
                        last_error: row.get(2)?,
                        tree: row.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Records an attempt's outcome: `detail` is the tree for a capture, the error for a failure.
    pub fn record(&self, integrity: &str, status: Status, detail: &str) -> Result<(), StateError> {
        let (error, tree) = match status {
            Status::Captured => (None, Some(detail)),
            Status::Failed => (Some(detail), None),
        };
        self.db
            .execute(
                "INSERT INTO captures (integrity, status, attempts, last_error, tree) VALUES (?1, ?2, 1, ?3, ?4)
                 ON CONFLICT (integrity) DO UPDATE SET status = ?2, attempts = attempts + 1, last_error = ?3,
                     tree = ?4, updated = datetime('now')",
                params![integrity, status.as_str(), error, tree],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_count_attempts_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.sqlite");
        let state = State::open(&path).unwrap();
        assert_eq!(state.get("sha256-a").unwrap(), None);
        state.record("sha256-a", Status::Failed, "upstream gone").unwrap();
        state.record("sha256-a", Status::Captured, "swh:1:dir:x").unwrap();
        state.record("sha256-b", Status::Failed, "no recipe").unwrap();
        drop(state);
        let state = State::open(&path).unwrap();
        let a = state.get("sha256-a").unwrap().unwrap();
        assert_eq!(
            (a.status.as_str(), a.attempts, a.last_error, a.tree.as_deref()),
            ("captured", 2, None, Some("swh:1:dir:x"))
        );
        let b = state.get("sha256-b").unwrap().unwrap();
        assert_eq!((b.status.as_str(), b.attempts, b.last_error.as_deref()), ("failed", 1, Some("no recipe")));
    }
}
