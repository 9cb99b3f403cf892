//! Evaluating a Nixpkgs checkout with real Nix to list its sources: exactly the fixed-output
//! derivations in the build closure of its root attributes, read from their `.drv` files.
//!
//! How:
//! 1. Long-lived evaluators ([`super::repl`], `nix repl`, up to `jobs` of them) each import the
//!    package set once (`evaluator.nix`, embedded) and are asked for one root attribute at a
//!    time: its derivations' drvPaths, which writes them (and every `.drv` they depend on) to
//!    the store. An error `tryEval` cannot catch costs that attribute alone; an evaluator that
//!    dies or hangs past the timeout is restarted. Why each attribute failed is asked again
//!    without `tryEval`, so Nix says it, with its location.
//! 2. The closure of the roots' `.drv` files (`nix-store -qR`) holds every derivation a build
//!    needs, also those reached only through strings (buildEnv's JSON, a linkFarm's entries, a
//!    configure flag), which no walk of attributes sees. Its fixed-output derivations are the
//!    sources ([`super::normalise`]).
//!
//! The store is a throwaway one (a directory, used as a chroot store) unless one is named:
//! nothing is built in it, only `.drv` files and the files expressions import are written.
//! With `--system`, the package set is instantiated once per system (the top-level set:
//! all-tarballs.nix lists x86_64-linux jobs only), and the sources are the union.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::normalise::{Described, Mirrors, NormaliseError, RawSource, UrlLess, normalise};
use super::repl::{NixError, Repl, ReplCommand, ReplError, nix_path_string, nix_string};
use crate::sources::{Source, SourcesFile};
use crate::store::{NixStore, StoreError};

const EVALUATOR: &str = include_str!("evaluator.nix");

/// How long one root attribute may take to evaluate, by default.
pub const DEFAULT_ATTRIBUTE_TIMEOUT: Duration = Duration::from_secs(600);

/// What `list` is asked to do.
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// A Nixpkgs checkout, or a git repository when `rev` is given.
    pub nixpkgs: PathBuf,
    pub rev: Option<String>,
    /// Dotted attribute paths to start from; empty for the default roots.
    pub attrs: Vec<String>,
    /// Evaluators at once.
    pub jobs: usize,
    /// Systems to instantiate for; empty for the package set's default.
    pub systems: Vec<String>,
    /// The store to instantiate into, as Nix's `--store`; `None` for a throwaway one.
    pub store: Option<String>,
    pub attribute_timeout: Duration,
}

/// An attribute that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttribute {
    pub attribute: String,
    /// Nix's error message and where it happened, when it was looked up.
    pub reason: Option<String>,
    /// The system it was evaluated for, when `--system` named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// The result of `list`.
#[derive(Debug)]
pub struct Listing {
    pub file: SourcesFile,
    pub roots: usize,
    pub failed: Vec<FailedAttribute>,
    /// Records that did not become sources.
    pub rejected: Vec<NormaliseError>,
    /// `mirror://` URLs whose site mirrors.nix lacks (kept as they are).
    pub unknown_mirrors: Vec<String>,
    /// Fixed outputs without a URL: only a binary cache can have them.
    pub url_less: Vec<UrlLess>,
    /// Sources found for each system (`default` when none was named).
    pub by_system: BTreeMap<String, usize>,
    /// What went otherwise than asked (all-tarballs.nix did not evaluate, say).
    pub warnings: Vec<String>,
    /// Everything the evaluation found, before normalisation: enough to redo it (`--from-raw`).
    pub raw: RawEvaluation,
}

/// The name `by_system` counts a listing without `--system` under.
const DEFAULT_SYSTEM: &str = "default";

impl Listing {
    /// Normalises a raw evaluation into sources (deduplicated by store path, sorted).
    pub fn from_raw(raw: RawEvaluation) -> Listing {
        let normalised = normalise_all(&raw.sources, &raw.mirrors);
        let mut failed = raw.crashed.clone();
        failed.extend(raw.failed.iter().map(|attribute| FailedAttribute {
            attribute: attribute.clone(),
            reason: None,
            system: None,
        }));
        failed.sort_by(|a, b| {
            (&a.attribute, &a.system).cmp(&(&b.attribute, &b.system)).then(b.reason.is_some().cmp(&a.reason.is_some()))
        });
        failed.dedup_by(|a, b| a.attribute == b.attribute && a.system == b.system);
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
            url_less: normalised.url_less,
            by_system: normalised.by_system,
            warnings: raw.warnings.clone(),
            raw,
        }
    }
}

/// What the evaluation found, merged over systems.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RawEvaluation {
    #[serde(default)]
    pub mirrors: Mirrors,
    /// Raw records, kept as JSON so that one malformed record is rejected alone.
    #[serde(default)]
    pub sources: Vec<Value>,
    /// Attributes that threw or failed an assertion, whose reason was not looked up.
    #[serde(default)]
    pub failed: Vec<String>,
    /// Root attributes of the whole listing, over every system.
    #[serde(default)]
    pub roots: usize,
    /// Attributes that failed, with Nix's message.
    #[serde(default)]
    pub crashed: Vec<FailedAttribute>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
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
    #[error("failed to evaluate {}: {error}", nixpkgs.display())]
    Evaluation { nixpkgs: PathBuf, error: NixError },
    #[error("failed to evaluate {}", nixpkgs.display())]
    Evaluator {
        nixpkgs: PathBuf,
        #[source]
        source: ReplError,
    },
    #[error("failed to read the evaluation's output")]
    Output(#[source] serde_json::Error),
    #[error("failed to check out revision {rev} of {}: {stderr}", repo.display())]
    Checkout { repo: PathBuf, rev: String, stderr: String },
    #[error("failed to create a temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("failed to write the evaluator expression to a temporary file")]
    WriteEvaluator(#[source] std::io::Error),
    #[error("failed to read the instantiated derivations")]
    Store(#[from] StoreError),
}

/// Evaluates `options.nixpkgs` and returns its sources, deduplicated by store path and sorted.
/// `progress` is told how many root attributes are done, of how many.
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
    let evaluator_file = tempfile::Builder::new()
        .prefix("swh-bridge-evaluator-")
        .suffix(".nix")
        .tempfile()
        .map_err(ListError::TempDir)?;
    evaluator_file.as_file().write_all(EVALUATOR.as_bytes()).map_err(ListError::WriteEvaluator)?;
    let throwaway = options.store.is_none().then(ThrowawayStore::new).transpose()?;
    let store = options
        .store
        .clone()
        .unwrap_or_else(|| throwaway.as_ref().expect("made when no store is named").path().display().to_string());
    let context = Context {
        nixpkgs: absolute(&root),
        evaluator: evaluator_file.path().to_owned(),
        attrs: options.attrs.clone(),
        jobs: options.jobs.max(1),
        repl: ReplCommand { store: store.clone(), timeout: options.attribute_timeout },
        store: NixStore::new(Some(store)),
    };
    let systems: Vec<Option<&str>> = match options.systems.is_empty() {
        true => vec![None],
        false => options.systems.iter().map(|s| Some(s.as_str())).collect(),
    };
    let mut raw = RawEvaluation { revision, timestamp, ..RawEvaluation::default() };
    let done = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    for system in systems {
        let evaluated = context.evaluate(
            system,
            &|| {
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total.load(Ordering::Relaxed));
            },
            &|roots| {
                total.fetch_add(roots, Ordering::Relaxed);
                progress(done.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
            },
        )?;
        raw.roots += evaluated.roots;
        raw.mirrors.extend(evaluated.mirrors);
        raw.crashed.extend(evaluated.failed);
        raw.warnings.extend(evaluated.warnings);
        raw.sources.extend(context.sources_of(&evaluated.drvs, system)?);
    }
    Ok(Listing::from_raw(raw))
}

/// A store in a temporary directory, removed with everything in it (Nix makes its directories
/// read-only, which a plain removal trips over).
struct ThrowawayStore(tempfile::TempDir);

impl ThrowawayStore {
    fn new() -> Result<ThrowawayStore, ListError> {
        tempfile::Builder::new().prefix("swh-bridge-store-").tempdir().map(ThrowawayStore).map_err(ListError::TempDir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for ThrowawayStore {
    fn drop(&mut self) {
        make_writable(self.0.path());
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::symlink_metadata(dir) else { return };
    if !metadata.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(metadata.permissions().mode() | 0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// What evaluating one system found.
struct SystemEvaluation {
    roots: usize,
    /// The roots' `.drv` paths.
    drvs: Vec<String>,
    failed: Vec<FailedAttribute>,
    mirrors: Mirrors,
    warnings: Vec<String>,
}

/// What every evaluator of a listing shares.
struct Context {
    nixpkgs: PathBuf,
    evaluator: PathBuf,
    attrs: Vec<String>,
    jobs: usize,
    repl: ReplCommand,
    store: NixStore,
}

/// What an evaluator answers for one root attribute.
#[derive(Deserialize)]
struct RootAnswer {
    drvs: Vec<String>,
    failed: Vec<String>,
}

impl Context {
    /// The expression that binds the helpers in an evaluator.
    fn helpers(&self, system: Option<&str>, all_tarballs: bool) -> String {
        let attrs = match self.attrs.is_empty() {
            true => "null".to_owned(),
            false => serde_json::to_string(&self.attrs).expect("strings serialise"),
        };
        format!(
            "import {} {{ nixpkgs = {}; system = {}; attrsJson = {}; allTarballs = {all_tarballs}; }}",
            nix_path_string(&self.evaluator),
            nix_path_string(&self.nixpkgs),
            system.map_or_else(|| "null".to_owned(), nix_string),
            nix_string(&attrs),
        )
    }

    fn evaluator_error(&self, source: ReplError) -> ListError {
        ListError::Evaluator { nixpkgs: self.nixpkgs.clone(), source }
    }

    /// An evaluator with the helpers bound as `h`.
    fn start(&self, helpers: &str) -> Result<Repl, ListError> {
        let mut repl = Repl::start(&self.repl).map_err(|e| self.evaluator_error(e))?;
        match repl.bind("h", helpers).map_err(|e| self.evaluator_error(e))? {
            Ok(()) => Ok(repl),
            Err(error) => Err(ListError::Evaluation { nixpkgs: self.nixpkgs.clone(), error }),
        }
    }

    /// Instantiates every root attribute for `system` (see the module docs).
    fn evaluate(
        &self,
        system: Option<&str>,
        one_done: &(dyn Fn() + Sync),
        roots_known: &dyn Fn(usize),
    ) -> Result<SystemEvaluation, ListError> {
        let mut warnings = Vec::new();
        let mut helpers = self.helpers(system, true);
        let mut first = self.start(&helpers)?;
        let names = match first.json("h.rootNames", "the root attributes").map_err(|e| self.evaluator_error(e))? {
            Ok(names) => names,
            Err(error) => {
                let all_tarballs = first.json("h.usesAllTarballs", "whether all-tarballs.nix is used");
                if !matches!(all_tarballs, Ok(Ok(Value::Bool(true)))) {
                    return Err(ListError::Evaluation { nixpkgs: self.nixpkgs.clone(), error });
                }
                warnings.push(self.relative(&format!(
                    "maintainers/scripts/all-tarballs.nix does not evaluate ({error}); listing the top-level package set instead"
                )));
                helpers = self.helpers(system, false);
                first = self.start(&helpers)?;
                first
                    .json("h.rootNames", "the root attributes")
                    .map_err(|e| self.evaluator_error(e))?
                    .map_err(|error| ListError::Evaluation { nixpkgs: self.nixpkgs.clone(), error })?
            }
        };
        let names: Vec<String> = serde_json::from_value(names).map_err(ListError::Output)?;
        let names_len = names.len();
        roots_known(names_len);
        let mirrors = match first.json("h.mirrors", "mirrors.nix").map_err(|e| self.evaluator_error(e))? {
            Ok(mirrors) => serde_json::from_value(mirrors).map_err(ListError::Output)?,
            Err(error) => {
                warnings.push(self.relative(&format!(
                    "mirrors.nix does not evaluate ({error}); mirror:// URLs are kept as they are"
                )));
                Mirrors::new()
            }
        };

        let drvs = Mutex::new(Vec::new());
        let unexplained = Mutex::new(Vec::new());
        let failed = Mutex::new(Vec::new());
        let failure = |attribute: &str, reason: String| FailedAttribute {
            attribute: attribute.to_owned(),
            reason: Some(self.relative(&reason)),
            system: system.map(str::to_owned),
        };
        self.on_evaluators(
            first,
            &helpers,
            names,
            |repl, name| {
                match repl.json(&format!("h.eval {}", nix_string(&name)), &name)? {
                    Ok(answer) => {
                        let answer: RootAnswer = serde_json::from_value(answer).map_err(|_| ReplError::Unreadable {
                            what: name.clone(),
                            answer: "an answer without drvs and failed".into(),
                        })?;
                        drvs.lock().expect("no thread panics holding it").extend(answer.drvs);
                        unexplained.lock().expect("no thread panics holding it").extend(answer.failed);
                    }
                    Err(error) => {
                        failed.lock().expect("no thread panics holding it").push(failure(&name, error.to_string()))
                    }
                }
                one_done();
                Ok(())
            },
            |name, err| {
                failed.lock().expect("no thread panics holding it").push(failure(&name, err.to_string()));
                one_done();
            },
        )?;

        // Why the attributes tryEval caught failed, in Nix's words.
        let unexplained = unexplained.into_inner().expect("the evaluators are done");
        if !unexplained.is_empty() {
            let probe = self.start(&helpers)?;
            self.on_evaluators(
                probe,
                &helpers,
                unexplained,
                |repl, path| {
                    let reason = match repl.json(&format!("h.probe {}", nix_string(&path)), &path)? {
                        Err(error) => error.to_string(),
                        Ok(_) => "it evaluates on its own; it failed only among its siblings".into(),
                    };
                    failed.lock().expect("no thread panics holding it").push(failure(&path, reason));
                    Ok(())
                },
                |path, err| failed.lock().expect("no thread panics holding it").push(failure(&path, err.to_string())),
            )?;
        }
        let mut drvs = drvs.into_inner().expect("the evaluators are done");
        drvs.sort();
        drvs.dedup();
        let mut failed = failed.into_inner().expect("the evaluators are done");
        failed.sort_by(|a, b| a.attribute.cmp(&b.attribute));
        Ok(SystemEvaluation { roots: names_len, drvs, failed, mirrors, warnings })
    }

    /// Runs `ask` for every item on up to `jobs` evaluators (`first`, and more started with
    /// `helpers`), each taking the next item when it is done with one. An evaluator that dies
    /// or hangs is restarted, and the item it was on is handed to `gave_up`.
    fn on_evaluators(
        &self,
        first: Repl,
        helpers: &str,
        items: Vec<String>,
        ask: impl Fn(&mut Repl, String) -> Result<(), ReplError> + Sync,
        gave_up: impl Fn(String, ReplError) + Sync,
    ) -> Result<(), ListError> {
        let queue = Mutex::new(items.into_iter().collect::<VecDeque<_>>());
        let next = || queue.lock().expect("no thread panics holding it").pop_front();
        let first_error: Mutex<Option<ListError>> = Mutex::new(None);
        let first = Mutex::new(Some(first));
        let evaluators = self.jobs.min(queue.lock().expect("not shared yet").len()).max(1);
        std::thread::scope(|scope| {
            for _ in 0..evaluators {
                scope.spawn(|| {
                    let taken = first.lock().expect("no thread panics holding it").take();
                    let mut repl = match taken.map_or_else(|| self.start(helpers), Ok) {
                        Ok(repl) => repl,
                        Err(err) => {
                            first_error.lock().expect("no thread panics holding it").get_or_insert(err);
                            return;
                        }
                    };
                    while let Some(item) = next() {
                        if let Err(err) = ask(&mut repl, item.clone()) {
                            gave_up(item, err);
                            match self.start(helpers) {
                                Ok(fresh) => repl = fresh,
                                Err(err) => {
                                    first_error.lock().expect("no thread panics holding it").get_or_insert(err);
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        match first_error.into_inner().expect("the threads are done") {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The sources among the derivations `drvs` depend on: their closure's fixed-output
    /// derivations, read from the store (on up to `jobs` threads).
    fn sources_of(&self, drvs: &[String], system: Option<&str>) -> Result<Vec<Value>, ListError> {
        let closure = self.store.derivation_closure(drvs)?;
        let chunk = closure.len().div_ceil(self.jobs.max(2)).max(1);
        let records: Vec<Result<Vec<Value>, StoreError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = closure
                .chunks(chunk)
                .map(|drvs| {
                    scope.spawn(move || {
                        let mut records = Vec::new();
                        for drv in drvs {
                            let derivation = self.store.read_derivation(drv)?;
                            if let Some(record) = RawSource::of_derivation(&derivation, system) {
                                records.push(serde_json::to_value(record).expect("a record serialises"));
                            }
                        }
                        Ok(records)
                    })
                })
                .collect();
            workers.into_iter().map(|worker| worker.join().expect("reading derivations does not panic")).collect()
        });
        let mut all = Vec::new();
        for records in records {
            all.extend(records?);
        }
        Ok(all)
    }

    /// Nix's message with the checkout's own paths relative to it (a `--rev` checkout lives in
    /// a temporary directory), and paths in a chroot store as Nix names them.
    fn relative(&self, message: &str) -> String {
        message
            .replace(&format!("{}/", self.nixpkgs.display()), "")
            .replace(&format!("{}/nix/store/", self.repl.store.trim_end_matches('/')), "/nix/store/")
    }
}

/// The sources of a raw evaluation, with what was rejected, left URL-less, or not expanded.
#[derive(Debug, Default)]
pub(crate) struct NormalisedAll {
    pub sources: Vec<Source>,
    pub rejected: Vec<NormaliseError>,
    pub unknown_mirrors: Vec<String>,
    pub url_less: Vec<UrlLess>,
    pub by_system: BTreeMap<String, usize>,
}

/// Normalises raw records, keeping one source per store path, sorted by store path. Records that
/// share a store path (the same name and hash, fetched from different URLs, or found for
/// several systems) are taken in a fixed order and their URLs merged, so the result does not
/// depend on which evaluator finished first.
pub(crate) fn normalise_all(raw: &[Value], mirrors: &Mirrors) -> NormalisedAll {
    let store_path = |r: &Value| r.get("storePath").and_then(Value::as_str).unwrap_or("").to_owned();
    let mut records: Vec<(String, &Value)> = raw.iter().map(|r| (store_path(r), r)).collect();
    // Only records that share a store path need their whole text compared.
    records.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.to_string().cmp(&y.to_string())));
    // Each source with the systems it was found for (most often one; `None` when none was named).
    let mut by_path: BTreeMap<String, (Source, Vec<Option<String>>)> = BTreeMap::new();
    let mut url_less: BTreeMap<String, UrlLess> = BTreeMap::new();
    let mut out = NormalisedAll::default();
    for (_, record) in records {
        let parsed = RawSource::deserialize(record).map_err(|e| NormaliseError {
            store_path: record.get("storePath").and_then(Value::as_str).map(str::to_owned),
            reason: format!("the record is malformed: {e}"),
        });
        let raw = match parsed {
            Ok(raw) => raw,
            Err(err) => {
                out.rejected.push(err);
                continue;
            }
        };
        let normalised = match normalise(&raw, mirrors) {
            Ok(normalised) => normalised,
            Err(err) => {
                out.rejected.push(err);
                continue;
            }
        };
        out.unknown_mirrors.extend(normalised.unknown_mirrors);
        let source = match normalised.described {
            Described::Source(source) => *source,
            Described::UrlLess(output) => {
                let key = output.store_path.clone().unwrap_or_else(|| output.hash.to_sri());
                url_less.entry(key).or_insert(output);
                continue;
            }
        };
        let key = source.nix_store_path.clone().unwrap_or_else(|| source.identity());
        let system = raw.system;
        match by_path.get_mut(&key) {
            None => {
                by_path.insert(key, (source, vec![system]));
            }
            Some((kept, systems)) => {
                if !systems.contains(&system) {
                    systems.push(system);
                }
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
    out.unknown_mirrors.sort();
    out.unknown_mirrors.dedup();
    for (source, systems) in by_path.into_values() {
        for system in systems {
            *out.by_system.entry(system.unwrap_or_else(|| DEFAULT_SYSTEM.to_owned())).or_default() += 1;
        }
        out.sources.push(source);
    }
    out.url_less = url_less.into_values().collect();
    out
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
