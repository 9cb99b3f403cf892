//! The workspace: where swh-bridge keeps its data, and the settings every command shares once
//! flags, environment and the configuration file are merged. Commands open what they need here
//! (the fetcher, the recipe store, the state database), so every command finds the same things
//! in the same places with the same defaults.
//!
//! The data directory (`$XDG_DATA_HOME/swh-bridge`, else `~/.local/share/swh-bridge`) holds:
//! - `cache/`: fetched sources, content-addressed ([`Cache`]);
//! - `recipes/`: the recipe store `load` writes and the others read by default;
//! - `state.sqlite`: the state database ([`State`]);
//! - `scratch/` and `serve-scratch/`: where `prefetch` and `serve` stage what they fetch.
//!
//! A flag wins over the environment, which wins over `config.json`, which wins over the default;
//! lists (hashed mirrors, binary caches) add up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::archive::{ArchiveClient, ClientConfig, PUBLIC_API};
use crate::config::{Config, ConfigError};
use crate::fallback::binary_cache::BinaryCache;
use crate::fallback::{Cache, Fetcher};
use crate::plan::Planner;
use crate::recipes::store::RecipeStore;
use crate::state::{self, State, StateError};

/// The NixOS project's copy of every source Hydra fetched, as a hashed mirror.
pub(crate) const NIXOS_HASHED_MIRROR: &str = "https://tarballs.nixos.org/";
/// The NixOS project's binary cache, which holds fixed outputs' NARs.
pub const NIXOS_BINARY_CACHE: &str = "https://cache.nixos.org/";

/// What flags and the environment say, before the configuration file is read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The archive's API root.
    pub archive: Option<url::Url>,
    /// The configuration file (default: [`Config::default_path`]).
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub hashed_mirrors: Vec<String>,
    pub binary_caches: Vec<url::Url>,
    /// A recipe store: a directory or an HTTP base URL.
    pub recipes: Option<String>,
    /// Neither read nor fill the cache.
    pub no_cache: bool,
    /// Walk directories through the API only while that costs at most this many requests.
    pub walk_limit: usize,
    /// Wait out a rate limit whose reset comes within this.
    pub max_wait: Duration,
    /// Give up a download that goes this long without a byte (or, past it, averages less
    /// than 1 KiB/s).
    pub upstream_timeout: Duration,
    /// Give up one call to the archive (retries included) after this long.
    pub archive_timeout: Duration,
    /// Give up waiting for the vault to cook a bundle after this long.
    pub vault_timeout: Duration,
    /// Refuse a file download past this many bytes.
    pub max_download: u64,
    /// Add the NixOS project's hashed mirror and binary cache ([`NIXOS_HASHED_MIRROR`],
    /// [`NIXOS_BINARY_CACHE`]).
    pub nixos_copies: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            archive: None,
            config: None,
            data_dir: None,
            hashed_mirrors: Vec::new(),
            binary_caches: Vec::new(),
            recipes: None,
            no_cache: false,
            walk_limit: crate::fallback::DEFAULT_WALK_LIMIT,
            max_wait: Duration::ZERO,
            upstream_timeout: crate::fallback::DEFAULT_UPSTREAM_TIMEOUT,
            archive_timeout: crate::archive::DEFAULT_CALL_DEADLINE,
            vault_timeout: crate::archive::DEFAULT_VAULT_DEADLINE,
            max_download: crate::fallback::DEFAULT_MAX_DOWNLOAD,
            nixos_copies: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("failed to create the recipe store {}", path.display())]
    CreateStore {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the recipe store {location} is an HTTP store, which cannot be written: give a directory")]
    ReadOnlyStore { location: String },
}

/// The merged settings and the data directory.
#[derive(Debug, Clone)]
pub struct Workspace {
    settings: Settings,
    config: Config,
    data_dir: PathBuf,
}

impl Workspace {
    /// Reads the configuration file and merges it with `settings`.
    pub fn open(settings: Settings) -> Result<Workspace, WorkspaceError> {
        let config = Config::load(&settings.config.clone().unwrap_or_else(Config::default_path))?;
        let data_dir = settings.data_dir.clone().unwrap_or_else(default_data_dir);
        Ok(Workspace { settings, config, data_dir })
    }

    /// The state database's default place.
    pub(crate) fn state_path(&self) -> PathBuf {
        self.data_dir.join(state::FILE_NAME)
    }

    /// Opens the state database at `path`, else at its default place (created if need be).
    pub fn open_state(&self, path: Option<&Path>) -> Result<State, StateError> {
        State::open(&path.map_or_else(|| self.state_path(), Path::to_owned))
    }

    /// Opens the state database at `path` if given, else at its default place if it exists.
    pub fn open_existing_state(&self, path: Option<&Path>) -> Result<Option<State>, StateError> {
        match path {
            Some(path) => State::open(path).map(Some),
            None if self.state_path().exists() => State::open(&self.state_path()).map(Some),
            None => Ok(None),
        }
    }

    /// The recipe store to read: the flag's, else the configuration's, else `recipes` in the
    /// data directory if it exists.
    pub(crate) fn recipe_store(&self) -> Option<RecipeStore> {
        self.recipe_location()
            .or_else(|| {
                let default = self.data_dir.join("recipes");
                default.is_dir().then(|| default.display().to_string())
            })
            .map(|location| RecipeStore::new(&location))
    }

    /// The recipe store to write (`load`): as [`Workspace::recipe_store`], a directory, created
    /// if need be (so that publishing it finds it even when nothing was captured).
    pub fn writable_recipe_store(&self) -> Result<RecipeStore, WorkspaceError> {
        let location = self.recipe_location().unwrap_or_else(|| self.data_dir.join("recipes").display().to_string());
        let store = RecipeStore::new(&location);
        let RecipeStore::Directory(path) = &store else { return Err(WorkspaceError::ReadOnlyStore { location }) };
        std::fs::create_dir_all(path).map_err(|source| WorkspaceError::CreateStore { path: path.clone(), source })?;
        Ok(store)
    }

    fn recipe_location(&self) -> Option<String> {
        self.settings.recipes.clone().or_else(|| self.config.recipes.clone())
    }

    /// What plans are made with: hashed mirrors, the recipe store, binary caches.
    pub fn planner(&self) -> Planner {
        let mut hashed_mirrors = self.settings.hashed_mirrors.clone();
        hashed_mirrors.extend(self.config.hashed_mirrors.iter().cloned());
        let mut caches = self.settings.binary_caches.clone();
        caches.extend(self.config.binary_caches.iter().cloned());
        if self.settings.nixos_copies {
            hashed_mirrors.push(NIXOS_HASHED_MIRROR.to_owned());
            caches.push(url::Url::parse(NIXOS_BINARY_CACHE).expect("a valid URL"));
        }
        let timeout = self.settings.upstream_timeout;
        Planner {
            hashed_mirrors,
            recipes: self.recipe_store(),
            binary_caches: caches.iter().map(|root| BinaryCache::new(root, timeout)).collect(),
        }
    }

    /// A client of the archive: the flag's, else the configuration's, else the public one, with
    /// `SWH_TOKEN`, else the configuration's token.
    pub fn archive_client(&self) -> ArchiveClient {
        let api = self.settings.archive.clone().or_else(|| self.config.archive.clone());
        let api = api.unwrap_or_else(|| url::Url::parse(PUBLIC_API).expect("the public API URL is valid"));
        let mut client = ClientConfig::for_api(api);
        client.token = client.token.or_else(|| self.config.token.clone());
        client.max_rate_limit_wait = self.settings.max_wait;
        client.call_deadline = self.settings.archive_timeout;
        client.vault_deadline = self.settings.vault_timeout;
        ArchiveClient::new(client)
    }

    /// The cache, unless it is off.
    pub fn cache(&self) -> Option<Cache> {
        (!self.settings.no_cache).then(|| Cache::new(&self.data_dir))
    }

    /// The fetcher, with everything configured.
    pub fn fetcher(&self) -> Fetcher {
        self.fetcher_with(self.planner(), self.cache())
    }

    /// The fetcher `serve` resolves misses with: no hashed mirrors, since it is one (a mirror
    /// asking mirrors could ask itself).
    pub fn mirror_fetcher(&self) -> Fetcher {
        self.fetcher_with(Planner { hashed_mirrors: Vec::new(), ..self.planner() }, self.cache())
    }

    /// The fetcher that checks an audit's word: the archive and the recipe store alone, no
    /// cache, hashed mirror or binary cache.
    pub fn archive_only_fetcher(&self) -> Fetcher {
        self.fetcher_with(Planner { recipes: self.recipe_store(), ..Planner::default() }, None)
    }

    fn fetcher_with(&self, planner: Planner, cache: Option<Cache>) -> Fetcher {
        let fetcher = Fetcher::new(self.archive_client())
            .with_planner(planner)
            .with_walk_limit(self.settings.walk_limit)
            .with_upstream_timeout(self.settings.upstream_timeout)
            .with_max_download(self.settings.max_download);
        match cache {
            Some(cache) => fetcher.with_cache(cache),
            None => fetcher,
        }
    }

    /// Where `prefetch` stages what it adds to the Nix store.
    pub fn scratch_dir(&self) -> PathBuf {
        self.data_dir.join("scratch")
    }

    /// Where `serve` resolves misses.
    pub fn serve_scratch_dir(&self) -> PathBuf {
        self.data_dir.join("serve-scratch")
    }
}

/// The default data directory: `$XDG_DATA_HOME/swh-bridge`, else `~/.local/share/swh-bridge`.
pub(crate) fn default_data_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("swh-bridge"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share/swh-bridge"),
    }
}
