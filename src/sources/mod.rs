//! `sources.json`, the list of sources a Nixpkgs (or Guix) revision needs, in the format
//! nixpkgs-swh publishes and Software Heritage's nixguix lister reads.
//!
//! Quirks of the format as published:
//! - field names mix styles (`outputHashMode`, `nixStorePath`, `git_url`, `svn_revision`): they
//!   are kept exactly, as consumers read them by name;
//! - nixpkgs-swh writes `"version": 1`, Guix `"version": "1"`; the top-level `revision`,
//!   `release`, `evaluation` and `timestamp` are strings (passed to Nix with `--argstr`);
//! - `type` is `url`, `git`, `hg` or `svn`; Guix also writes `false` (unknown fetch method) and
//!   `"no-origin"` for packages without a source: those are read, counted, and never archived;
//! - `svn_revision` is a number in nixpkgs-swh output and may be a string in Guix output;
//! - `integrity` is SRI; VCS entries from old Guix output have none.
//!
//! Reading never stops at a bad entry: each is reported with its index and skipped.

pub mod diff;
pub mod stats;
pub mod validate;

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hashing::{Hash, HashMode};

/// A whole sources.json file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcesFile {
    pub version: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    pub sources: Vec<Source>,
}

/// How a source is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Url,
    Git,
    Hg,
    Svn,
}

impl SourceType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SourceType::Url => "url",
            SourceType::Git => "git",
            SourceType::Hg => "hg",
            SourceType::Svn => "svn",
        }
    }
}

/// One source, with nixpkgs-swh's field names (consumers read them by name; the order here, type
/// first, is for people reading the file).
/// Fields this crate does not know are ignored when reading (`sources validate` reports them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: SourceType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
    #[serde(rename = "outputHashAlgo", skip_serializing_if = "Option::is_none")]
    pub output_hash_algo: Option<String>,
    #[serde(rename = "outputHashMode", skip_serializing_if = "Option::is_none")]
    pub output_hash_mode: Option<String>,
    #[serde(rename = "postFetch", skip_serializing_if = "Option::is_none")]
    pub post_fetch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submodule: Option<bool>,
    #[serde(rename = "sparseCheckout", skip_serializing_if = "Option::is_none")]
    pub sparse_checkout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hg_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hg_changeset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svn_url: Option<String>,
    /// A number in nixpkgs-swh output, possibly a string in Guix output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svn_revision: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svn_files: Option<Vec<String>>,
    #[serde(rename = "nixStorePath", skip_serializing_if = "Option::is_none")]
    pub nix_store_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub narinfo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Older nixpkgs-swh output carried the raw hash too.
    #[serde(rename = "outputHash", skip_serializing_if = "Option::is_none")]
    pub output_hash: Option<String>,
    /// Guix names the package a source belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "inferredFetcher", skip_serializing_if = "Option::is_none")]
    pub inferred_fetcher: Option<String>,
}

impl Source {
    /// A source of `kind` with its hash and mode, and nothing else set yet.
    pub(crate) fn new(kind: SourceType, hash: &Hash, mode: HashMode) -> Source {
        Source {
            kind,
            urls: None,
            integrity: Some(hash.to_sri()),
            output_hash_algo: Some(hash.algo().name().to_owned()),
            output_hash_mode: Some(mode.name().to_owned()),
            post_fetch: None,
            submodule: None,
            sparse_checkout: None,
            git_url: None,
            git_ref: None,
            hg_url: None,
            hg_changeset: None,
            svn_url: None,
            svn_revision: None,
            svn_files: None,
            nix_store_path: None,
            narinfo: None,
            last_modified: None,
            output_hash: None,
            name: None,
            inferred_fetcher: None,
        }
    }

    /// The URL a source is fetched from first: `urls[0]`, or the VCS URL.
    pub fn primary_url(&self) -> Option<&str> {
        match self.kind {
            SourceType::Url => self.urls.as_ref()?.first().map(String::as_str),
            SourceType::Git => self.git_url.as_deref(),
            SourceType::Hg => self.hg_url.as_deref(),
            SourceType::Svn => self.svn_url.as_deref(),
        }
    }

    /// The name Nix gives the source's store path when the entry does not say (`nixStorePath`
    /// or `name`): nixpkgs' `fetchurl` takes the base name of its first URL, and `fetchzip`
    /// and the VCS fetchers (through `fetchFromGitHub` and the like) name it `source`.
    pub(crate) fn store_name(&self) -> Option<&str> {
        if let Some(name) = &self.name {
            return Some(name);
        }
        let recursive = self.output_hash_mode.as_deref() == Some("recursive");
        match self.kind {
            SourceType::Url if !recursive => {
                let url = self.primary_url()?;
                url.rsplit('/').next().filter(|base| !base.is_empty())
            }
            _ => Some("source"),
        }
    }

    /// The commit a git source is pinned to, if its ref is a full commit id (40 lowercase hex;
    /// refs such as `refs/tags/v1` name no commit by themselves).
    pub(crate) fn git_commit(&self) -> Option<&str> {
        let reference = self.git_ref.as_deref().filter(|_| self.kind == SourceType::Git)?;
        let is_commit = reference.len() == 40 && reference.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        is_commit.then_some(reference)
    }

    /// What identifies a source across revisions: its store path where known (Nixpkgs), else its
    /// hash, else its VCS origin and revision.
    pub fn identity(&self) -> String {
        if let Some(path) = &self.nix_store_path {
            return path.clone();
        }
        if let Some(integrity) = &self.integrity {
            return format!("{}:{integrity}", self.kind.name());
        }
        let reference = match self.kind {
            SourceType::Git => self.git_ref.clone(),
            SourceType::Hg => self.hg_changeset.clone(),
            SourceType::Svn => self.svn_revision.as_ref().map(Value::to_string),
            SourceType::Url => None,
        };
        format!("{}:{}@{}", self.kind.name(), self.primary_url().unwrap_or(""), reference.unwrap_or_default())
    }
}

/// An entry that could not be read, with where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryProblem {
    pub index: usize,
    /// The field at fault, when one is.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = Clipped(&self.message);
        match &self.field {
            Some(field) => write!(f, "sources[{}].{}: {message}", self.index, Clipped(field)),
            None => write!(f, "sources[{}]: {message}", self.index),
        }
    }
}

/// Text from the input as a message shows it: whole up to [`Clipped::KEEP`] characters, else
/// cut, with its length; a hostile entry can hold megabytes in one string.
pub struct Clipped<'a>(pub &'a str);

impl Clipped<'_> {
    const KEEP: usize = 200;
}

impl std::fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(Clipped::KEEP) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}… ({} bytes in all)", &self.0[..cut], self.0.len()),
        }
    }
}

/// A sources.json as read: the entries that parsed, the ones without an origin (Guix's
/// `"no-origin"` and `false` types), and the problems of the others.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSources {
    pub file: SourcesFile,
    /// Indices of entries that name no fetchable origin.
    pub without_origin: Vec<usize>,
    pub problems: Vec<EntryProblem>,
}

/// Why a sources.json could not be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourcesError {
    #[error("failed to read {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to parse {} as JSON", path.display())]
    Json {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to read {}", path.display())]
    Shape {
        path: std::path::PathBuf,
        #[source]
        source: ShapeError,
    },
    #[error("failed to write sources.json")]
    Write(#[source] io::Error),
}

/// Why a JSON document is not a sources file at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    #[error("the top level is not a JSON object")]
    NotAnObject,
    #[error("there is no `sources` list")]
    NoSources,
}

/// Reads a sources.json file (nixpkgs-swh's or Guix's), keeping every entry that parses.
pub fn read_file(path: &Path) -> Result<ReadSources, SourcesError> {
    let bytes = std::fs::read(path).map_err(|source| SourcesError::Read { path: path.to_owned(), source })?;
    read_bytes(&bytes, path)
}

/// Reads a sources.json document already in memory (downloaded, say); `path` names it in errors.
/// Bytes that are not UTF-8 cost only the entries that hold them: each is reported and skipped.
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<ReadSources, SourcesError> {
    let (value, not_utf8) = parse(bytes).map_err(|source| SourcesError::Json { path: path.to_owned(), source })?;
    entries_of(value, not_utf8).map_err(|source| SourcesError::Shape { path: path.to_owned(), source })
}

/// Parses a JSON document; `true` if it was not all UTF-8 and was read lossily, each bad
/// sequence as U+FFFD, so that [`holds_replacement`] tells the parts that held one.
pub(crate) fn parse(bytes: &[u8]) -> Result<(Value, bool), serde_json::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok((serde_json::from_str(text)?, false)),
        Err(_) => Ok((serde_json::from_str(&String::from_utf8_lossy(bytes))?, true)),
    }
}

/// What an entry that held bytes that are not UTF-8 is reported as.
pub(crate) const NOT_UTF8: &str = "it holds bytes that are not UTF-8";

/// Whether a JSON value holds U+FFFD in a string or a key.
pub(crate) fn holds_replacement(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\u{fffd}'),
        Value::Array(items) => items.iter().any(holds_replacement),
        Value::Object(map) => map.iter().any(|(key, item)| key.contains('\u{fffd}') || holds_replacement(item)),
        _ => false,
    }
}

/// The entries of a sources document; with `not_utf8`, the document was read lossily, and
/// entries that hold a replacement character are reported instead of read.
fn entries_of(value: Value, not_utf8: bool) -> Result<ReadSources, ShapeError> {
    let Value::Object(mut top) = value else { return Err(ShapeError::NotAnObject) };
    let Some(Value::Array(entries)) = top.remove("sources") else {
        return Err(ShapeError::NoSources);
    };
    let text = |top: &mut serde_json::Map<String, Value>, key: &str| match top.remove(key) {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut file = SourcesFile {
        version: top.remove("version").unwrap_or(Value::Null),
        revision: text(&mut top, "revision"),
        release: text(&mut top, "release"),
        evaluation: text(&mut top, "evaluation"),
        timestamp: text(&mut top, "timestamp"),
        sources: Vec::with_capacity(entries.len()),
    };
    let mut without_origin = Vec::new();
    let mut problems = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        if not_utf8 && holds_replacement(&entry) {
            problems.push(EntryProblem { index, field: None, message: NOT_UTF8.to_owned() });
            continue;
        }
        match entry.get("type") {
            Some(Value::Bool(false)) => {
                without_origin.push(index);
                continue;
            }
            Some(Value::String(t)) if t == "no-origin" => {
                without_origin.push(index);
                continue;
            }
            _ => {}
        }
        match serde_json::from_value::<Source>(entry) {
            Ok(source) => file.sources.push(source),
            Err(err) => problems.push(EntryProblem { index, field: None, message: err.to_string() }),
        }
    }
    Ok(ReadSources { file, without_origin, problems })
}

/// Writes `file` deterministically: fields in a fixed order, one source per line.
pub fn write(file: &SourcesFile, mut out: impl Write) -> Result<(), SourcesError> {
    let empty = SourcesFile {
        version: file.version.clone(),
        revision: file.revision.clone(),
        release: file.release.clone(),
        evaluation: file.evaluation.clone(),
        timestamp: file.timestamp.clone(),
        sources: Vec::new(),
    };
    let mut header = serde_json::to_value(empty).expect("a sources file serialises");
    header.as_object_mut().expect("a sources file is an object").remove("sources");
    let header = serde_json::to_string(&header).expect("a JSON object serialises");
    let io = SourcesError::Write;
    // The header object without its closing brace, which comes after the sources.
    out.write_all(&header.as_bytes()[..header.len() - 1]).map_err(io)?;
    out.write_all(b",\"sources\":[").map_err(io)?;
    for (i, source) in file.sources.iter().enumerate() {
        out.write_all(if i == 0 { b"\n" } else { b",\n" }).map_err(io)?;
        serde_json::to_writer(&mut out, source).map_err(|e| SourcesError::Write(e.into()))?;
    }
    out.write_all(b"\n]}\n").map_err(io)
}
