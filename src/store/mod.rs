//! The Nix store, through Nix's own commands (`nix-store`), and the derivations in it.
//!
//! Quirks:
//! - a store given as a directory (`/some/dir`) or as `local?root=/some/dir` is a chroot store:
//!   its paths still read `/nix/store/…`, but their files are under `/some/dir/nix/store/…`;
//! - `nix-store --add-fixed` names the new path after the file's base name, so a source is added
//!   from a file or directory named exactly as the derivation's output.

pub(crate) mod derivation;
pub(crate) mod path;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use derivation::{Derivation, DerivationError, Output};
pub use path::{StorePath, StorePathError};

use crate::hashing::HashAlgo;

/// Paths asked about in one `nix-store --check-validity` call, to stay far below the
/// argument-length limit.
const VALIDITY_BATCH: usize = 500;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("failed to read the derivation {path}")]
    ReadDerivation {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the derivation {path}")]
    MalformedDerivation {
        path: String,
        #[source]
        source: DerivationError,
    },
    #[error("`{path}` is not a derivation (.drv) in the Nix store")]
    NotADerivation { path: String },
    #[error("failed to run `{command}` (is Nix installed?)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
}

/// A Nix store, as Nix's commands see it.
#[derive(Debug, Clone, Default)]
pub struct NixStore {
    /// Passed to Nix as `--store`; `None` is Nix's default store.
    store: Option<String>,
}

impl NixStore {
    pub fn new(store: Option<String>) -> NixStore {
        NixStore { store }
    }

    /// Where the files of `store_path` are on this machine.
    fn physical(&self, store_path: &str) -> PathBuf {
        let root = match self.store.as_deref() {
            Some(dir) if dir.starts_with('/') => Some(dir),
            Some(url) => url
                .strip_prefix("local?")
                .and_then(|query| query.split('&').find_map(|param| param.strip_prefix("root="))),
            None => None,
        };
        match root {
            Some(root) => Path::new(root).join(store_path.trim_start_matches('/')),
            None => PathBuf::from(store_path),
        }
    }

    fn nix_store(&self) -> Command {
        let mut cmd = Command::new("nix-store");
        if let Some(store) = &self.store {
            cmd.arg("--store").arg(store);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run(&self, mut cmd: Command) -> Result<String, StoreError> {
        let command = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
        let out = cmd.output().map_err(|source| StoreError::Spawn { command: command.clone(), source })?;
        if !out.status.success() {
            return Err(StoreError::Command {
                command,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Reads the derivation at the store path `drv`.
    pub fn read_derivation(&self, drv: &str) -> Result<Derivation, StoreError> {
        if !drv.ends_with(".drv") {
            return Err(StoreError::NotADerivation { path: drv.to_owned() });
        }
        let text = std::fs::read(self.physical(drv))
            .map_err(|source| StoreError::ReadDerivation { path: drv.to_owned(), source })?;
        Derivation::parse(&text).map_err(|source| StoreError::MalformedDerivation { path: drv.to_owned(), source })
    }

    /// The derivations `drvs` depend on, themselves included (`nix-store -qR`, keeping `.drv`
    /// files only), without repeats.
    pub(crate) fn derivation_closure(&self, drvs: &[String]) -> Result<Vec<String>, StoreError> {
        let mut closure = std::collections::BTreeSet::new();
        for batch in drvs.chunks(VALIDITY_BATCH) {
            let mut cmd = self.nix_store();
            cmd.arg("--query").arg("--requisites").args(batch);
            closure.extend(self.run(cmd)?.lines().filter(|path| path.ends_with(".drv")).map(str::to_owned));
        }
        Ok(closure.into_iter().collect())
    }

    /// Which of `paths` are not valid (not built, fetched or substituted) in the store.
    pub(crate) fn invalid_paths(&self, paths: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut invalid = HashSet::new();
        for batch in paths.chunks(VALIDITY_BATCH) {
            let mut cmd = self.nix_store();
            cmd.args(["--check-validity", "--print-invalid"]).args(batch);
            invalid.extend(self.run(cmd)?.lines().map(str::to_owned));
        }
        Ok(invalid)
    }

    /// Adds the file or tree at `path` as a fixed output (flat, or NAR-hashed if `recursive`)
    /// and returns the store path Nix gave it.
    pub(crate) fn add_fixed(&self, recursive: bool, algo: HashAlgo, path: &Path) -> Result<String, StoreError> {
        let mut cmd = self.nix_store();
        cmd.arg("--add-fixed");
        if recursive {
            cmd.arg("--recursive");
        }
        cmd.arg(algo.name()).arg(path);
        Ok(self.run(cmd)?.trim().to_owned())
    }

    /// The fixed-output derivations that building `drvs` would have to run: those reachable
    /// from them through derivations whose outputs are not all valid, whose own output is not
    /// valid either. A derivation whose outputs are valid needs none of its inputs.
    pub fn missing_fixed_outputs(&self, drvs: &[String]) -> Result<BTreeMap<String, Derivation>, StoreError> {
        let mut seen: HashSet<String> = drvs.iter().cloned().collect();
        let mut level: Vec<String> = drvs.to_vec();
        let mut missing = BTreeMap::new();
        while !level.is_empty() {
            let derivations =
                level.iter().map(|drv| Ok((drv.clone(), self.read_derivation(drv)?))).collect::<Result<Vec<_>, _>>()?;
            let outputs: Vec<String> = derivations
                .iter()
                .flat_map(|(_, d)| d.outputs.values().map(|o| o.path.clone()))
                .filter(|path| !path.is_empty())
                .collect();
            let invalid = self.invalid_paths(&outputs)?;
            let mut next = Vec::new();
            for (drv, derivation) in derivations {
                if !derivation.outputs.values().any(|o| o.path.is_empty() || invalid.contains(&o.path)) {
                    continue;
                }
                if derivation.fixed_output().is_some() {
                    missing.insert(drv, derivation);
                    continue;
                }
                next.extend(derivation.input_derivations.keys().filter(|input| seen.insert((*input).clone())).cloned());
            }
            level = next;
        }
        Ok(missing)
    }
}
