//! The state database, `state.sqlite` in the data directory: what this tool has done and learnt,
//! kept across runs and shared by `load`, `load status`, `audit` and `publish`.
//!
//! - [`captures`]: what became of each downloadable source `load` captured;
//! - [`vcs`]: each VCS revision seen and every Save Code Now request made;
//! - [`audits`]: the audit's verdicts, and each finished audit's counts.
//!
//! The interface is a method per question or fact, with typed arguments: no SQL and no SQLite
//! type crosses it, so another database (a server's) can stand behind the same methods. Each fact
//! is written in one statement once the work it records is done, so a run killed at any point,
//! even by `kill -9`, loses at most the work in flight; several processes may share the file
//! (WAL, a busy timeout).

mod audits;
mod captures;
mod vcs;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use captures::CaptureStatus;
pub(crate) use vcs::WaitingRevision;
pub use vcs::{Origin, RequestState, RevisionStatus, SaveRow, SaveStatus};

/// The file name of the state database in the data directory.
pub(crate) const FILE_NAME: &str = "state.sqlite";

#[derive(Debug, thiserror::Error)]
#[error("failed to use the state database {}", path.display())]
pub struct StateError {
    path: PathBuf,
    #[source]
    source: StateFailure,
}

/// What went wrong underneath.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum StateFailure {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("a row holds {what} `{value}`, which this version cannot read")]
    Unreadable { what: &'static str, value: String },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub struct State {
    path: PathBuf,
    db: Connection,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA busy_timeout = 5000;
    CREATE TABLE IF NOT EXISTS captures (
        integrity TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('captured', 'failed')),
        attempts INTEGER NOT NULL,
        last_error TEXT,
        swhid TEXT,
        updated TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE IF NOT EXISTS revisions (
        visit_type TEXT NOT NULL,
        origin TEXT NOT NULL,
        revision TEXT NOT NULL,
        swhid TEXT,
        status TEXT NOT NULL CHECK (status IN ('archived', 'waiting')),
        first_seen INTEGER NOT NULL,
        updated TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (visit_type, origin, revision)
    );
    CREATE TABLE IF NOT EXISTS saves (
        row INTEGER PRIMARY KEY AUTOINCREMENT,
        visit_type TEXT NOT NULL,
        origin TEXT NOT NULL,
        request_id INTEGER UNIQUE,
        request_status TEXT NOT NULL,
        task_status TEXT,
        note TEXT,
        submitted_at INTEGER NOT NULL,
        finished INTEGER NOT NULL DEFAULT 0,
        updated TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE INDEX IF NOT EXISTS saves_by_origin ON saves (visit_type, origin);
    CREATE TABLE IF NOT EXISTS audit_verdicts (
        key TEXT PRIMARY KEY,
        verdict TEXT NOT NULL,
        checked_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS audits (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        file TEXT NOT NULL,
        revision TEXT,
        finished_at INTEGER NOT NULL,
        counts TEXT NOT NULL
    );
";

impl State {
    /// Opens (creating if need be) the state at `path`.
    pub(crate) fn open(path: &Path) -> Result<State, StateError> {
        let error = |source: rusqlite::Error| StateError { path: path.to_owned(), source: source.into() };
        if let Some(parent) = path.parent() {
            // An error here shows up, better worded, as failing to open the database.
            let _ = std::fs::create_dir_all(parent);
        }
        let db = Connection::open(path).map_err(error)?;
        db.execute_batch(SCHEMA).map_err(error)?;
        Ok(State { path: path.to_owned(), db })
    }

    fn error(&self, source: impl Into<StateFailure>) -> StateError {
        StateError { path: self.path.clone(), source: source.into() }
    }

    /// Counts of a table's rows by a text column, read with `parse`.
    fn counts<T: Ord>(
        &self,
        query: &str,
        parse: impl Fn(&str) -> Option<T>,
        what: &'static str,
    ) -> Result<Vec<(T, u64)>, StateError> {
        let mut statement = self.db.prepare(query).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?)))
            .map_err(|e| self.error(e))?;
        let mut counts = Vec::new();
        for row in rows {
            let (name, count) = row.map_err(|e| self.error(e))?;
            let value = parse(&name).ok_or_else(|| self.error(StateFailure::Unreadable { what, value: name }))?;
            counts.push((value, count));
        }
        Ok(counts)
    }
}
