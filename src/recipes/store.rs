//! Where recipes are kept: `<root>/<algo>/<hex>`, keyed by the tarball's flat hash, under
//! `sha256` and, for the hashes older Nix expressions pin, `sha512`, `sha1` and `md5` (the same
//! recipe again: a recipe is about a kilobyte); and the bridge index, `<root>/bridge/<key>`
//! (see [`super::bridge`]). The root is a local directory or an HTTP base URL (a static file
//! server will do).

use std::path::PathBuf;

use super::bridge::{BridgeEntry, BridgeKey, FLAT_ALGOS};
use super::{Recipe, RecipeError};
use crate::atomic::{self, Existing};
use crate::download::{BodyError, BodyLimits, read_within};
use crate::hashing::Hash;

#[derive(Debug, Clone)]
pub enum RecipeStore {
    Directory(PathBuf),
    Http { base: url::Url, client: reqwest::Client },
}

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("failed to read the recipe {location}")]
    Read {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to fetch the recipe {location}")]
    Fetch {
        location: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to read the recipe {location}")]
    Recipe {
        location: String,
        #[source]
        source: RecipeError,
    },
    #[error("failed to read the bridge index entry {location}")]
    Bridge {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to read {location}: it is larger than {limit} bytes")]
    TooLarge { location: String, limit: usize },
    #[error("refusing {location}: {refusal}")]
    Body { location: String, refusal: BodyError },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Recipes larger than this are not fetched: no honest one comes near it.
const MAX_RECIPE: usize = 64 << 20;
/// Nor bridge index entries larger than this (an honest one is under a kilobyte).
const MAX_BRIDGE_ENTRY: usize = 64 << 10;

impl RecipeStore {
    /// A store at `location`: an `http://` or `https://` URL, else a directory.
    pub fn new(location: &str) -> RecipeStore {
        match url::Url::parse(location) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                let base = if url.path().ends_with('/') {
                    url
                } else {
                    url::Url::parse(&format!("{location}/")).expect("still a URL")
                };
                RecipeStore::Http { base, client: reqwest::Client::new() }
            }
            _ => RecipeStore::Directory(PathBuf::from(location)),
        }
    }

    fn key(hash: &Hash) -> String {
        format!("{}/{}", hash.algo().name(), hash.to_hex())
    }

    /// The bytes at `key`, where they were found, or `None` if the store has nothing there.
    async fn read(&self, key: &str, limit: usize) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        match self {
            RecipeStore::Directory(root) => {
                let path = root.join(key);
                let location = path.display().to_string();
                match std::fs::read(&path) {
                    Ok(bytes) if bytes.len() > limit => Err(StoreError::TooLarge { location, limit }),
                    Ok(bytes) => Ok(Some((location, bytes))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(StoreError::Read { location, source }),
                }
            }
            RecipeStore::Http { base, client } => {
                let url = base.join(key).expect("a relative key");
                let location = url.to_string();
                let fetch_error = |source| StoreError::Fetch { location: location.clone(), source };
                let response = client.get(url).send().await.map_err(fetch_error)?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let response = response.error_for_status().map_err(fetch_error)?;
                let bytes =
                    read_within(response, BodyLimits::of_size(limit as u64)).await.map_err(|err| match err {
                        BodyError::TooLarge { .. } => StoreError::TooLarge { location: location.clone(), limit },
                        BodyError::Transport(source) => fetch_error(source),
                        refusal => StoreError::Body { location: location.clone(), refusal },
                    })?;
                Ok(Some((location, bytes)))
            }
        }
    }

    /// The recipe for the file with flat hash `hash`, if the store has one.
    pub(crate) async fn get(&self, hash: &Hash) -> Result<Option<Recipe>, StoreError> {
        let Some((location, bytes)) = self.read(&RecipeStore::key(hash), MAX_RECIPE).await? else {
            return Ok(None);
        };
        Recipe::decode(&bytes).map(Some).map_err(|source| StoreError::Recipe { location, source })
    }

    /// The bridge index entry at `key` (see [`BridgeEntry::keys`]), if the store has one.
    pub async fn bridge(&self, key: &BridgeKey) -> Result<Option<BridgeEntry>, StoreError> {
        let Some((location, bytes)) = self.read(&format!("bridge/{key}"), MAX_BRIDGE_ENTRY).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|source| StoreError::Bridge { location, source })
    }

    /// Stores `recipe` for `file` under each of its flat hashes, and the bridge index entry
    /// under each of its keys (a directory store only). Returns the recipe paths written.
    pub fn put(&self, recipe: &Recipe, file: &[u8], entry: &BridgeEntry) -> Result<Vec<PathBuf>, StoreError> {
        let RecipeStore::Directory(root) = self else {
            return Err(StoreError::Write {
                path: PathBuf::new(),
                source: std::io::Error::other("an HTTP recipe store is read-only"),
            });
        };
        let encoded = recipe.encode();
        let mut written = Vec::new();
        for algo in FLAT_ALGOS {
            let mut hasher = algo.hasher();
            hasher.update(file);
            let path = root.join(RecipeStore::key(&hasher.finish()));
            write_atomically(&path, &encoded)?;
            written.push(path);
        }
        self.put_entry(entry)?;
        Ok(written)
    }

    /// Stores a bridge index entry alone (a plain file's, or a tree's), under each of its keys.
    pub(crate) fn put_entry(&self, entry: &BridgeEntry) -> Result<(), StoreError> {
        let RecipeStore::Directory(root) = self else {
            return Err(StoreError::Write {
                path: PathBuf::new(),
                source: std::io::Error::other("an HTTP recipe store is read-only"),
            });
        };
        let json = serde_json::to_vec_pretty(entry).expect("an entry serialises");
        for key in entry.keys() {
            write_atomically(&root.join("bridge").join(key.to_string()), &json)?;
        }
        Ok(())
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), StoreError> {
    atomic::write(path, bytes, Existing::Replace).map_err(|source| StoreError::Write { path: path.to_owned(), source })
}
