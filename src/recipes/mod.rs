//! Recipes: what Software Heritage drops when it archives a tarball unpacked (tar headers, member
//! order, padding, the compressor's exact output), recorded while the tarball can still be
//! downloaded, so that the exact file can later be rebuilt from the archived tree.
//!
//! A recipe names the tree it needs by the SWHID of the extraction root (the directory holding
//! the tarball's top folder, permissions normalised to 0755/0644 as SWH's loaders do), records
//! the file's length and sha256, and holds one layer per format: a compression layer (see
//! [`gzip`]) around a container layer (see [`tar`]). It holds no file contents, except where the
//! tree cannot give them back (metadata members, members a later one overwrote).
//!
//! The file format (see `docs/recipe-format.md`): the magic `swh-bridge recipe\n`, a format
//! version byte, then the [`Recipe`] in postcard's encoding, compressed with xz.

pub mod bzip2;
pub mod gzip;
pub mod store;
pub mod tar;
pub mod xz;

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::hashing::tree::memory::Node;
use crate::hashing::tree::{ExecutableRule, Limits};
use crate::hashing::{Hash, HashAlgo};

const MAGIC: &[u8] = b"swh-bridge recipe\n";
/// The format version written; every version up to it is read.
pub const FORMAT_VERSION: u8 = 1;
/// A recipe that decompresses to more than this is refused as damaged or hostile.
const MAX_DECODED: u64 = 256 << 20;
/// A tarball whose tar stream is larger than this is refused (a decompression bomb, or more than
/// a recipe can model in memory).
pub const MAX_PLAIN: usize = 2 << 30;

/// Why a recipe could not be made, read or applied.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the recipe is damaged: {0}")]
    Damaged(String),
    #[error("the tree lacks `{path}`, which the recipe takes from it")]
    TreeLacks { path: String },
    #[error("the tree is {actual}, but the recipe needs {expected}")]
    WrongTree { expected: String, actual: String },
    #[error("the rebuilt file hashes to {actual}, not {expected}")]
    Mismatch { expected: Hash, actual: Hash },
    #[error("failed to unpack the tarball")]
    Unpack(#[source] crate::hashing::tree::TreeError),
}

/// How to rebuild one file from a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// The file's length in bytes.
    pub size: u64,
    /// The file's sha256.
    pub sha256: Vec<u8>,
    /// The SWHID of the extraction root the file is rebuilt from.
    pub tree: String,
    pub compression: Compression,
    pub container: Container,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    None,
    Gzip(gzip::GzipLayer),
    Xz(xz::XzLayer),
    Bzip2(bzip2::Bzip2Layer),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Container {
    Tar(tar::TarLayer),
}

impl Compression {
    pub fn name(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip(_) => "gzip",
            Compression::Xz(_) => "xz",
            Compression::Bzip2(_) => "bzip2",
        }
    }
}

/// Splits `plain` into consecutive pieces of `lengths` bytes (one per gzip member or bzip2
/// stream), which must cover it exactly; `what` names the pieces in errors.
fn split_by_lengths<'a>(
    plain: &'a [u8],
    lengths: impl IntoIterator<Item = u64>,
    what: &str,
) -> Result<Vec<&'a [u8]>, RecipeError> {
    let mut pieces = Vec::new();
    let mut rest = plain;
    for len in lengths {
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= rest.len())
            .ok_or_else(|| RecipeError::Damaged(format!("{what} hold more bytes than the tar stream")))?;
        let (piece, after) = rest.split_at(len);
        pieces.push(piece);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(RecipeError::Damaged(format!("{what} hold fewer bytes than the tar stream")));
    }
    Ok(pieces)
}

/// Compressions recognised but not modelled, and why.
fn unmodelled_compression(file: &[u8]) -> Option<&'static str> {
    if file.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd: not modelled yet (zstd's output depends on its version, level and window; no recipe records them)")
    } else if file.starts_with(b"LZIP") {
        Some("lzip: not modelled (no Rust library reproduces lzip's encoder)")
    } else if file.starts_with(b"PK\x03\x04") {
        Some("zip: not modelled yet")
    } else {
        None
    }
}

fn sha256(bytes: &[u8]) -> Hash {
    let mut hasher = HashAlgo::Sha256.hasher();
    hasher.update(bytes);
    hasher.finish()
}

impl Recipe {
    /// Records how to rebuild `file` from its unpacked tree, and checks at once that it does.
    /// Returns the recipe and the tree (the extraction root).
    pub fn create(file: &[u8]) -> Result<(Recipe, Node), RecipeError> {
        let (compression, plain) = if file.starts_with(&[0x1f, 0x8b]) {
            let (layer, plain) = gzip::GzipLayer::create(file)?;
            (Compression::Gzip(layer), std::borrow::Cow::Owned(plain))
        } else if file.starts_with(b"BZh") {
            let (layer, plain) = bzip2::Bzip2Layer::create(file)?;
            (Compression::Bzip2(layer), std::borrow::Cow::Owned(plain))
        } else if let Some(why) = unmodelled_compression(file) {
            return Err(RecipeError::Unsupported(why.into()));
        } else if file.starts_with(b"\xfd7zXZ\0") {
            let (layer, plain) = xz::XzLayer::create(file)?;
            (Compression::Xz(layer), std::borrow::Cow::Owned(plain))
        } else {
            (Compression::None, std::borrow::Cow::Borrowed(file))
        };
        if !tar::starts_like_tar(&plain) {
            return Err(RecipeError::Unsupported(
                "the file is not a tar archive (nor a gzip-, xz- or bzip2-compressed one)".into(),
            ));
        }
        let tree = Node::from_tar(&plain[..], Limits::default(), ExecutableRule::Owner).map_err(RecipeError::Unpack)?;
        let container = Container::Tar(tar::TarLayer::create(&plain, &tree)?);
        let recipe = Recipe {
            size: file.len() as u64,
            sha256: sha256(file).digest().to_vec(),
            tree: tree.swhid().to_string(),
            compression,
            container,
        };
        recipe.apply(&tree)?;
        Ok((recipe, tree))
    }

    /// Rebuilds the file from `tree`, which must be the recipe's, and checks its sha256.
    pub fn apply(&self, tree: &Node) -> Result<Vec<u8>, RecipeError> {
        let actual_tree = tree.swhid().to_string();
        if actual_tree != self.tree {
            return Err(RecipeError::WrongTree { expected: self.tree.clone(), actual: actual_tree });
        }
        let mut plain = Vec::new();
        match &self.container {
            Container::Tar(layer) => layer.apply(tree, &mut plain)?,
        }
        let file = match &self.compression {
            Compression::None => plain,
            compressed => {
                let mut out = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0).min(1 << 30));
                match compressed {
                    Compression::Gzip(layer) => layer.apply(&plain, &mut out)?,
                    Compression::Xz(layer) => layer.apply(&plain, &mut out)?,
                    Compression::Bzip2(layer) => layer.apply(&plain, &mut out)?,
                    Compression::None => unreachable!("handled above"),
                }
                out
            }
        };
        let expected = self.expected_hash()?;
        let actual = sha256(&file);
        if actual != expected || file.len() as u64 != self.size {
            return Err(RecipeError::Mismatch { expected, actual });
        }
        Ok(file)
    }

    /// The file's sha256.
    pub fn expected_hash(&self) -> Result<Hash, RecipeError> {
        Hash::from_digest(HashAlgo::Sha256, &self.sha256)
            .ok_or_else(|| RecipeError::Damaged("the sha256 is not 32 bytes".into()))
    }

    /// The recipe file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).expect("a recipe serialises");
        let mut out = MAGIC.to_vec();
        out.push(FORMAT_VERSION);
        let mut encoder = liblzma::write::XzEncoder::new(out, 9);
        encoder.write_all(&body).expect("writing to memory");
        encoder.finish().expect("writing to memory")
    }

    /// Reads a recipe file, refusing damaged ones and ones from a newer format.
    pub fn decode(bytes: &[u8]) -> Result<Recipe, RecipeError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| RecipeError::Damaged("no recipe magic".into()))?;
        let (&version, body) = rest.split_first().ok_or_else(|| RecipeError::Damaged("no format version".into()))?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(RecipeError::Damaged(format!(
                "format version {version}; this swh-bridge reads versions 1 to {FORMAT_VERSION}"
            )));
        }
        let mut decoded = Vec::new();
        liblzma::read::XzDecoder::new(body)
            .take(MAX_DECODED + 1)
            .read_to_end(&mut decoded)
            .map_err(|e| RecipeError::Damaged(format!("the body does not decompress: {e}")))?;
        if decoded.len() as u64 > MAX_DECODED {
            return Err(RecipeError::Damaged(format!("the body decompresses to more than {MAX_DECODED} bytes")));
        }
        postcard::from_bytes(&decoded).map_err(|e| RecipeError::Damaged(format!("the body does not parse: {e}")))
    }
}
