//! What became of each downloadable source `load` captured, keyed by its hash (SRI): captured
//! (its recipe, bridge entry or content id is in the recipe store; `swhid` is what SWH archives)
//! or failed (attempts and the last error; tried again next run).

use rusqlite::{OptionalExtension, params};

use super::{State, StateError, StateFailure};
use crate::hashing::{Hash, Swhid};

/// What became of one downloadable source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaptureStatus {
    /// Its recipe, bridge index entry or content id is recorded.
    Captured,
    Failed,
}

impl CaptureStatus {
    pub fn name(self) -> &'static str {
        match self {
            CaptureStatus::Captured => "captured",
            CaptureStatus::Failed => "failed",
        }
    }

    fn from_name(name: &str) -> Option<CaptureStatus> {
        [CaptureStatus::Captured, CaptureStatus::Failed].into_iter().find(|s| s.name() == name)
    }
}

/// A downloadable source's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaptureRecord {
    pub status: CaptureStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// What SWH archives, once captured.
    pub swhid: Option<Swhid>,
}

impl State {
    /// The row of the source with hash `hash`, if it has one.
    pub(crate) fn capture(&self, hash: &Hash) -> Result<Option<CaptureRecord>, StateError> {
        let row = self
            .db
            .query_row(
                "SELECT status, attempts, last_error, swhid FROM captures WHERE integrity = ?1",
                params![hash.to_sri()],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, u32>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.error(e))?;
        let Some((status, attempts, last_error, swhid)) = row else { return Ok(None) };
        let unreadable = |what, value: String| self.error(StateFailure::Unreadable { what, value });
        let status = CaptureStatus::from_name(&status).ok_or_else(|| unreadable("a capture status", status.clone()))?;
        let swhid =
            swhid.map(|text| text.parse::<Swhid>().map_err(|_| unreadable("a SWHID", text.clone()))).transpose()?;
        Ok(Some(CaptureRecord { status, attempts, last_error, swhid }))
    }

    /// Records that the source with hash `hash` is captured, SWH archiving it as `swhid`.
    pub(crate) fn record_captured(&self, hash: &Hash, swhid: &Swhid) -> Result<(), StateError> {
        self.record_capture(hash, CaptureStatus::Captured, None, Some(swhid.to_string()))
    }

    /// Records a failed attempt to capture the source with hash `hash`.
    pub(crate) fn record_capture_failure(&self, hash: &Hash, error: &str) -> Result<(), StateError> {
        self.record_capture(hash, CaptureStatus::Failed, Some(error), None)
    }

    fn record_capture(
        &self,
        hash: &Hash,
        status: CaptureStatus,
        error: Option<&str>,
        swhid: Option<String>,
    ) -> Result<(), StateError> {
        self.db
            .execute(
                "INSERT INTO captures (integrity, status, attempts, last_error, swhid) VALUES (?1, ?2, 1, ?3, ?4)
                 ON CONFLICT (integrity) DO UPDATE SET status = ?2, attempts = attempts + 1, last_error = ?3,
                     swhid = ?4, updated = datetime('now')",
                params![hash.to_sri(), status.name(), error, swhid],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Counts of captures by status.
    pub fn capture_counts(&self) -> Result<Vec<(CaptureStatus, u64)>, StateError> {
        self.counts(
            "SELECT status, count(*) FROM captures GROUP BY status ORDER BY status",
            CaptureStatus::from_name,
            "a capture status",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::{HashAlgo, ObjectType};

    #[test]
    fn outcomes_count_attempts_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.sqlite");
        let hash = |byte: u8| Hash::from_digest(HashAlgo::Sha256, &[byte; 32]).unwrap();
        let tree = Swhid::new(ObjectType::Directory, [7; 20]);
        let state = State::open(&path).unwrap();
        assert_eq!(state.capture(&hash(1)).unwrap(), None);
        state.record_capture_failure(&hash(1), "upstream gone").unwrap();
        state.record_captured(&hash(1), &tree).unwrap();
        state.record_capture_failure(&hash(2), "no recipe").unwrap();
        drop(state);
        let state = State::open(&path).unwrap();
        let a = state.capture(&hash(1)).unwrap().unwrap();
        assert_eq!((a.status, a.attempts, a.last_error, a.swhid), (CaptureStatus::Captured, 2, None, Some(tree)));
        let b = state.capture(&hash(2)).unwrap().unwrap();
        assert_eq!((b.status, b.attempts, b.last_error.as_deref()), (CaptureStatus::Failed, 1, Some("no recipe")));
        assert_eq!(state.capture_counts().unwrap(), [(CaptureStatus::Captured, 1), (CaptureStatus::Failed, 1)]);
    }
}
