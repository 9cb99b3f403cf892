//! Where recipes are kept: `<root>/<algo>/<hex>`, keyed by the tarball's flat hash, under
//! `sha256` and, for the hashes older Nix expressions pin, `sha512`, `sha1` and `md5` (the same
//! recipe again: a recipe is about a kilobyte). The root is a local directory or an HTTP base URL
//! (a static file server will do).

use std::path::PathBuf;

use super::{Recipe, RecipeError};
use crate::hashing::{Hash, HashAlgo};

#[derive(Debug, Clone)]
pub enum RecipeStore {
    Directory(PathBuf),
    Http { base: url::Url, client: reqwest::Client },
}

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
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
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Recipes larger than this are not fetched: no honest one comes near it.
const MAX_RECIPE: usize = 64 << 20;

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

    /// The recipe for the file with flat hash `hash`, if the store has one.
    pub async fn get(&self, hash: &Hash) -> Result<Option<Recipe>, StoreError> {
        let key = RecipeStore::key(hash);
        let (location, bytes) = match self {
            RecipeStore::Directory(root) => {
                let path = root.join(&key);
                let location = path.display().to_string();
                match std::fs::read(&path) {
                    Ok(bytes) => (location, bytes),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(StoreError::Read { location, source }),
                }
            }
            RecipeStore::Http { base, client } => {
                let url = base.join(&key).expect("a relative key");
                let location = url.to_string();
                let fetch_error = |source| StoreError::Fetch { location: location.clone(), source };
                let response = client.get(url).send().await.map_err(fetch_error)?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let mut response = response.error_for_status().map_err(fetch_error)?;
                let mut bytes = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_RECIPE {
                        let source = RecipeError::Damaged(format!("it is larger than {MAX_RECIPE} bytes"));
                        return Err(StoreError::Recipe { location, source });
                    }
                }
                (location, bytes)
            }
        };
        Recipe::decode(&bytes).map(Some).map_err(|source| StoreError::Recipe { location, source })
    }

    /// Stores `recipe` for `file` under each of its flat hashes (a directory store only).
    pub fn put(&self, recipe: &Recipe, file: &[u8]) -> Result<Vec<PathBuf>, StoreError> {
        let RecipeStore::Directory(root) = self else {
            return Err(StoreError::Write {
                path: PathBuf::new(),
                source: std::io::Error::other("an HTTP recipe store is read-only"),
            });
        };
        let encoded = recipe.encode();
        let mut written = Vec::new();
        for algo in [HashAlgo::Sha256, HashAlgo::Sha512, HashAlgo::Sha1, HashAlgo::Md5] {
            let mut hasher = algo.hasher();
            hasher.update(file);
            let path = root.join(RecipeStore::key(&hasher.finish()));
            let write_error = |source| StoreError::Write { path: path.clone(), source };
            std::fs::create_dir_all(path.parent().expect("a key has a parent")).map_err(write_error)?;
            let mut temp =
                tempfile::NamedTempFile::new_in(path.parent().expect("a key has a parent")).map_err(write_error)?;
            std::io::Write::write_all(&mut temp, &encoded).map_err(write_error)?;
            temp.persist(&path).map_err(|e| write_error(e.error))?;
            written.push(path);
        }
        Ok(written)
    }
}
