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

use super::normalise::{Mirrors, NormaliseError, RawSource, normalise};
use crate::sources::{Source, SourcesFile};

const WALKER: &str = include_str!("walker.nix");

/// Failures whose reason is looked up; past this many, only the attribute is named.
pub const MAX_REASONS: usize = 100;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// What the evaluation returned, before normalisation.
    pub raw: RawEvaluation,
}

impl Listing {
    /// Normalises a raw evaluation into sources (deduplicated by store path, sorted).
    pub fn from_raw(raw: RawEvaluation, revision: Option<String>, timestamp: Option<String>) -> Listing {
        let (sources, rejected) = normalise_all(&raw.sources, &raw.mirrors);
        let mut failed: Vec<FailedAttribute> =
            raw.failed.iter().map(|attribute| FailedAttribute { attribute: attribute.clone(), reason: None }).collect();
        failed.sort_by(|a, b| a.attribute.cmp(&b.attribute));
        failed.dedup();
        let file = SourcesFile {
            version: serde_json::json!(1),
            revision,
            release: None,
            evaluation: None,
            timestamp,
            sources,
        };
        Listing { file, roots: raw.roots, failed, rejected, raw }
    }
}

/// The walker's output for one set of roots.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RawEvaluation {
    #[serde(default)]
    pub mirrors: Mirrors,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub failed: Vec<String>,
    #[serde(default)]
    pub roots: usize,
}

#[derive(Debug, thiserror::Error)]
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
            let (commit, time) = head_commit(&options.nixpkgs).unzip();
            (options.nixpkgs.clone(), commit, time)
        }
    };
    let walker =
        tempfile::Builder::new().prefix("swh-bridge-walker-").suffix(".nix").tempfile().map_err(ListError::TempDir)?;
    walker.as_file().write_all(WALKER.as_bytes()).map_err(ListError::TempDir)?;
    let evaluator = Evaluator { nixpkgs: root, walker: walker.path().to_owned(), attrs: options.attrs.clone() };

    let names = evaluator.root_names()?;
    let chunks = chunk(&names, options.jobs.max(1));
    let done = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(RawEvaluation, Vec<FailedAttribute>)>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<ListError>> = Mutex::new(None);
    progress(0, chunks.len());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1).min(chunks.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(names) = chunks.get(i) else { break };
                    match evaluator.evaluate_bisecting(names) {
                        Ok(result) => results.lock().expect("no thread panics holding it").push(result),
                        Err(err) => {
                            first_error.lock().expect("no thread panics holding it").get_or_insert(err);
                        }
                    }
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, chunks.len());
                }
            });
        }
    });
    if let Some(err) = first_error.into_inner().expect("the threads are done") {
        return Err(err);
    }

    let mut raw = RawEvaluation::default();
    let mut crashed = Vec::new();
    for (evaluation, failures) in results.into_inner().expect("the threads are done") {
        raw.mirrors.extend(evaluation.mirrors);
        raw.sources.extend(evaluation.sources);
        raw.failed.extend(evaluation.failed);
        raw.roots += evaluation.roots;
        crashed.extend(failures);
    }
    let mut listing = Listing::from_raw(raw, revision, timestamp);
    listing.roots = names.len();
    listing.failed.extend(crashed);
    listing.failed.sort_by(|a, b| a.attribute.cmp(&b.attribute));
    for failure in listing.failed.iter_mut().filter(|f| f.reason.is_none()).take(MAX_REASONS) {
        failure.reason = Some(evaluator.probe(&failure.attribute));
    }
    Ok(listing)
}

/// Normalises raw records, keeping one source per store path, sorted by store path.
pub fn normalise_all(raw: &[RawSource], mirrors: &Mirrors) -> (Vec<Source>, Vec<NormaliseError>) {
    let mut by_path: BTreeMap<String, Source> = BTreeMap::new();
    let mut rejected = Vec::new();
    for record in raw {
        if record.store_path.as_ref().is_some_and(|path| by_path.contains_key(path)) {
            continue;
        }
        match normalise(record, mirrors) {
            Ok(source) => {
                let key = source.nix_store_path.clone().unwrap_or_else(|| source.identity());
                by_path.entry(key).or_insert(source);
            }
            Err(err) => rejected.push(err),
        }
    }
    rejected.sort_by(|a, b| a.store_path.cmp(&b.store_path));
    rejected.dedup();
    (by_path.into_values().collect(), rejected)
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
            .arg("--arg")
            .arg("nixpkgs")
            .arg(absolute(&self.nixpkgs))
            .stdin(Stdio::null());
        if !self.attrs.is_empty() {
            cmd.arg("--argstr").arg("attrsJson").arg(serde_json::to_string(&self.attrs).expect("strings serialise"));
        }
        cmd
    }

    fn run(&self, mut cmd: Command) -> Result<Result<Vec<u8>, String>, ListError> {
        let out = cmd.output().map_err(|source| ListError::Spawn { program: "nix-instantiate".into(), source })?;
        if out.status.success() {
            Ok(Ok(out.stdout))
        } else {
            Ok(Err(String::from_utf8_lossy(&out.stderr).into_owned()))
        }
    }

    fn root_names(&self) -> Result<Vec<String>, ListError> {
        let mut cmd = self.command();
        cmd.args(["--arg", "listRoots", "true"]);
        match self.run(cmd)? {
            Ok(stdout) => serde_json::from_slice(&stdout).map_err(ListError::Output),
            Err(stderr) => Err(ListError::Evaluation { nixpkgs: self.nixpkgs.clone(), stderr: error_lines(&stderr) }),
        }
    }

    /// Evaluates `names`, splitting them in halves whenever the evaluator dies, down to the
    /// attributes that make it die; those come back as failures with Nix's message.
    fn evaluate_bisecting(&self, names: &[String]) -> Result<(RawEvaluation, Vec<FailedAttribute>), ListError> {
        let mut cmd = self.command();
        cmd.arg("--argstr").arg("onlyJson").arg(serde_json::to_string(names).expect("strings serialise"));
        match self.run(cmd)? {
            Ok(stdout) => Ok((serde_json::from_slice(&stdout).map_err(ListError::Output)?, Vec::new())),
            Err(stderr) if names.len() == 1 => Ok((
                RawEvaluation::default(),
                vec![FailedAttribute { attribute: names[0].clone(), reason: Some(error_lines(&stderr)) }],
            )),
            Err(_) => {
                let (left, right) = names.split_at(names.len() / 2);
                let (mut evaluation, mut failed) = self.evaluate_bisecting(left)?;
                let (other, more_failed) = self.evaluate_bisecting(right)?;
                evaluation.mirrors.extend(other.mirrors);
                evaluation.sources.extend(other.sources);
                evaluation.failed.extend(other.failed);
                evaluation.roots += other.roots;
                failed.extend(more_failed);
                Ok((evaluation, failed))
            }
        }
    }

    /// Why `attribute` fails to evaluate, in Nix's words.
    fn probe(&self, attribute: &str) -> String {
        let mut cmd = self.command();
        cmd.arg("--argstr").arg("probe").arg(attribute);
        match self.run(cmd) {
            Ok(Err(stderr)) => error_lines(&stderr),
            Ok(Ok(_)) => "it evaluates on its own; it failed only inside the walk".into(),
            Err(err) => err.to_string(),
        }
    }
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
/// inside some other repository).
fn head_commit(repo: &Path) -> Option<(String, String)> {
    let top = git(repo).args(["rev-parse", "--show-toplevel"]).output().ok()?;
    let top = PathBuf::from(String::from_utf8(top.stdout).ok()?.trim());
    if top.canonicalize().ok()? != repo.canonicalize().ok()? {
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
    let stdout = archive.stdout.take().expect("stdout is piped");
    let mut tar = tar::Archive::new(stdout);
    tar.set_preserve_permissions(true);
    let unpacked = tar.unpack(dest);
    let status = archive.wait().map_err(spawn)?;
    if !status.success() {
        return Err(fail(format!("git archive exited with {status}")));
    }
    unpacked.map_err(|e| fail(e.to_string()))?;
    Ok((commit.to_owned(), (!time.is_empty()).then(|| time.to_owned())))
}
