//! VCS revisions and Save Code Now requests.
//!
//! - `revisions`: one row per VCS source (origin and revision): `archived` once the archive is
//!   known to have the revision (by `/known/`, or, for one it cannot check, by a successful save
//!   made after it was first seen), else `waiting` for a save; `first_seen` says which saves can
//!   have covered it.
//! - `saves`: one row per Save Code Now request, written *before* the request is sent (status
//!   `submitting`) and completed with the archive's answer. A run killed between the two leaves
//!   a `submitting` row, which the next run reconciles with the archive's list of requests for
//!   that origin instead of submitting again.

use rusqlite::{OptionalExtension, params};

use super::{State, StateError, StateFailure};
use crate::archive::model::{RequestStatus, SaveRequest, TaskStatus, VisitType};
use crate::hashing::Swhid;

/// A VCS origin, as Save Code Now names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub visit_type: VisitType,
    pub url: String,
}

/// Whether the archive is known to have a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RevisionStatus {
    Archived,
    Waiting,
}

impl RevisionStatus {
    pub fn name(self) -> &'static str {
        match self {
            RevisionStatus::Archived => "archived",
            RevisionStatus::Waiting => "waiting",
        }
    }

    fn from_name(name: &str) -> Option<RevisionStatus> {
        [RevisionStatus::Archived, RevisionStatus::Waiting].into_iter().find(|s| s.name() == name)
    }
}

/// A revision that is not known to be archived yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WaitingRevision {
    pub origin: Origin,
    pub revision: String,
    /// The SWHID `/known/` can check (`swh:1:rev:…` for a git commit), if there is one.
    pub swhid: Option<Swhid>,
    pub first_seen: i64,
}

/// Where a save request stands with the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Written down, the archive's answer not yet recorded.
    Submitting,
    Answered(RequestStatus),
    /// Refused outright (a 400 or 403): no request was made.
    Refused,
}

impl RequestState {
    /// `submitting`, `refused`, or the archive's answer.
    pub fn name(self) -> &'static str {
        match self {
            RequestState::Submitting => "submitting",
            RequestState::Answered(status) => status.name(),
            RequestState::Refused => "refused",
        }
    }

    fn from_name(name: &str) -> Option<RequestState> {
        match name {
            "submitting" => Some(RequestState::Submitting),
            "refused" => Some(RequestState::Refused),
            other => RequestStatus::from_name(other).map(RequestState::Answered),
        }
    }
}

/// How a request is shown: how far it got, its task's end included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SaveStatus {
    Submitting,
    /// Waiting for a moderator.
    Pending,
    /// Accepted, its visit not over.
    Accepted,
    Rejected,
    Succeeded,
    Failed,
}

impl SaveStatus {
    pub fn name(self) -> &'static str {
        match self {
            SaveStatus::Submitting => "submitting",
            SaveStatus::Pending => "pending",
            SaveStatus::Accepted => "accepted",
            SaveStatus::Rejected => "rejected",
            SaveStatus::Succeeded => "succeeded",
            SaveStatus::Failed => "failed",
        }
    }
}

/// A Save Code Now request's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveRow {
    /// The row's own id.
    pub row: i64,
    pub origin: Origin,
    /// The archive's id for the request; `None` while submitting.
    pub request_id: Option<u64>,
    pub request: RequestState,
    pub task_status: Option<TaskStatus>,
    pub note: Option<String>,
    /// Unix seconds.
    pub submitted_at: i64,
    /// Rejected, refused, or its task succeeded or failed: nothing more will happen to it.
    pub finished: bool,
}

impl SaveRow {
    pub fn status(&self) -> SaveStatus {
        match (self.request, &self.task_status) {
            (RequestState::Refused | RequestState::Answered(RequestStatus::Rejected), _) => SaveStatus::Rejected,
            (_, Some(TaskStatus::Succeeded)) => SaveStatus::Succeeded,
            (_, Some(TaskStatus::Failed)) => SaveStatus::Failed,
            (RequestState::Submitting, _) => SaveStatus::Submitting,
            (RequestState::Answered(RequestStatus::Pending), _) => SaveStatus::Pending,
            (RequestState::Answered(RequestStatus::Accepted), _) => SaveStatus::Accepted,
        }
    }
}

impl State {
    /// Notes a VCS revision (first seen `now` if new) and returns whether it is known archived.
    pub(crate) fn note_revision(
        &self,
        origin: &Origin,
        revision: &str,
        swhid: Option<&Swhid>,
        now: i64,
    ) -> Result<bool, StateError> {
        let visit_type = origin.visit_type.name();
        self.db
            .execute(
                "INSERT INTO revisions (visit_type, origin, revision, swhid, status, first_seen)
                 VALUES (?1, ?2, ?3, ?4, 'waiting', ?5) ON CONFLICT DO NOTHING",
                params![visit_type, origin.url, revision, swhid.map(Swhid::to_string), now],
            )
            .map_err(|e| self.error(e))?;
        let status: String = self
            .db
            .query_row(
                "SELECT status FROM revisions WHERE visit_type = ?1 AND origin = ?2 AND revision = ?3",
                params![visit_type, origin.url, revision],
                |row| row.get(0),
            )
            .map_err(|e| self.error(e))?;
        Ok(status == RevisionStatus::Archived.name())
    }

    /// Marks the revisions with these SWHIDs archived.
    pub(crate) fn mark_archived(&self, swhids: &[Swhid]) -> Result<(), StateError> {
        let tx = self.db.unchecked_transaction().map_err(|e| self.error(e))?;
        for swhid in swhids {
            tx.execute(
                "UPDATE revisions SET status = 'archived', updated = datetime('now') WHERE swhid = ?1",
                params![swhid.to_string()],
            )
            .map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))
    }

    /// Marks a revision archived that `/known/` cannot check, once a successful save covers it.
    pub(crate) fn mark_saved(&self, origin: &Origin, revision: &str) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE revisions SET status = 'archived', updated = datetime('now')
                 WHERE visit_type = ?1 AND origin = ?2 AND revision = ?3",
                params![origin.visit_type.name(), origin.url, revision],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// The revisions still waiting, by origin.
    pub(crate) fn waiting_revisions(&self) -> Result<Vec<WaitingRevision>, StateError> {
        let mut statement = self
            .db
            .prepare(
                "SELECT visit_type, origin, revision, swhid, first_seen FROM revisions WHERE status = 'waiting'
                 ORDER BY visit_type, origin, revision",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.error(e))?;
        let mut waiting = Vec::new();
        for row in rows {
            let (visit_type, url, revision, swhid, first_seen) = row.map_err(|e| self.error(e))?;
            let visit_type = self.visit_type(visit_type)?;
            let swhid = swhid
                .map(|text| {
                    text.parse::<Swhid>()
                        .map_err(|_| self.error(StateFailure::Unreadable { what: "a SWHID", value: text.clone() }))
                })
                .transpose()?;
            waiting.push(WaitingRevision { origin: Origin { visit_type, url }, revision, swhid, first_seen });
        }
        Ok(waiting)
    }

    /// Counts of revisions by status.
    pub fn revision_counts(&self) -> Result<Vec<(RevisionStatus, u64)>, StateError> {
        self.counts(
            "SELECT status, count(*) FROM revisions GROUP BY status ORDER BY status",
            RevisionStatus::from_name,
            "a revision status",
        )
    }

    fn visit_type(&self, name: String) -> Result<VisitType, StateError> {
        VisitType::from_name(&name)
            .ok_or_else(|| self.error(StateFailure::Unreadable { what: "a visit type", value: name }))
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
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<u64>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, i64>(7)?,
                    row.get::<_, bool>(8)?,
                ))
            })
            .map_err(|e| self.error(e))?;
        let mut saves = Vec::new();
        for row in rows {
            let (row, visit_type, url, request_id, request, task_status, note, submitted_at, finished) =
                row.map_err(|e| self.error(e))?;
            let request = RequestState::from_name(&request)
                .ok_or_else(|| self.error(StateFailure::Unreadable { what: "a request status", value: request }))?;
            saves.push(SaveRow {
                row,
                origin: Origin { visit_type: self.visit_type(visit_type)?, url },
                request_id,
                request,
                task_status: task_status.as_deref().map(TaskStatus::from_name),
                note,
                submitted_at,
                finished,
            });
        }
        Ok(saves)
    }

    /// Save requests submitted at or after `since` (unix seconds): what counts against the quota.
    pub(crate) fn saves_since(&self, since: i64) -> Result<u64, StateError> {
        self.db
            .query_row("SELECT count(*) FROM saves WHERE submitted_at >= ?1", params![since], |row| row.get(0))
            .map_err(|e| self.error(e))
    }

    /// Writes down, before sending it, that a save request for `origin` is being submitted.
    pub(crate) fn begin_save(&self, origin: &Origin, now: i64) -> Result<i64, StateError> {
        self.db
            .execute(
                "INSERT INTO saves (visit_type, origin, request_status, submitted_at) VALUES (?1, ?2, ?3, ?4)",
                params![origin.visit_type.name(), origin.url, RequestState::Submitting.name(), now],
            )
            .map_err(|e| self.error(e))?;
        Ok(self.db.last_insert_rowid())
    }

    /// Fills in a save request's row with the archive's answer.
    pub(crate) fn record_save_answer(&self, row: i64, answer: &SaveRequest) -> Result<(), StateError> {
        let task_status = answer.save_task_status.as_ref();
        let finished =
            answer.save_request_status == RequestStatus::Rejected || task_status.is_some_and(TaskStatus::is_finished);
        self.db
            .execute(
                "UPDATE saves SET request_id = ?2, request_status = ?3, task_status = ?4, note = ?5, finished = ?6,
                     updated = datetime('now') WHERE row = ?1",
                params![
                    row,
                    answer.id,
                    answer.save_request_status.name(),
                    task_status.map(TaskStatus::name),
                    answer.note,
                    finished
                ],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Ends a request that the archive refused outright (no id), keeping why.
    pub(crate) fn refuse_save(&self, row: i64, why: &str) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE saves SET request_status = ?3, note = ?2, finished = 1, updated = datetime('now')
                 WHERE row = ?1",
                params![row, why, RequestState::Refused.name()],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Forgets a request that was never made (the archive has no trace of it, or it was turned
    /// away by the rate limit before being created).
    pub(crate) fn forget_save(&self, row: i64) -> Result<(), StateError> {
        self.db.execute("DELETE FROM saves WHERE row = ?1", params![row]).map(|_| ()).map_err(|e| self.error(e))
    }

    /// Whether the archive's request `request_id` is already recorded.
    pub(crate) fn has_request(&self, request_id: u64) -> Result<bool, StateError> {
        self.db
            .query_row("SELECT 1 FROM saves WHERE request_id = ?1", params![request_id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::ObjectType;

    fn answer(id: u64, status: RequestStatus, task: Option<TaskStatus>) -> SaveRequest {
        SaveRequest {
            id,
            save_request_status: status,
            save_task_status: task,
            visit_status: None,
            note: None,
            save_request_date: None,
        }
    }

    #[test]
    fn revisions_keep_their_first_sighting_and_saves_their_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let origin = Origin { visit_type: VisitType::Git, url: "https://example.org/a.git".into() };
        let commit = Swhid::new(ObjectType::Revision, [1; 20]);
        assert!(!state.note_revision(&origin, "r1", Some(&commit), 100).unwrap());
        assert!(!state.note_revision(&origin, "r1", Some(&commit), 200).unwrap());
        assert_eq!(state.waiting_revisions().unwrap()[0].first_seen, 100);
        state.mark_archived(&[commit]).unwrap();
        assert!(state.note_revision(&origin, "r1", Some(&commit), 300).unwrap());
        assert!(state.waiting_revisions().unwrap().is_empty());

        let row = state.begin_save(&origin, 1000).unwrap();
        assert_eq!(state.saves(true).unwrap()[0].status(), SaveStatus::Submitting);
        state.record_save_answer(row, &answer(7, RequestStatus::Accepted, Some(TaskStatus::Pending))).unwrap();
        assert!(state.has_request(7).unwrap());
        assert_eq!(state.saves_since(1000).unwrap(), 1);
        assert_eq!(state.saves_since(1001).unwrap(), 0);
        state.record_save_answer(row, &answer(7, RequestStatus::Accepted, Some(TaskStatus::Succeeded))).unwrap();
        assert!(state.saves(true).unwrap().is_empty());
        assert_eq!(state.saves(false).unwrap()[0].status(), SaveStatus::Succeeded);
        let gone = state.begin_save(&origin, 1001).unwrap();
        state.forget_save(gone).unwrap();
        assert_eq!(state.saves(false).unwrap().len(), 1);
        let refused = state.begin_save(&origin, 1002).unwrap();
        state.refuse_save(refused, "400").unwrap();
        assert_eq!(state.saves(false).unwrap()[1].status(), SaveStatus::Rejected);
    }
}
