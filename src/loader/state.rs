//! The loader's state, in SQLite under the data directory: what each source came to, and every
//! Save Code Now request made.
//!
//! - `captures`: one row per downloadable source, keyed by its hash (SRI): captured (recipe,
//!   bridge entry or content id stored; `swhid` is what SWH will archive) or failed (attempts and
//!   last error, tried again next run).
//! - `revisions`: one row per VCS source (origin and revision): `archived` once the archive is
//!   known to have the revision (by `/known/`, or, for one it cannot check, by a successful save
//!   made after it was first seen), else `waiting` for a save; `first_seen` says which saves can
//!   have covered it.
//! - `saves`: one row per Save Code Now request, written *before* the request is sent (status
//!   `submitting`) and completed with the archive's answer. A run killed between the two leaves
//!   a `submitting` row, which the next run reconciles with the archive's list of requests for
//!   that origin instead of submitting again.
//!
//! Each row is written in one statement once the work it records is on disk, so a run killed at
//! any point, even by `kill -9`, loses at most the work in flight.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
#[error("failed to use the loader state {}", path.display())]
pub struct StateError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// What became of one downloadable source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its recipe, bridge index entry or content id is recorded.
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

/// A downloadable source's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub swhid: Option<String>,
}

/// A VCS origin, as Save Code Now names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// `git`, `hg` or `svn`.
    pub visit_type: String,
    pub url: String,
}

/// A Save Code Now request's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveRow {
    /// The row's own id.
    pub row: i64,
    pub origin: Origin,
    /// The archive's id for the request; `None` while `submitting`.
    pub request_id: Option<u64>,
    /// `submitting`, then the archive's `accepted`, `pending` or `rejected`.
    pub request_status: String,
    pub task_status: Option<String>,
    pub note: Option<String>,
    /// Unix seconds.
    pub submitted_at: i64,
    /// Rejected, or its task succeeded or failed: nothing more will happen to it.
    pub finished: bool,
}

/// A revision that is not known to be archived yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRevision {
    pub origin: Origin,
    pub revision: String,
    /// The SWHID `/known/` can check (`swh:1:rev:…` for a git commit), if there is one.
    pub swhid: Option<String>,
    pub first_seen: i64,
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
    pub fn open(path: &Path) -> Result<State, StateError> {
        let error = |source| StateError { path: path.to_owned(), source };
        if let Some(parent) = path.parent() {
            // An error here shows up, better worded, as failing to open the database.
            let _ = std::fs::create_dir_all(parent);
        }
        let db = Connection::open(path).map_err(error)?;
        db.execute_batch(SCHEMA).map_err(error)?;
        Ok(State { path: path.to_owned(), db })
    }

    fn error(&self, source: rusqlite::Error) -> StateError {
        StateError { path: self.path.clone(), source }
    }

    /// The row of the source with hash `integrity`, if it has one.
    pub fn get(&self, integrity: &str) -> Result<Option<Record>, StateError> {
        self.db
            .query_row(
                "SELECT status, attempts, last_error, swhid FROM captures WHERE integrity = ?1",
                params![integrity],
                |row| {
                    Ok(Record {
                        status: row.get(0)?,
                        attempts: row.get(1)?,
                        last_error: row.get(2)?,
                        swhid: row.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Records an attempt's outcome: `detail` is the SWHID for a capture, the error for a
    /// failure.
    pub fn record(&self, integrity: &str, status: Status, detail: &str) -> Result<(), StateError> {
        let (error, swhid) = match status {
            Status::Captured => (None, Some(detail)),
            Status::Failed => (Some(detail), None),
        };
        self.db
            .execute(
                "INSERT INTO captures (integrity, status, attempts, last_error, swhid) VALUES (?1, ?2, 1, ?3, ?4)
                 ON CONFLICT (integrity) DO UPDATE SET status = ?2, attempts = attempts + 1, last_error = ?3,
                     swhid = ?4, updated = datetime('now')",
                params![integrity, status.as_str(), error, swhid],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Counts of captures by status.
    pub fn capture_counts(&self) -> Result<Vec<(String, u64)>, StateError> {
        self.counts("SELECT status, count(*) FROM captures GROUP BY status ORDER BY status")
    }

    /// Counts of revisions by status.
    pub fn revision_counts(&self) -> Result<Vec<(String, u64)>, StateError> {
        self.counts("SELECT status, count(*) FROM revisions GROUP BY status ORDER BY status")
    }

    fn counts(&self, query: &str) -> Result<Vec<(String, u64)>, StateError> {
        let mut statement = self.db.prepare(query).map_err(|e| self.error(e))?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Notes a VCS revision (first seen `now` if new) and returns whether it is known archived.
    pub fn note_revision(
        &self,
        origin: &Origin,
        revision: &str,
        swhid: Option<&str>,
        now: i64,
    ) -> Result<bool, StateError> {
        self.db
            .execute(
                "INSERT INTO revisions (visit_type, origin, revision, swhid, status, first_seen)
                 VALUES (?1, ?2, ?3, ?4, 'waiting', ?5) ON CONFLICT DO NOTHING",
                params![origin.visit_type, origin.url, revision, swhid, now],
            )
            .map_err(|e| self.error(e))?;
        let status: String = self
            .db
            .query_row(
                "SELECT status FROM revisions WHERE visit_type = ?1 AND origin = ?2 AND revision = ?3",
                params![origin.visit_type, origin.url, revision],
                |row| row.get(0),
            )
            .map_err(|e| self.error(e))?;
        Ok(status == "archived")
    }

    /// Marks the revisions with these SWHIDs archived.
    pub fn mark_archived(&self, swhids: &[String]) -> Result<(), StateError> {
        let tx = self.db.unchecked_transaction().map_err(|e| self.error(e))?;
        for swhid in swhids {
            tx.execute(
                "UPDATE revisions SET status = 'archived', updated = datetime('now') WHERE swhid = ?1",
                params![swhid],
            )
            .map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))
    }

    /// Marks a revision archived that `/known/` cannot check, once a successful save covers it.
    pub fn mark_saved(&self, origin: &Origin, revision: &str) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE revisions SET status = 'archived', updated = datetime('now')
                 WHERE visit_type = ?1 AND origin = ?2 AND revision = ?3",
                params![origin.visit_type, origin.url, revision],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// The revisions still waiting, by origin.
    pub fn waiting_revisions(&self) -> Result<Vec<WaitingRevision>, StateError> {
        let mut statement = self
            .db
            .prepare(
                "SELECT visit_type, origin, revision, swhid, first_seen FROM revisions WHERE status = 'waiting'
                 ORDER BY visit_type, origin, revision",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(WaitingRevision {
                    origin: Origin { visit_type: row.get(0)?, url: row.get(1)? },
                    revision: row.get(2)?,
                    swhid: row.get(3)?,
                    first_seen: row.get(4)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Every save request, oldest first; only the unfinished ones if `open_only`.
    pub fn saves(&self, open_only: bool) -> Result<Vec<SaveRow>, StateError> {
        let query = format!(
            "SELECT row, visit_type, origin, request_id, request_status, task_status, note, submitted_at, finished
             FROM saves {} ORDER BY row",
            if open_only { "WHERE finished = 0" } else { "" }
        );
        let mut statement = self.db.prepare(&query).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(SaveRow {
                    row: row.get(0)?,
                    origin: Origin { visit_type: row.get(1)?, url: row.get(2)? },
                    request_id: row.get(3)?,
                    request_status: row.get(4)?,
                    task_status: row.get(5)?,
                    note: row.get(6)?,
                    submitted_at: row.get(7)?,
                    finished: row.get(8)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Save requests submitted at or after `since` (unix seconds): what counts against the quota.
    pub fn saves_since(&self, since: i64) -> Result<u64, StateError> {
        self.db
            .query_row("SELECT count(*) FROM saves WHERE submitted_at >= ?1", params![since], |row| row.get(0))
            .map_err(|e| self.error(e))
    }

    /// Writes down, before sending it, that a save request for `origin` is being submitted.
    pub fn begin_save(&self, origin: &Origin, now: i64) -> Result<i64, StateError> {
        self.db
            .execute(
                "INSERT INTO saves (visit_type, origin, request_status, submitted_at) VALUES (?1, ?2, 'submitting', ?3)",
                params![origin.visit_type, origin.url, now],
            )
            .map_err(|e| self.error(e))?;
        Ok(self.db.last_insert_rowid())
    }

    /// Fills in a save request's row with the archive's answer.
    pub fn update_save(
        &self,
        row: i64,
        request_id: u64,
        request_status: &str,
        task_status: Option<&str>,
        note: Option<&str>,
    ) -> Result<(), StateError> {
        let finished = request_status == "rejected" || matches!(task_status, Some("succeeded" | "failed"));
        self.db
            .execute(
                "UPDATE saves SET request_id = ?2, request_status = ?3, task_status = ?4, note = ?5, finished = ?6,
                     updated = datetime('now') WHERE row = ?1",
                params![row, request_id, request_status, task_status, note, finished],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Ends a request that the archive refused outright (no id), keeping why.
    pub fn refuse_save(&self, row: i64, why: &str) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE saves SET request_status = 'refused', note = ?2, finished = 1, updated = datetime('now')
                 WHERE row = ?1",
                params![row, why],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Forgets a request that was never made (the archive has no trace of it, or it was turned
    /// away by the rate limit before being created).
    pub fn forget_save(&self, row: i64) -> Result<(), StateError> {
        self.db.execute("DELETE FROM saves WHERE row = ?1", params![row]).map(|_| ()).map_err(|e| self.error(e))
    }

    /// Whether the archive's request `request_id` is already recorded.
    pub fn has_request(&self, request_id: u64) -> Result<bool, StateError> {
        self.db
            .query_row("SELECT 1 FROM saves WHERE request_id = ?1", params![request_id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.error(e))
    }
}

/// The audit's memory: verdicts by source key, and each audit's counts.
impl State {
    /// A cached verdict (JSON) and when it was reached (unix seconds).
    pub fn verdict(&self, key: &str) -> Result<Option<(String, i64)>, StateError> {
        self.db
            .query_row("SELECT verdict, checked_at FROM audit_verdicts WHERE key = ?1", params![key], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Keeps verdicts (key, JSON), reached at `now`, in one transaction.
    pub fn keep_verdicts(&self, verdicts: &[(String, String)], now: i64) -> Result<(), StateError> {
        let tx = self.db.unchecked_transaction().map_err(|e| self.error(e))?;
        for (key, verdict) in verdicts {
            tx.execute(
                "INSERT INTO audit_verdicts (key, verdict, checked_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET verdict = ?2, checked_at = ?3",
                params![key, verdict, now],
            )
            .map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))
    }

    /// Records an audit's counts (JSON) and returns the previous audit's: of the same file if
    /// there is one, else the latest of any.
    pub fn record_audit(
        &self,
        file: &str,
        revision: Option<&str>,
        counts: &str,
        now: i64,
    ) -> Result<Option<(String, Option<String>)>, StateError> {
        let previous = self
            .db
            .query_row(
                "SELECT counts, revision FROM audits ORDER BY (file = ?1) DESC, id DESC LIMIT 1",
                params![file],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        self.db
            .execute(
                "INSERT INTO audits (file, revision, finished_at, counts) VALUES (?1, ?2, ?3, ?4)",
                params![file, revision, now, counts],
            )
            .map_err(|e| self.error(e))?;
        Ok(previous)
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
            (a.status.as_str(), a.attempts, a.last_error, a.swhid.as_deref()),
            ("captured", 2, None, Some("swh:1:dir:x"))
        );
        let b = state.get("sha256-b").unwrap().unwrap();
        assert_eq!((b.status.as_str(), b.attempts, b.last_error.as_deref()), ("failed", 1, Some("no recipe")));
        assert_eq!(state.capture_counts().unwrap(), [("captured".to_owned(), 1), ("failed".to_owned(), 1)]);
    }

    #[test]
    fn revisions_keep_their_first_sighting_and_saves_their_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let origin = Origin { visit_type: "git".into(), url: "https://example.org/a.git".into() };
        assert!(!state.note_revision(&origin, "r1", Some("swh:1:rev:1"), 100).unwrap());
        assert!(!state.note_revision(&origin, "r1", Some("swh:1:rev:1"), 200).unwrap());
        assert_eq!(state.waiting_revisions().unwrap()[0].first_seen, 100);
        state.mark_archived(&["swh:1:rev:1".into()]).unwrap();
        assert!(state.note_revision(&origin, "r1", Some("swh:1:rev:1"), 300).unwrap());
        assert!(state.waiting_revisions().unwrap().is_empty());

        let row = state.begin_save(&origin, 1000).unwrap();
        assert_eq!(state.saves(true).unwrap()[0].request_status, "submitting");
        state.update_save(row, 7, "accepted", Some("pending"), None).unwrap();
        assert!(state.has_request(7).unwrap());
        assert_eq!(state.saves_since(1000).unwrap(), 1);
        assert_eq!(state.saves_since(1001).unwrap(), 0);
        state.update_save(row, 7, "accepted", Some("succeeded"), None).unwrap();
        assert!(state.saves(true).unwrap().is_empty());
        let gone = state.begin_save(&origin, 1001).unwrap();
        state.forget_save(gone).unwrap();
        assert_eq!(state.saves(false).unwrap().len(), 1);
    }
}
