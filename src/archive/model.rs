//! The shapes of the Software Heritage Web API's answers that swh-bridge reads. Fields it does
//! not use are ignored, so that additions to the API do not break it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hashing::{ObjectType, Swhid};

/// `GET /content/<algo>:<hex>/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContentInfo {
    /// Hex digests by algorithm: sha1, sha1_git, sha256, blake2s256.
    pub checksums: BTreeMap<String, String>,
    pub length: Option<u64>,
    pub status: ContentStatus,
}

impl ContentInfo {
    /// The content's SWHID, from its `sha1_git` (`None` if the answer lacks it or it is malformed).
    pub(crate) fn swhid(&self) -> Option<Swhid> {
        Swhid::from_hex(ObjectType::Content, self.checksums.get("sha1_git")?).ok()
    }
}

/// Whether the archive has a content's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentStatus {
    Visible,
    /// Skipped (files over 100 MiB): listed, no bytes.
    Absent,
    /// Withheld by the archive.
    Hidden,
}

/// `GET /extid/<type>/<id>/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExtId {
    pub extid_type: String,
    pub extid_version: u32,
    /// `swh:1:cnt:…` or `swh:1:dir:…` for Nix hashes.
    pub target: Swhid,
}

/// One entry of `GET /directory/<sha1_git>/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DirectoryEntry {
    /// The name as the API spells it: see [`DirectoryEntry::name_bytes`].
    pub name: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    pub perms: u32,
    /// The target's sha1_git (hex): see [`DirectoryEntry::target_swhid`].
    pub target: String,
    pub length: Option<u64>,
    #[serde(default)]
    pub status: Option<ContentStatus>,
    /// The fields that were not UTF-8, so that the API wrote them escaped (`["name"]`).
    #[serde(default)]
    pub decoding_failures: Vec<String>,
}

/// What a directory entry is; symlinks are files with perms 0o120000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    /// A submodule's commit.
    Rev,
}

impl DirectoryEntry {
    /// The SWHID of what the entry names (`None` if the API gave a malformed id).
    pub(crate) fn target_swhid(&self) -> Option<Swhid> {
        let object_type = match self.kind {
            EntryKind::File => ObjectType::Content,
            EntryKind::Dir => ObjectType::Directory,
            EntryKind::Rev => ObjectType::Revision,
        };
        Swhid::from_hex(object_type, &self.target).ok()
    }

    /// The entry's exact name. The API writes a UTF-8 name as it is; any other name it writes
    /// with swh-core's `decode_with_escape` (a backslash doubled, each byte outside valid UTF-8
    /// as `\xHH`) and lists `name` in `decoding_failures`: that escape is undone here, so such
    /// names come back exactly. `None` for an escaped name that is not such an escape.
    pub fn name_bytes(&self) -> Option<Vec<u8>> {
        if !self.decoding_failures.iter().any(|field| field == "name") {
            return Some(self.name.as_bytes().to_vec());
        }
        let mut bytes = Vec::with_capacity(self.name.len());
        let mut rest = self.name.as_bytes();
        while let Some((&first, tail)) = rest.split_first() {
            if first != b'\\' {
                bytes.push(first);
                rest = tail;
                continue;
            }
            match tail {
                [b'\\', after @ ..] => {
                    bytes.push(b'\\');
                    rest = after;
                }
                [b'x', high, low, after @ ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                    let hex = [*high, *low];
                    bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
                    rest = after;
                }
                _ => return None,
            }
        }
        Some(bytes)
    }
}

/// `GET /revision/<sha1_git>/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Revision {
    pub id: String,
    /// The root directory's sha1_git (hex).
    pub directory: String,
}

impl Revision {
    /// The root directory (`None` if the API gave a malformed id).
    pub(crate) fn directory_swhid(&self) -> Option<Swhid> {
        Swhid::from_hex(ObjectType::Directory, &self.directory).ok()
    }
}

/// The vault's cooking status (`/vault/<bundle>/<swhid>/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VaultTask {
    pub status: VaultStatus,
    #[serde(default)]
    pub progress_message: Option<String>,
    #[serde(default)]
    pub fetch_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultStatus {
    New,
    Pending,
    Done,
    Failed,
}

/// What the vault cooks: a directory's files (`flat`) or a revision's history (`git-bare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultBundle {
    Flat,
    GitBare,
}

impl VaultBundle {
    pub(crate) fn name(self) -> &'static str {
        match self {
            VaultBundle::Flat => "flat",
            VaultBundle::GitBare => "git-bare",
        }
    }
}

/// The kinds of origin swh-bridge asks Save Code Now to visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VisitType {
    Git,
    Hg,
    Svn,
}

impl VisitType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            VisitType::Git => "git",
            VisitType::Hg => "hg",
            VisitType::Svn => "svn",
        }
    }

    /// The visit type named `name`, if it is one of these.
    pub(crate) fn from_name(name: &str) -> Option<VisitType> {
        [VisitType::Git, VisitType::Hg, VisitType::Svn].into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for VisitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Save Code Now request (`/origin/save/<visit_type>/url/<url>/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SaveRequest {
    pub id: u64,
    pub save_request_status: RequestStatus,
    #[serde(default)]
    pub save_task_status: Option<TaskStatus>,
    #[serde(default)]
    pub visit_status: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// ISO 8601.
    #[serde(default)]
    pub save_request_date: Option<String>,
}

/// Whether the archive took a save request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Accepted,
    Rejected,
    /// Waiting for a moderator.
    Pending,
}

impl RequestStatus {
    pub fn name(self) -> &'static str {
        match self {
            RequestStatus::Accepted => "accepted",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Pending => "pending",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<RequestStatus> {
        [RequestStatus::Accepted, RequestStatus::Rejected, RequestStatus::Pending]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// How far the visit a save request asked for has gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    NotCreated,
    NotYetScheduled,
    Scheduled,
    Pending,
    Running,
    Succeeded,
    Failed,
    /// A status this version does not know: kept as the archive wrote it.
    Other(String),
}

impl TaskStatus {
    const NAMED: [(TaskStatus, &'static str); 7] = [
        (TaskStatus::NotCreated, "not created"),
        (TaskStatus::NotYetScheduled, "not yet scheduled"),
        (TaskStatus::Scheduled, "scheduled"),
        (TaskStatus::Pending, "pending"),
        (TaskStatus::Running, "running"),
        (TaskStatus::Succeeded, "succeeded"),
        (TaskStatus::Failed, "failed"),
    ];

    /// The status as the API and the state database spell it.
    pub(crate) fn name(&self) -> &str {
        match self {
            TaskStatus::Other(name) => name,
            known => TaskStatus::NAMED.iter().find(|(status, _)| status == known).map_or("", |(_, name)| name),
        }
    }

    pub(crate) fn from_name(name: &str) -> TaskStatus {
        TaskStatus::NAMED
            .iter()
            .find(|(_, known)| *known == name)
            .map_or_else(|| TaskStatus::Other(name.to_owned()), |(status, _)| status.clone())
    }

    /// Whether the visit is over, one way or the other.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed)
    }
}

impl Serialize for TaskStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TaskStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TaskStatus, D::Error> {
        Ok(TaskStatus::from_name(&String::deserialize(deserializer)?))
    }
}

/// The API's error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub exception: String,
    #[serde(default)]
    pub reason: String,
}
