//! Evaluating a Nixpkgs checkout with real Nix to list its sources.
//!
//! The walker expression (`walker.nix`, embedded) runs under `nix-instantiate --eval --strict
//! --json --readonly-mode`, which computes store paths without writing to the store. Root
//! attributes are split into chunks evaluated by up to `jobs` processes at once. Nix's `tryEval`
//! catches only `throw` and failed assertions; any other evaluation error aborts a whole process,
//! so a chunk that fails is split in halves until the attribute at fault is found. Why an
//! attribute failed is asked of Nix once more without `tryEval` (for the first
//! [`MAX_REASONS`] failures).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use serde_json::Value;

use super::normalise::{Mirrors, NormaliseError, RawSource, normalise};
use crate::sources::{Source, SourcesFile};

const WALKER: &str = include_str!("walker.nix");

/// Failures whose reason is looked up; past this many, only the attribute is named.
pub(crate) const MAX_REASONS: usize = 100;

/// What `list` is asked to do.
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// A Nixpkgs checkout, or a git repository when `rev` is given.
    pub nixpkgs: PathBuf,
    pub rev: Option<String>,
    /// Dotted attribute paths to start from; empty for the default roots.
    pub attrs: Vec<String>,
    pub jobs: usize,
}

/// An attribute that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttribute {
    pub attribute: String,
    /// Nix's error message, when it was looked up.
    pub reason: Option<String>,
}

/// The result of `list`.
#[derive(Debug)]
pub struct Listing {
    pub file: SourcesFile,
    pub roots: usize,
    pub failed: Vec<FailedAttribute>,
    /// Records that did not become sources.
    pub rejected: Vec<NormaliseError>,
    /// Mirror URLs dropped because their site is unknown.
    pub unknown_mirrors: Vec<String>,
    /// Everything the evaluation found, before normalisation: enough to redo it (`--from-raw`).
    pub raw: RawEvaluation,
}

impl Listing {
    /// Normalises a raw evaluation into sources (deduplicated by store path, sorted).
    pub fn from_raw(raw: RawEvaluation) -> Listing {
        let normalised = normalise_all(&raw.sources, &raw.mirrors);
        let mut failed = raw.crashed.clone();
        failed
            .extend(raw.failed.iter().map(|attribute| FailedAttribute { attribute: attribute.clone(), reason: None }));
        failed.sort_by(|a, b| a.attribute.cmp(&b.attribute).then(b.reason.is_some().cmp(&a.reason.is_some())));
        failed.dedup_by(|a, b| a.attribute == b.attribute);
        let file = SourcesFile {
            version: serde_json::json!(1),
            revision: raw.revision.clone(),
            release: None,
            evaluation: None,
            timestamp: raw.timestamp.clone(),
            sources: normalised.sources,
        };
        Listing {
            file,
            roots: raw.roots,
            failed,
            rejected: normalised.rejected,
            unknown_mirrors: normalised.unknown_mirrors,
            raw,
        }
    }
}

/// What the walker returns for a set of roots; merged over chunks, with what `list` adds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RawEvaluation {
    #[serde(default)]
    pub mirrors: Mirrors,
    /// Raw records, kept as JSON so that one malformed record is rejected alone.
    #[serde(default)]
    pub sources: Vec<Value>,
    /// Attributes that threw or failed an assertion (caught by tryEval).
    #[serde(default)]
    pub failed: Vec<String>,
    /// Root attributes of the whole listing (set by `list` once every chunk is in).
    #[serde(default)]
    pub roots: usize,
    /// Attributes that stopped the evaluator, with its message.
    #[serde(default)]
    pub crashed: Vec<FailedAttribute>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

impl RawEvaluation {
    fn merge(&mut self, other: RawEvaluation) {
        self.mirrors.extend(other.mirrors);
        self.sources.extend(other.sources);
        self.failed.extend(other.failed);
        self.crashed.extend(other.crashed);
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    #[error("failed to run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to evaluate {}: {stderr}", nixpkgs.display())]
    Evaluation { nixpkgs: PathBuf, stderr: String },
    #[error("failed to read the evaluation's output")]
    Output(#[source] serde_json::Error),
    #[error("failed to check out revision {rev} of {}: {stderr}", repo.display())]
    Checkout { repo: PathBuf, rev: String, stderr: String },
    #[error("failed to create a temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("failed to write the walker expression to a temporary file")]
    WriteWalker(#[source] std::io::Error),
    #[error("failed to evaluate {attributes}: nix-instantiate was killed by signal {signal}")]
    Killed { attributes: String, signal: i32 },
}

/// Evaluates `options.nixpkgs` and returns its sources, deduplicated by store path and sorted.
/// `progress` is told how many chunks of roots are done, of how many.
pub fn list(options: &ListOptions, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<Listing, ListError> {
    let checkout_dir;
    let (root, revision, timestamp) = match &options.rev {
        Some(rev) => {
            checkout_dir =
                tempfile::Builder::new().prefix("swh-bridge-nixpkgs-").tempdir().map_err(ListError::TempDir)?;
            let (commit, time) = check_out(&options.nixpkgs, rev, checkout_dir.path())?;
            (checkout_dir.path().to_owned(), Some(commit), time)
        }
        None => {
            let (commit, time) = clean_head_commit(&options.nixpkgs).unzip();
            (options.nixpkgs.clone(), commit, time)
        }
    };
    let walker =
        tempfile::Builder::new().prefix("swh-bridge-walker-").suffix(".nix").tempfile().map_err(ListError::TempDir)?;
    walker.as_file().write_all(WALKER.as_bytes()).map_err(ListError::WriteWalker)?;
    let evaluator =
        Evaluator { nixpkgs: absolute(&root), walker: walker.path().to_owned(), attrs: options.attrs.clone() };

    let names = evaluator.root_names()?;
    let chunks = chunk(&names, options.jobs.max(1));
    let results = run_pool(options.jobs, chunks.len(), |i| evaluator.evaluate_bisecting(&chunks[i]), progress)?;
    let mut raw = RawEvaluation::default();
    for evaluation in results {
        raw.merge(evaluation);
    }
    raw.roots = names.len();
    raw.revision = revision;
    raw.timestamp = timestamp;

    // Ask Nix why each attribute failed, on the same pool (each question is a full evaluation).
    let unexplained: Vec<String> = {
        let mut names = raw.failed.clone();
        names.sort();
        names.dedup();
        names.truncate(MAX_REASONS);
        names
    };
    let reasons = run_pool(options.jobs, unexplained.len(), |i| Ok(evaluator.probe(&unexplained[i])), &|_, _| {})?;
    raw.failed.retain(|name| !unexplained.contains(name));
    raw.crashed.extend(
        unexplained
            .into_iter()
            .zip(reasons)
            .map(|(attribute, reason)| FailedAttribute { attribute, reason: Some(reason) }),
    );
    Ok(Listing::from_raw(raw))
}

/// Runs `job(0..count)` on up to `jobs` threads, in order of index; stops handing out work after
/// the first error, which it returns.
fn run_pool<T: Send>(
    jobs: usize,
    count: usize,
    job: impl Fn(usize) -> Result<T, ListError> + Sync,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<T>, ListError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(count));
    let first_error: Mutex<Option<ListError>> = Mutex::new(None);
    progress(0, count);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(count) {
            scope.spawn(|| {
                while first_error.lock().expect("no thread panics holding it").is_none() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    match job(i) {
                        Ok(result) => results.lock().expect("no thread panics holding it").push((i, result)),
                        Err(err) => {
                            first_error.lock().expect("no thread panics holding it").get_or_insert(err);
                        }
                    }
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, count);
                }
            });
        }
    });
    if let Some(err) = first_error.into_inner().expect("the threads are done") {
        return Err(err);
    }
    let mut results = results.into_inner().expect("the threads are done");
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

/// The sources of a raw evaluation, with what was rejected or dropped.
#[derive(Debug, Default)]
pub(crate) struct NormalisedAll {
    pub sources: Vec<Source>,
    pub rejected: Vec<NormaliseError>,
    pub unknown_mirrors: Vec<String>,
}

/// Normalises raw records, keeping one source per store path, sorted by store path. Records that
/// share a store path (the same name and hash, fetched from different URLs) are taken in a fixed
/// order and their URLs merged, so the result does not depend on which evaluator finished first.
pub(crate) fn normalise_all(raw: &[Value], mirrors: &Mirrors) -> NormalisedAll {
    let store_path = |r: &Value| r.get("storePath").and_then(Value::as_str).unwrap_or("").to_owned();
    let mut records: Vec<(String, &Value)> = raw.iter().map(|r| (store_path(r), r)).collect();
    // Only records that share a store path need their whole text compared.
    records.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.to_string().cmp(&y.to_string())));
    let mut by_path: BTreeMap<String, Source> = BTreeMap::new();
    let mut out = NormalisedAll::default();
    for (_, record) in records {
        let parsed = RawSource::deserialize(record).map_err(|e| NormaliseError {
            store_path: record.get("storePath").and_then(Value::as_str).map(str::to_owned),
            reason: format!("the walker's record is malformed: {e}"),
        });
        match parsed.and_then(|raw| normalise(&raw, mirrors)) {
            Ok(normalised) => {
                out.unknown_mirrors.extend(normalised.unknown_mirrors);
                let source = normalised.source;
                let key = source.nix_store_path.clone().unwrap_or_else(|| source.identity());
                match by_path.get_mut(&key) {
                    None => {
                        by_path.insert(key, source);
                    }
                    Some(kept) => {
                        if let (Some(kept_urls), Some(urls)) = (kept.urls.as_mut(), source.urls) {
                            for url in urls {
                                if !kept_urls.contains(&url) {
                                    kept_urls.push(url);
                                }
                            }
                        }
                    }
                }
            }
            Err(err) => out.rejected.push(err),
        }
    }
    out.unknown_mirrors.sort();
    out.unknown_mirrors.dedup();
    out.sources = by_path.into_values().collect();
    out
}

/// Splits root names into chunks: several per job, so that one slow chunk does not hold up the
/// others, and the progress bar moves.
fn chunk(names: &[String], jobs: usize) -> Vec<Vec<String>> {
    if names.is_empty() {
        return Vec::new();
    }
    let count = if jobs == 1 { 1 } else { (jobs * 4).min(names.len()) };
    let mut chunks = vec![Vec::new(); count];
    for (i, name) in names.iter().enumerate() {
        chunks[i % count].push(name.clone());
    }
    chunks
}

struct Evaluator {
    nixpkgs: PathBuf,
    walker: PathBuf,
    attrs: Vec<String>,
}

impl Evaluator {
    fn command(&self) -> Command {
        let mut cmd = Command::new("nix-instantiate");
        cmd.args(["--eval", "--strict", "--json", "--readonly-mode"])
            .arg(&self.walker)
            .arg("--argstr")
            .arg("nixpkgs")
            .arg(&self.nixpkgs)
            .stdin(Stdio::null());
        if !self.attrs.is_empty() {
            cmd.arg("--argstr").arg("attrsJson").arg(serde_json::to_string(&self.attrs).expect("strings serialise"));
        }
        cmd
    }

    /// Runs Nix: its output, or its error message; a Nix killed by a signal (out of memory, say)
    /// is an error of the run, not of an attribute.
    fn run(&self, mut cmd: Command, what: &[String]) -> Result<Evaluated, ListError> {
        use std::os::unix::process::ExitStatusExt;
        let out = cmd.output().map_err(|source| ListError::Spawn { program: "nix-instantiate".into(), source })?;
        if let Some(signal) = out.status.signal() {
            return Err(ListError::Killed { attributes: what.join(", "), signal });
        }
        if out.status.success() {
            Ok(Evaluated::Output(out.stdout))
        } else {
            Ok(Evaluated::Failed { stderr: String::from_utf8_lossy(&out.stderr).into_owned() })
        }
    }

    fn root_names(&self) -> Result<Vec<String>, ListError> {
        let mut cmd = self.command();
        cmd.args(["--arg", "listRoots", "true"]);
        match self.run(cmd, &[])? {
            Evaluated::Output(stdout) => serde_json::from_slice(&stdout).map_err(ListError::Output),
            Evaluated::Failed { stderr } => {
                Err(ListError::Evaluation { nixpkgs: self.nixpkgs.clone(), stderr: error_lines(&stderr) })
            }
        }
    }

    /// Evaluates `names`, splitting them in halves whenever the evaluator dies, down to the
    /// attributes that make it die; those come back as failures with Nix's message.
    fn evaluate_bisecting(&self, names: &[String]) -> Result<RawEvaluation, ListError> {
        let mut cmd = self.command();
        cmd.arg("--argstr").arg("onlyJson").arg(serde_json::to_string(names).expect("strings serialise"));
        match self.run(cmd, names)? {
            Evaluated::Output(stdout) => serde_json::from_slice(&stdout).map_err(ListError::Output),
            Evaluated::Failed { stderr } if names.len() == 1 => Ok(RawEvaluation {
                crashed: vec![FailedAttribute { attribute: names[0].clone(), reason: Some(error_lines(&stderr)) }],
                ..RawEvaluation::default()
            }),
            Evaluated::Failed { .. } => {
                let (left, right) = names.split_at(names.len() / 2);
                let mut evaluation = self.evaluate_bisecting(left)?;
                evaluation.merge(self.evaluate_bisecting(right)?);
                Ok(evaluation)
            }
        }
    }

    /// Why `attribute` fails to evaluate, in Nix's words.
    fn probe(&self, attribute: &str) -> String {
        let mut cmd = self.command();
        cmd.arg("--argstr").arg("probe").arg(attribute);
        match self.run(cmd, &[attribute.to_owned()]) {
            Ok(Evaluated::Failed { stderr }) => error_lines(&stderr),
            Ok(Evaluated::Output(_)) => "it evaluates on its own; it failed only inside the walk".into(),
            Err(err) => err.to_string(),
        }
    }
}

/// What an evaluation came to: Nix's output, or the error it stopped on.
enum Evaluated {
    Output(Vec<u8>),
    Failed { stderr: String },
}

/// The `error:` lines of Nix's stderr, without the traces around them.
fn error_lines(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim())
        .collect();
    if errors.is_empty() { stderr.trim().lines().last().unwrap_or("").to_owned() } else { errors.join("; ") }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn git(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(repo).stdin(Stdio::null());
    cmd
}

/// The commit and its commit time, if `repo` is the top of a git checkout (not a directory
/// inside some other repository) with no change: a modified tree is no commit.
fn clean_head_commit(repo: &Path) -> Option<(String, String)> {
    let top = git(repo).args(["rev-parse", "--show-toplevel"]).output().ok()?;
    let top = PathBuf::from(String::from_utf8(top.stdout).ok()?.trim());
    if top.canonicalize().ok()? != repo.canonicalize().ok()? {
        return None;
    }
    let status = git(repo).args(["status", "--porcelain"]).output().ok()?;
    if !status.status.success() || !status.stdout.is_empty() {
        return None;
    }
    let out = git(repo).args(["show", "-s", "--format=%H %ct", "HEAD"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let (commit, time) = text.trim().split_once(' ')?;
    Some((commit.to_owned(), time.to_owned()))
}

/// Extracts `rev` of the repository at `repo` into `dest` (with `git archive`, so that the
/// repository is not touched); returns the commit id and its time.
fn check_out(repo: &Path, rev: &str, dest: &Path) -> Result<(String, Option<String>), ListError> {
    let fail = |stderr: String| ListError::Checkout { repo: repo.to_owned(), rev: rev.to_owned(), stderr };
    let spawn = |source| ListError::Spawn { program: "git".into(), source };
    let out =
        git(repo).args(["show", "-s", "--format=%H %ct"]).arg(format!("{rev}^{{commit}}")).output().map_err(spawn)?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (commit, time) = text.split_once(' ').unwrap_or((&text, ""));
    let mut archive =
        git(repo).args(["archive", "--format=tar", commit]).stdout(Stdio::piped()).spawn().map_err(spawn)?;
    let unpacked = {
        let mut tar = tar::Archive::new(archive.stdout.take().expect("stdout is piped"));
        tar.set_preserve_permissions(true);
        tar.unpack(dest)
        // The pipe closes here, so that git cannot block on it if unpacking stopped early.
    };
    let status = archive.wait().map_err(spawn)?;
    unpacked.map_err(|e| fail(e.to_string()))?;
    if !status.success() {
        return Err(fail(format!("git archive exited with {status}")));
    }
    Ok((commit.to_owned(), (!time.is_empty()).then(|| time.to_owned())))
}
