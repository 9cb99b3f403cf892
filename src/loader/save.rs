//! Save Code Now for VCS sources: ask the archive which revisions it has, and request a visit of
//! the origins of the others, within the API's quota, never twice for the same need.
//!
//! Rules (see [`super::state`] for how they survive a `kill -9`):
//! - a git revision given as a 40-hex commit is checked with `/known/` (`swh:1:rev:` is the
//!   commit id), in batches of 1,000; refs (`refs/tags/v1`), hg changesets and svn revisions
//!   cannot be checked this way and count as archived once a successful save, made after they
//!   were first seen, covers them;
//! - an origin gets a request when one of its revisions waits and no request covers it: none is
//!   open (submitted, not yet succeeded, failed or rejected), and none was made after the
//!   revision was first seen (a failed one is retried after a day; a rejected origin never is);
//! - requests go out at most `per_hour` an hour (counted in the state across runs: SWH allows
//!   about 10 an hour); the rest stay queued for a later run, as do all of them once the archive
//!   answers 429.

use std::collections::BTreeMap;

use crate::archive::model::{RequestStatus, VisitType};
use crate::archive::{ApiError, ArchiveClient};
use crate::error_chain::error_chain;
use crate::hashing::{ObjectType, Swhid};
use crate::sources::{Source, SourceType};
use crate::state::{Origin, SaveRow, SaveStatus, State, StateError, WaitingRevision};

/// After a failed save, how long before the origin is tried again; doubled for each failure in
/// a row, up to [`RETRY_FAILED_AT_MOST`].
const RETRY_FAILED_AFTER: i64 = 24 * 3600;
const RETRY_FAILED_AT_MOST: i64 = 32 * 24 * 3600;

/// How far the archive's clock and ours may disagree.
const CLOCK_SKEW: i64 = 300;

/// A VCS source as Save Code Now sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VcsSource {
    pub origin: Origin,
    pub revision: String,
    /// What `/known/` can check: `swh:1:rev:<commit>` for a git commit id.
    pub swhid: Option<Swhid>,
}

impl VcsSource {
    /// The VCS side of a source, or why it has none that can be saved (`None`: not VCS).
    pub(crate) fn of(source: &Source) -> Option<Result<VcsSource, &'static str>> {
        let (visit_type, url, revision) = match source.kind {
            SourceType::Url => return None,
            SourceType::Git => (VisitType::Git, &source.git_url, source.git_ref.clone()),
            SourceType::Hg => (VisitType::Hg, &source.hg_url, source.hg_changeset.clone()),
            SourceType::Svn => (
                VisitType::Svn,
                &source.svn_url,
                source.svn_revision.as_ref().map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_owned)),
            ),
        };
        let Some(url) = url.as_deref().filter(|u| !u.is_empty()) else { return Some(Err("no VCS URL")) };
        let revision = revision.unwrap_or_default();
        let swhid = source.git_commit().and_then(|commit| Swhid::from_hex(ObjectType::Revision, commit).ok());
        Some(Ok(VcsSource { origin: Origin { visit_type, url: url.into() }, revision, swhid }))
    }
}

/// What one pass over the VCS sources did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SaveSummary {
    /// Revisions the archive has.
    pub archived: usize,
    /// Revisions not known to be archived yet.
    pub waiting: usize,
    /// Requests sent this run, with the archive's answer.
    pub submitted: Vec<(Origin, RequestStatus)>,
    /// Requests of an earlier, interrupted run found in the archive instead of being sent again.
    pub reconciled: usize,
    /// Origins that need a request and wait for the quota.
    pub queued: Vec<Origin>,
    /// Why requests stopped early: the archive's rate limit, and when it resets.
    pub rate_limited: Option<String>,
    /// What went wrong, by origin or step; the run goes on.
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    #[error(transparent)]
    State(#[from] StateError),
}

pub struct Saver<'a> {
    pub archive: &'a ArchiveClient,
    pub state: &'a State,
    /// Requests allowed per hour.
    pub per_hour: u64,
}

impl Saver<'_> {
    /// Checks and saves these sources' revisions (see the module docs); `now` in unix seconds.
    pub(crate) async fn run(&self, sources: &[VcsSource], now: i64) -> Result<SaveSummary, SaveError> {
        let mut summary = SaveSummary::default();
        let mut unknown = Vec::new();
        for source in sources {
            if !self.state.note_revision(&source.origin, &source.revision, source.swhid.as_ref(), now)? {
                unknown.extend(source.swhid);
            }
        }
        unknown.sort();
        unknown.dedup();
        self.check_known(&unknown, &mut summary.errors).await?;
        self.reconcile(&mut summary).await?;
        self.settle_unchecked()?;

        for source in sources {
            match self.state.note_revision(&source.origin, &source.revision, source.swhid.as_ref(), now)? {
                true => summary.archived += 1,
                false => summary.waiting += 1,
            }
        }
        let waiting = self.state.waiting_revisions()?;
        let needed = origins_needing_a_save(&waiting, &self.state.saves(false)?, now);
        let mut allowed = self.per_hour.saturating_sub(self.state.saves_since(now - 3600)?);
        let mut needed = needed.into_iter();
        for origin in needed.by_ref() {
            if allowed == 0 {
                summary.queued.push(origin);
                continue;
            }
            match self.submit(&origin, now).await? {
                Submitted::Answered(status) => {
                    allowed -= 1;
                    summary.submitted.push((origin, status));
                }
                Submitted::RateLimited(why) => {
                    summary.rate_limited = Some(why);
                    summary.queued.push(origin);
                    allowed = 0;
                }
                Submitted::Failed(why) => {
                    allowed -= 1;
                    summary.errors.push(why);
                }
            }
        }
        Ok(summary)
    }

    /// Asks `/known/` about these SWHIDs and marks the archived ones.
    async fn check_known(&self, swhids: &[Swhid], errors: &mut Vec<String>) -> Result<(), SaveError> {
        if swhids.is_empty() {
            return Ok(());
        }
        match self.archive.known(swhids).await {
            Ok(known) => {
                let archived: Vec<Swhid> = known.into_iter().filter(|(_, k)| *k).map(|(s, _)| s).collect();
                self.state.mark_archived(&archived)?;
            }
            Err(err) => errors.push(format!("failed to ask which revisions are archived: {}", error_chain(&err))),
        }
        Ok(())
    }

    /// Settles the requests an interrupted run was sending: the archive's newest request for the
    /// origin that the state does not know is that one; none means it was never made.
    async fn reconcile(&self, summary: &mut SaveSummary) -> Result<(), SaveError> {
        for row in self.state.saves(true)?.into_iter().filter(|row| row.request_id.is_none()) {
            let Origin { visit_type, url } = &row.origin;
            let requests = match self.archive.save_requests(*visit_type, url).await {
                Ok(requests) => requests,
                Err(err) => {
                    summary.errors.push(format!("failed to settle the save request of {url}: {}", error_chain(&err)));
                    continue;
                }
            };
            // Ours, if it was made: one the state does not know, dated no earlier than the row
            // (less a few minutes of clock skew). An undated one cannot be told from another
            // user's, and is not taken: the origin is asked for again rather than never.
            let mut unrecorded = Vec::new();
            for request in requests {
                let dated = request.save_request_date.as_deref().and_then(unix_time);
                let recent = dated.is_some_and(|when| when >= row.submitted_at - CLOCK_SKEW);
                if recent && !self.state.has_request(request.id)? {
                    unrecorded.push(request);
                }
            }
            match unrecorded.into_iter().max_by_key(|request| request.id) {
                Some(request) => {
                    self.state.record_save_answer(row.row, &request)?;
                    summary.reconciled += 1;
                }
                None => self.state.forget_save(row.row)?,
            }
        }
        Ok(())
    }

    async fn submit(&self, origin: &Origin, now: i64) -> Result<Submitted, SaveError> {
        let row = self.state.begin_save(origin, now)?;
        Ok(match self.archive.save_code_now(origin.visit_type, &origin.url).await {
            Ok(request) => {
                self.state.record_save_answer(row, &request)?;
                Submitted::Answered(request.save_request_status)
            }
            Err(err @ ApiError::RateLimited { .. }) => {
                self.state.forget_save(row)?;
                Submitted::RateLimited(error_chain(&err))
            }
            // A 400 (not a valid origin) or 403 (blocked): asking again will not help.
            Err(err @ ApiError::Refused { status: 400 | 403, .. }) => {
                let why = error_chain(&err);
                self.state.refuse_save(row, &why)?;
                Submitted::Failed(why)
            }
            // Anything else refused (401: a bad token, say) is about us, not the origin: stop
            // for this run, and keep the origin's record clean.
            Err(err @ ApiError::Refused { .. }) => {
                self.state.forget_save(row)?;
                Submitted::RateLimited(error_chain(&err))
            }
            // The request may have been made even so: the next run settles it (see `reconcile`).
            Err(err) => Submitted::Failed(error_chain(&err)),
        })
    }

    /// Polls the open requests, then asks `/known/` about the revisions still waiting.
    pub async fn refresh(&self) -> Result<Vec<String>, SaveError> {
        let mut errors = Vec::new();
        for row in self.state.saves(true)? {
            let Some(id) = row.request_id else { continue };
            match self.archive.save_status(id).await {
                Ok(request) => self.state.record_save_answer(row.row, &request)?,
                Err(err) => errors.push(format!("failed to poll save request {id}: {}", error_chain(&err))),
            }
        }
        let waiting: Vec<Swhid> = self.state.waiting_revisions()?.into_iter().filter_map(|r| r.swhid).collect();
        self.check_known(&waiting, &mut errors).await?;
        self.settle_unchecked()?;
        Ok(errors)
    }

    /// Marks archived the revisions `/known/` cannot check (refs, hg, svn) that a successful
    /// save of their origin, made after they were first seen, covers.
    fn settle_unchecked(&self) -> Result<(), SaveError> {
        let saves = self.state.saves(false)?;
        for revision in self.state.waiting_revisions()?.into_iter().filter(|r| r.swhid.is_none()) {
            let covered = saves.iter().any(|save| {
                save.origin == revision.origin
                    && save.status() == SaveStatus::Succeeded
                    && save.submitted_at >= revision.first_seen
            });
            if covered {
                self.state.mark_saved(&revision.origin, &revision.revision)?;
            }
        }
        Ok(())
    }
}

enum Submitted {
    Answered(RequestStatus),
    /// Nothing more can be sent this run (rate limited, or refused for a reason of ours).
    RateLimited(String),
    Failed(String),
}

/// The origins whose waiting revisions no request covers, in a stable order.
fn origins_needing_a_save(waiting: &[WaitingRevision], saves: &[SaveRow], now: i64) -> Vec<Origin> {
    let mut latest: BTreeMap<&Origin, &SaveRow> = BTreeMap::new();
    let mut failures_in_a_row: BTreeMap<&Origin, u32> = BTreeMap::new();
    for save in saves {
        latest.insert(&save.origin, save);
        let failures = failures_in_a_row.entry(&save.origin).or_default();
        *failures = if save.status() == SaveStatus::Failed { *failures + 1 } else { 0 };
    }
    let mut needed: Vec<Origin> = Vec::new();
    for revision in waiting {
        let covered = match latest.get(&revision.origin) {
            None => false,
            Some(save) if !save.finished => true,
            Some(save) => match save.status() {
                SaveStatus::Rejected => true,
                SaveStatus::Failed => {
                    let failures = failures_in_a_row.get(&revision.origin).copied().unwrap_or(1).clamp(1, 16);
                    let wait = (RETRY_FAILED_AFTER << (failures - 1)).min(RETRY_FAILED_AT_MOST);
                    now - save.submitted_at < wait
                }
                _ => save.submitted_at >= revision.first_seen,
            },
        };
        if !covered && needed.last() != Some(&revision.origin) {
            needed.push(revision.origin.clone());
        }
    }
    needed
}

/// An ISO 8601 time as the API writes it (`2024-05-06T07:08:09.123456+00:00`), in unix seconds.
fn unix_time(iso: &str) -> Option<i64> {
    let number = |s: &str| s.parse::<i64>().ok();
    let (date, rest) = iso.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(number);
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let zone_at = rest.find(['+', '-', 'Z']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let mut hms = clock.splitn(3, ':');
    let (hour, minute) = (number(hms.next()?)?, number(hms.next()?)?);
    let second = number(hms.next()?.split('.').next()?)?;
    let offset = match zone.as_bytes().first() {
        None | Some(b'Z') => 0,
        Some(sign) => {
            let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
            let minutes = number(h)? * 60 + number(m)?;
            if *sign == b'-' { -minutes * 60 } else { minutes * 60 }
        }
    };
    // Days since 1970-01-01 in the proleptic Gregorian calendar.
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::archive::model::TaskStatus;
    use crate::state::RequestState;

    #[test]
    fn api_times_read_as_unix_seconds() {
        // `date -u -d '2024-05-06T07:08:09Z' +%s`
        assert_eq!(unix_time("2024-05-06T07:08:09.123456+00:00"), Some(1_714_979_289));
        assert_eq!(unix_time("2024-05-06T09:08:09+02:00"), Some(1_714_979_289));
        assert_eq!(unix_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_time("yesterday"), None);
    }

    fn origin(url: &str) -> Origin {
        Origin { visit_type: VisitType::Git, url: url.into() }
    }

    fn save(url: &str, submitted_at: i64, request: RequestStatus, task: Option<TaskStatus>, finished: bool) -> SaveRow {
        SaveRow {
            row: 0,
            origin: origin(url),
            request_id: Some(1),
            request: RequestState::Answered(request),
            task_status: task,
            note: None,
            submitted_at,
            finished,
        }
    }

    #[test]
    fn a_save_covers_what_was_seen_before_it_and_only_an_old_failure_is_retried() {
        let waiting = |url: &str, first_seen| WaitingRevision {
            origin: origin(url),
            revision: "r".into(),
            swhid: None,
            first_seen,
        };
        let now = 10 * RETRY_FAILED_AFTER;
        let revisions = [
            waiting("a", 100),
            waiting("a", 100),
            waiting("b", 100),
            waiting("c", 500),
            waiting("d", 100),
            waiting("e", 100),
            waiting("f", 100),
            waiting("g", 100),
        ];
        use RequestStatus::{Accepted, Rejected};
        let saves = [
            save("b", 200, Accepted, Some(TaskStatus::Succeeded), true),
            save("c", 200, Accepted, Some(TaskStatus::Succeeded), true),
            save("d", 200, Accepted, Some(TaskStatus::Running), false),
            save("e", 200, Rejected, None, true),
            save("f", 200, Accepted, Some(TaskStatus::Failed), true),
            save("g", now - 60, Accepted, Some(TaskStatus::Failed), true),
        ];
        let needed = origins_needing_a_save(&revisions, &saves, now);
        assert_eq!(needed, [origin("a"), origin("c"), origin("f")]);
    }

    #[test]
    fn only_full_git_commits_can_be_checked() {
        let source = |json: serde_json::Value| VcsSource::of(&serde_json::from_value(json).unwrap());
        let commit = "3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b";
        let git = source(serde_json::json!({"type": "git", "git_url": "https://x/a.git", "git_ref": commit}));
        assert_eq!(git.unwrap().unwrap().swhid, Some(Swhid::from_hex(ObjectType::Revision, commit).unwrap()));
        let tag = source(serde_json::json!({"type": "git", "git_url": "https://x/a.git", "git_ref": "refs/tags/v1"}));
        assert_eq!(tag.unwrap().unwrap().swhid, None);
        let svn = source(serde_json::json!({"type": "svn", "svn_url": "svn://x/trunk", "svn_revision": 12}));
        let svn = svn.unwrap().unwrap();
        assert_eq!((svn.origin.visit_type, svn.revision.as_str()), (VisitType::Svn, "12"));
        assert_eq!(source(serde_json::json!({"type": "hg"})), Some(Err("no VCS URL")));
        assert_eq!(source(serde_json::json!({"type": "url", "urls": ["https://x/y.tar.gz"]})), None);
    }
}
