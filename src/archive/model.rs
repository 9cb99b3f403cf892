//! The shapes of the Software Heritage Web API's answers that swh-bridge reads. Fields it does
//! not use are ignored, so that additions to the API do not break it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /content/<algo>:<hex>/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContentInfo {
    /// Hex digests by algorithm: sha1, sha1_git, sha256, blake2s256.
    pub checksums: BTreeMap<String, String>,
    pub length: Option<u64>,
    /// `visible`, or `absent` for a file the archive skipped (over 100 MiB): listed, no bytes.
    pub status: String,
}

/// `GET /extid/<type>/<id>/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExtId {
    pub extid_type: String,
    pub extid_version: u32,
    /// A core SWHID: `swh:1:cnt:…` or `swh:1:dir:…` for Nix hashes.
    pub target: String,
}

/// One entry of `GET /directory/<sha1_git>/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DirectoryEntry {
    /// The name as the API spells it: see [`DirectoryEntry::name_bytes`].
    pub name: String,
    /// `file`, `dir` or `rev`; symlinks are `file` with perms 0o120000.
    #[serde(rename = "type")]
    pub kind: String,
    pub perms: u32,
    /// The target's sha1_git (hex).
    pub target: String,
    pub length: Option<u64>,
    #[serde(default)]
    pub status: Option<String>,
    /// The fields that were not UTF-8, so that the API wrote them escaped (`["name"]`).
    #[serde(default)]
    pub decoding_failures: Vec<String>,
}

impl DirectoryEntry {
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

/// The vault's cooking status (`/vault/<bundle>/<swhid>/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VaultTask {
    /// `new`, `pending`, `done` or `failed`.
    pub status: String,
    #[serde(default)]
    pub progress_message: Option<String>,
    #[serde(default)]
    pub fetch_url: Option<String>,
}

/// A Save Code Now request (`/origin/save/<visit_type>/url/<url>/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveRequest {
    pub id: u64,
    /// `accepted`, `rejected` or `pending`.
    pub save_request_status: String,
    #[serde(default)]
    pub save_task_status: Option<String>,
    #[serde(default)]
    pub visit_status: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// ISO 8601.
    #[serde(default)]
    pub save_request_date: Option<String>,
}

/// The API's error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub exception: String,
    #[serde(default)]
    pub reason: String,
}
