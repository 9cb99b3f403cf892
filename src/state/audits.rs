//! The audit's memory: verdicts by key (the audit decides what a key covers and what a verdict
//! holds; both are opaque here, kept as JSON), and each finished audit's counts, for the next
//! one's "change since".

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{State, StateError};

/// A finished audit, as the next one compares itself with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PastAudit<T> {
    pub counts: T,
    pub revision: Option<String>,
}

impl State {
    /// The verdict kept under `key`, and when it was reached (unix seconds). A verdict this
    /// version cannot read (an older shape) counts as none.
    pub(crate) fn verdict<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>, StateError> {
        let row: Option<(String, i64)> = self
            .db
            .query_row("SELECT verdict, checked_at FROM audit_verdicts WHERE key = ?1", params![key], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(|e| self.error(e))?;
        Ok(row.and_then(|(json, checked_at)| Some((serde_json::from_str(&json).ok()?, checked_at))))
    }

    /// Keeps verdicts by key, reached at `now`, in one transaction.
    pub(crate) fn keep_verdicts<T: Serialize>(&self, verdicts: &[(String, T)], now: i64) -> Result<(), StateError> {
        let tx = self.db.unchecked_transaction().map_err(|e| self.error(e))?;
        for (key, verdict) in verdicts {
            let json = serde_json::to_string(verdict).map_err(|e| self.error(e))?;
            tx.execute(
                "INSERT INTO audit_verdicts (key, verdict, checked_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET verdict = ?2, checked_at = ?3",
                params![key, json, now],
            )
            .map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))
    }

    /// Records a finished audit of `file` and returns the previous one: of the same file if
    /// there is one, else the latest of any (`None` if there is none, or it cannot be read).
    pub(crate) fn record_audit<T: Serialize + DeserializeOwned>(
        &self,
        file: &str,
        revision: Option<&str>,
        counts: &T,
        now: i64,
    ) -> Result<Option<PastAudit<T>>, StateError> {
        let previous: Option<(String, Option<String>)> = self
            .db
            .query_row(
                "SELECT counts, revision FROM audits ORDER BY (file = ?1) DESC, id DESC LIMIT 1",
                params![file],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        let json = serde_json::to_string(counts).map_err(|e| self.error(e))?;
        self.db
            .execute(
                "INSERT INTO audits (file, revision, finished_at, counts) VALUES (?1, ?2, ?3, ?4)",
                params![file, revision, now, json],
            )
            .map_err(|e| self.error(e))?;
        Ok(previous
            .and_then(|(json, revision)| Some(PastAudit { counts: serde_json::from_str(&json).ok()?, revision })))
    }
}
