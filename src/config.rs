//! The optional configuration file, `$XDG_CONFIG_HOME/swh-bridge/config.json` (else
//! `~/.config/swh-bridge/config.json`): settings a user would otherwise repeat on every command.
//! Nothing needs it; a missing file is an empty configuration. Command-line flags and environment
//! variables win over it.
//!
//! ```json
//! { "archive": "https://archive.softwareheritage.org/api/1/",
//!   "token": "…",
//!   "hashed_mirrors": ["https://tarballs.nixos.org"],
//!   "binary_caches": ["https://cache.nixos.org"],
//!   "recipes": "https://example.org/recipes/" }
//! ```
//!
//! Unknown keys are refused, so that a misspelt one is not silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// The archive's API root.
    pub archive: Option<url::Url>,
    /// A bearer token for the archive (`SWH_TOKEN` wins over it).
    pub token: Option<String>,
    /// Hashed mirrors tried after a source's own URLs.
    #[serde(default)]
    pub hashed_mirrors: Vec<String>,
    /// Nix binary caches, tried after the archive.
    #[serde(default)]
    pub binary_caches: Vec<url::Url>,
    /// A recipe store: a directory or an HTTP base URL.
    pub recipes: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Config {
    /// Where the configuration file is looked for.
    pub(crate) fn default_path() -> PathBuf {
        match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("swh-bridge/config.json"),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".config/swh-bridge/config.json"),
        }
    }

    /// Reads the file at `path`; a file that does not exist is an empty configuration.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path: path.to_owned(), source }),
        };
        serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })
    }
}
