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

mod bit_writer;
mod bounded;
pub mod bridge;
pub(crate) mod bzip2;
mod bzip2_blocks;
pub(crate) mod deflate;
mod deflate_tokens;
mod footprint;
pub(crate) mod gzip;
mod huffman;
pub(crate) mod lzip;
pub(crate) mod lzw;
pub mod preflate_process;
pub(crate) mod runs;
pub mod store;
pub(crate) mod tar;
pub(crate) mod xz;
pub(crate) mod zip;
pub(crate) mod zstd;

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::hashing::tree::memory::Node;
use crate::hashing::tree::{ExecutableRule, Limits};
use crate::hashing::{Hash, HashAlgo, ObjectType, Swhid};
pub use footprint::Footprint;
use footprint::{Compressor, Format};

const MAGIC: &[u8] = b"swh-bridge recipe\n";
/// The format version written; every version up to it is read. Version 2 added zip containers,
/// version 3 zstd, lzip, compress and recorded deflate streams, version 4 recorded bzip2 streams.
pub(crate) const FORMAT_VERSION: u8 = 4;
/// A recipe that decompresses to more than this is refused as damaged or hostile.
const MAX_DECODED: u64 = 256 << 20;
/// A recipe file larger than this is refused unread: its body could not decode within [`MAX_DECODED`].
pub const MAX_RECIPE_FILE: u64 = MAX_DECODED;
/// The memory a recipe's sequences may take once decoded (see [`bounded`]): room for a million
/// tar members, far more than any tarball small enough to model has.
const MAX_DECODED_STRUCTS: usize = 256 << 20;
/// A tarball whose tar stream is larger than this is refused (a decompression bomb, or more than
/// a recipe can model in memory).
pub const MAX_PLAIN: usize = 2 << 30;

/// File names of the archives recipes model, the one list capture goes by: tar, plain or
/// compressed with gzip, xz, bzip2 or zstd (a `.gem` is a plain tar, which SWH unpacks one level
/// deep: its `data.tar.gz` and `metadata.gz` stay files of the tree), and zip files under their
/// usual names.
pub(crate) const ARCHIVE_SUFFIXES: &[&str] = &[
    ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz", ".tar.zst", ".tzst", ".tar.lz",
    ".tar.Z", ".gem", ".zip", ".whl", ".jar", ".crate",
];

/// What a recipe holds beyond what real files need (see `Recipe::check_shape`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct OutOfBounds(pub(crate) String);

/// Why a recipe could not be made, read or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecipeError {
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the recipe is damaged: {0}")]
    Damaged(String),
    #[error("the tree lacks `{path}`, which the recipe takes from it")]
    TreeLacks { path: String },
    #[error("the tree is {actual}, but the recipe needs {expected}")]
    WrongTree { expected: Swhid, actual: Swhid },
    #[error("the rebuilt file hashes to {actual}, not {expected}")]
    Mismatch { expected: Hash, actual: Hash },
    #[error("failed to unpack the archive (tar or zip)")]
    Unpack(#[source] crate::hashing::tree::TreeError),
}

/// How to rebuild one file from a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// The file's length in bytes.
    pub(crate) size: u64,
    /// The file's sha256.
    pub(crate) sha256: Vec<u8>,
    /// The SWHID of the extraction root the file is rebuilt from (a directory; read as a SWHID,
    /// since it goes into API URLs).
    pub tree: Swhid,
    pub(crate) compression: Compression,
    pub(crate) container: Container,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CompressionWire", into = "CompressionWire")]
pub(crate) enum Compression {
    None,
    Gzip(gzip::GzipLayer),
    Xz(xz::XzLayer),
    Bzip2(bzip2::Bzip2Layer),
    Zstd(zstd::ZstdLayer),
    Lzip(lzip::LzipLayer),
    Lzw(lzw::LzwLayer),
}

/// [`Compression`] as the format encodes it: variant indices are the format, so a layer whose
/// shape changed keeps its old variant for reading and gets a new one.
#[derive(Clone, Serialize, Deserialize)]
enum CompressionWire {
    None,
    /// Format version 1's gzip layer: preflate corrections only.
    GzipV1(gzip::GzipLayerV1),
    Xz(xz::XzLayer),
    /// Format versions 1 to 3's bzip2 layer: libbzip2 streams only (written still when a layer
    /// has no other).
    Bzip2V1(bzip2::Bzip2LayerV1),
    /// Since version 2: each member's deflate stream as its encoder.
    Gzip(gzip::GzipLayer),
    /// Since version 3.
    Zstd(zstd::ZstdLayer),
    /// Since version 3.
    Lzip(lzip::LzipLayer),
    /// Since version 3.
    Lzw(lzw::LzwLayer),
    /// Since version 4: recorded streams too.
    Bzip2(bzip2::Bzip2Layer),
}

impl From<CompressionWire> for Compression {
    fn from(wire: CompressionWire) -> Compression {
        match wire {
            CompressionWire::None => Compression::None,
            CompressionWire::GzipV1(layer) => Compression::Gzip(layer.into()),
            CompressionWire::Xz(layer) => Compression::Xz(layer),
            CompressionWire::Bzip2V1(layer) => Compression::Bzip2(layer.into()),
            CompressionWire::Bzip2(layer) => Compression::Bzip2(layer),
            CompressionWire::Gzip(layer) => Compression::Gzip(layer),
            CompressionWire::Zstd(layer) => Compression::Zstd(layer),
            CompressionWire::Lzip(layer) => Compression::Lzip(layer),
            CompressionWire::Lzw(layer) => Compression::Lzw(layer),
        }
    }
}

impl From<Compression> for CompressionWire {
    fn from(compression: Compression) -> CompressionWire {
        match compression {
            Compression::None => CompressionWire::None,
            Compression::Gzip(layer) => CompressionWire::Gzip(layer),
            Compression::Xz(layer) => CompressionWire::Xz(layer),
            Compression::Bzip2(layer) => match layer.as_v1() {
                Some(v1) => CompressionWire::Bzip2V1(v1),
                None => CompressionWire::Bzip2(layer),
            },
            Compression::Zstd(layer) => CompressionWire::Zstd(layer),
            Compression::Lzip(layer) => CompressionWire::Lzip(layer),
            Compression::Lzw(layer) => CompressionWire::Lzw(layer),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Container {
    Tar(tar::TarLayer),
    Zip(zip::ZipLayer),
}

impl Container {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Container::Tar(_) => "tar",
            Container::Zip(_) => "zip",
        }
    }

    /// Tar members or zip entries.
    pub(crate) fn members(&self) -> usize {
        match self {
            Container::Tar(layer) => layer.members.len(),
            Container::Zip(layer) => layer.entries.len(),
        }
    }

    /// How many bytes of data the recipe holds itself, because the tree cannot give them.
    pub(crate) fn literal_bytes(&self) -> usize {
        match self {
            Container::Tar(layer) => layer
                .members
                .iter()
                .map(|m| match &m.data {
                    tar::Data::Literal(bytes) => bytes.len(),
                    tar::Data::Tree => 0,
                })
                .sum(),
            Container::Zip(layer) => layer
                .entries
                .iter()
                .map(|e| match &e.data {
                    zip::Data::Literal { bytes, .. } => bytes.len(),
                    zip::Data::Stored | zip::Data::Deflated(_) => 0,
                })
                .sum(),
        }
    }
}

impl Compression {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip(_) => "gzip",
            Compression::Xz(_) => "xz",
            Compression::Bzip2(_) => "bzip2",
            Compression::Zstd(_) => "zstd",
            Compression::Lzip(_) => "lzip",
            Compression::Lzw(_) => "compress",
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

/// Every path of `tree` in depth-first, byte-sorted order, directories with a trailing `/`.
pub(crate) fn tree_paths(tree: &Node) -> Vec<Vec<u8>> {
    fn visit(node: &Node, prefix: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
        let Node::Directory(entries) = node else { return };
        for (name, child) in entries {
            let len = prefix.len();
            prefix.extend_from_slice(name);
            if matches!(child, Node::Directory(_)) {
                prefix.push(b'/');
            }
            out.push(prefix.clone());
            visit(child, prefix, out);
            prefix.truncate(len);
        }
    }
    let mut out = Vec::new();
    visit(tree, &mut Vec::new(), &mut out);
    out
}

/// A recipe in numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipeSummary {
    /// The rebuilt file's sha256 (SRI).
    pub sha256: String,
    pub size: u64,
    pub tree: Swhid,
    pub compression: &'static str,
    /// Gzip members, bzip2 streams (one xz stream).
    pub compressed_members: usize,
    pub container: &'static str,
    pub container_members: usize,
    /// Bytes the recipe holds itself, because the tree cannot give them.
    pub literal_bytes: usize,
    pub deflate_corrections: usize,
    pub deflate_encoders: std::collections::BTreeMap<String, usize>,
    pub recipe_bytes: usize,
}

/// A sink that checks what an encoder writes against the bytes expected and fails at the first
/// difference, so that a wrong candidate stops early.
pub(crate) struct Compare<'a> {
    expected: &'a [u8],
    at: usize,
    /// Whether a write differed (rather than something else failing).
    differed: bool,
}

impl<'a> Compare<'a> {
    pub(crate) fn new(expected: &'a [u8]) -> Compare<'a> {
        Compare { expected, at: 0, differed: false }
    }

    /// Whether everything expected was written.
    pub(crate) fn done(&self) -> bool {
        self.at == self.expected.len()
    }
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.at + buf.len();
        if end > self.expected.len() || self.expected[self.at..end] != *buf {
            self.differed = true;
            return Err(std::io::Error::other("differs"));
        }
        self.at = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a container layer writes the stream it rebuilds: into memory (apply), or compared with
/// the original as it goes (create's check), so that the stream is never held twice.
pub(crate) trait Rebuilt {
    /// How many bytes were written so far.
    fn written(&self) -> usize;
    fn put(&mut self, bytes: &[u8]) -> Result<(), RecipeError>;

    fn put_zeros(&mut self, mut count: usize) -> Result<(), RecipeError> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while count > 0 {
            let now = count.min(ZEROS.len());
            self.put(&ZEROS[..now])?;
            count -= now;
        }
        Ok(())
    }
}

impl Rebuilt for Vec<u8> {
    fn written(&self) -> usize {
        self.len()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), RecipeError> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

impl Rebuilt for Compare<'_> {
    fn written(&self) -> usize {
        self.at
    }

    /// A difference is an error that stops the rebuild; the check tells it from other errors by
    /// the `differed` flag.
    fn put(&mut self, bytes: &[u8]) -> Result<(), RecipeError> {
        self.write_all(bytes).map_err(|_| RecipeError::Unsupported("the rebuilt stream differs".into()))
    }
}

/// A compression layer made, as [`Recipe::create_measured`] keeps it: the layer and the stream.
type Layered<'a> = (Compression, std::borrow::Cow<'a, [u8]>);

fn layer<'a, L>(
    made: Result<(L, Vec<u8>), RecipeError>,
    wrap: fn(L) -> Compression,
) -> Result<Layered<'a>, RecipeError> {
    made.map(|(layer, plain)| (wrap(layer), std::borrow::Cow::Owned(plain)))
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
        Recipe::create_measured(file, &Footprint::of(file)?)
    }

    /// [`Recipe::create`] for a file already measured (`footprint` must be `file`'s): unpacking
    /// is held to the length measured, so it takes no more memory than [`Footprint::peak`].
    pub fn create_measured(file: &[u8], footprint: &Footprint) -> Result<(Recipe, Node), RecipeError> {
        // A file that decodes to more the second time is refused as it passes what was reckoned.
        let unpacked = usize::try_from(footprint.unpacked()).unwrap_or(MAX_PLAIN).min(MAX_PLAIN);
        // Without a byte bound, a few sparse-file headers (or a zip bomb) could unpack to
        // terabytes.
        let limits = Limits { max_bytes: unpacked as u64, ..Limits::default() };
        let compressor = match &footprint.format {
            Format::Zip(layout) => {
                let tree = Node::from_zip_layout(file, layout, limits).map_err(RecipeError::Unpack)?;
                let container = Container::Zip(zip::ZipLayer::create(file, layout, &tree)?);
                return Recipe::check(file, file, Compression::None, container, tree);
            }
            Format::Tar(compressor) => *compressor,
        };
        let (compression, plain) = match compressor {
            Compressor::None => (Compression::None, std::borrow::Cow::Borrowed(file)),
            Compressor::Gzip => layer(gzip::GzipLayer::create(file, unpacked), Compression::Gzip)?,
            Compressor::Bzip2 => layer(bzip2::Bzip2Layer::create(file, unpacked), Compression::Bzip2)?,
            Compressor::Zstd => layer(zstd::ZstdLayer::create(file, unpacked), Compression::Zstd)?,
            Compressor::Lzw => layer(lzw::LzwLayer::create(file, unpacked), Compression::Lzw)?,
            Compressor::Lzip => layer(lzip::LzipLayer::create(file, unpacked), Compression::Lzip)?,
            Compressor::Xz => layer(xz::XzLayer::create(file, unpacked), Compression::Xz)?,
        };
        if !tar::starts_like_tar(&plain) {
            return Err(RecipeError::Unsupported(
                "the file is neither a zip file nor a tar archive (plain, or compressed with gzip, xz, bzip2 or zstd)"
                    .into(),
            ));
        }
        let tree = Node::from_tar(&plain[..], limits, ExecutableRule::Owner).map_err(RecipeError::Unpack)?;
        let container = Container::Tar(tar::TarLayer::create(&plain, &tree)?);
        Recipe::check(file, &plain, compression, container, tree)
    }

    /// The recipe for `file` made of these layers, once it has rebuilt `file` from `tree`.
    /// Every compression layer has compared its own output with the file's bytes while it was
    /// made, so rebuilding `plain`, the uncompressed stream, from the tree completes the proof
    /// without compressing everything a second time (which doubled the time xz files took).
    fn check(
        file: &[u8],
        plain: &[u8],
        compression: Compression,
        container: Container,
        tree: Node,
    ) -> Result<(Recipe, Node), RecipeError> {
        let recipe = Recipe {
            size: file.len() as u64,
            sha256: sha256(file).digest().to_vec(),
            tree: tree.swhid(),
            compression,
            container,
        };
        recipe.check_shape().map_err(|why| RecipeError::Unsupported(why.0))?;
        // Compared as it is written: the rebuilt stream is never held beside the original.
        let mut compare = Compare::new(plain);
        match recipe.rebuild_plain_into(&tree, &mut compare) {
            Err(err) if !compare.differed => return Err(err),
            Ok(()) if compare.done() => {}
            _ => {
                return Err(RecipeError::Unsupported(format!(
                    "the {} layer rebuilds other bytes",
                    recipe.container.name()
                )));
            }
        }
        Ok((recipe, tree))
    }

    /// The uncompressed stream (the tar stream or zip file) the container rebuilds from `tree`,
    /// which must be the recipe's.
    fn rebuild_plain(&self, tree: &Node) -> Result<Vec<u8>, RecipeError> {
        let mut plain = Vec::new();
        self.rebuild_plain_into(tree, &mut plain)?;
        Ok(plain)
    }

    fn rebuild_plain_into(&self, tree: &Node, out: &mut impl Rebuilt) -> Result<(), RecipeError> {
        let actual_tree = tree.swhid();
        if actual_tree != self.tree {
            return Err(RecipeError::WrongTree { expected: self.tree, actual: actual_tree });
        }
        // Uncompressed, the tar stream is the file; compressed, it is at most what create accepts.
        let limit = match self.compression {
            Compression::None => usize::try_from(self.size).unwrap_or(usize::MAX),
            _ => MAX_PLAIN,
        };
        match &self.container {
            Container::Tar(layer) => layer.apply(tree, limit, out),
            Container::Zip(layer) => layer.apply(tree, limit, out),
        }
    }

    /// Rebuilds the file from `tree`, which must be the recipe's, and checks its sha256.
    pub fn apply(&self, tree: &Node) -> Result<Vec<u8>, RecipeError> {
        let plain = self.rebuild_plain(tree)?;
        let file = match &self.compression {
            Compression::None => plain,
            compressed => {
                let mut out = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0).min(1 << 30));
                match compressed {
                    Compression::Gzip(layer) => layer.apply(&plain, &mut out)?,
                    Compression::Xz(layer) => layer.apply(&plain, &mut out)?,
                    Compression::Bzip2(layer) => layer.apply(&plain, &mut out)?,
                    Compression::Zstd(layer) => layer.apply(&plain, &mut out)?,
                    Compression::Lzip(layer) => layer.apply(&plain, &mut out)?,
                    Compression::Lzw(layer) => layer.apply(&plain, &mut out),
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

    /// The recipe's deflate streams: its gzip members and deflated zip entries.
    fn deflate_streams(&self) -> Vec<&deflate::Deflate> {
        let mut streams: Vec<&deflate::Deflate> = match &self.compression {
            Compression::Gzip(layer) => layer.members.iter().map(|m| &m.deflate).collect(),
            _ => Vec::new(),
        };
        if let Container::Zip(layer) = &self.container {
            streams.extend(layer.entries.iter().filter_map(|e| match &e.data {
                zip::Data::Deflated(deflate) => Some(deflate),
                _ => None,
            }));
        }
        streams
    }

    /// How many bytes the recipe's deflate streams take beyond an encoder's level: preflate's
    /// corrections and recorded parses.
    pub(crate) fn deflate_corrections(&self) -> usize {
        self.deflate_streams()
            .into_iter()
            .map(|deflate| match deflate {
                deflate::Deflate::Preflate { corrections: bytes } | deflate::Deflate::Recorded { record: bytes } => {
                    bytes.len()
                }
                _ => 0,
            })
            .sum()
    }

    /// How many deflate streams each encoder wrote (`zlib -6`, `zlib-rs -9`, `preflate`).
    pub(crate) fn deflate_encoders(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for deflate in self.deflate_streams() {
            let name = match deflate {
                deflate::Deflate::Zlib { level } => format!("zlib -{level}"),
                deflate::Deflate::ZlibRs { level } => format!("zlib-rs -{level}"),
                deflate::Deflate::Miniz { level } => format!("miniz_oxide -{level}"),
                deflate::Deflate::Preflate { .. } => "preflate".to_owned(),
                deflate::Deflate::Recorded { .. } => "recorded parse".to_owned(),
            };
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }

    /// What the recipe holds, in numbers (`recipe show`); `encoded_len` is its file's length.
    pub fn summary(&self, encoded_len: usize) -> Result<RecipeSummary, RecipeError> {
        let compressed_members = match &self.compression {
            Compression::Gzip(layer) => layer.members.len(),
            Compression::Xz(_) => 1,
            Compression::Bzip2(layer) => layer.streams.len(),
            Compression::Zstd(layer) => layer.frames.len(),
            Compression::Lzip(layer) => layer.members.len(),
            Compression::Lzw(_) => 1,
            Compression::None => 0,
        };
        Ok(RecipeSummary {
            sha256: self.expected_hash()?.to_sri(),
            size: self.size,
            tree: self.tree,
            compression: self.compression.name(),
            compressed_members,
            container: self.container.name(),
            container_members: self.container.members(),
            literal_bytes: self.container.literal_bytes(),
            deflate_corrections: self.deflate_corrections(),
            deflate_encoders: self.deflate_encoders(),
            recipe_bytes: encoded_len,
        })
    }

    /// The file's sha256.
    pub fn expected_hash(&self) -> Result<Hash, RecipeError> {
        Hash::from_digest(HashAlgo::Sha256, &self.sha256)
            .ok_or_else(|| RecipeError::Damaged("the sha256 is not 32 bytes".into()))
    }

    /// The oldest format version that reads this recipe: what it is written as, so that older
    /// releases read what they can.
    fn oldest_reading_version(&self) -> u8 {
        let since_3 = self
            .deflate_streams()
            .iter()
            .any(|deflate| matches!(deflate, deflate::Deflate::Miniz { .. } | deflate::Deflate::Recorded { .. }));
        if matches!(&self.compression, Compression::Bzip2(layer) if layer.as_v1().is_none()) {
            4
        } else if since_3
            || matches!(self.compression, Compression::Zstd(_) | Compression::Lzip(_) | Compression::Lzw(_))
        {
            3
        } else {
            2
        }
    }

    /// The recipe file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).expect("a recipe serialises");
        let mut out = MAGIC.to_vec();
        out.push(self.oldest_reading_version());
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
        let recipe: Recipe = bounded::with_budget(MAX_DECODED_STRUCTS, || postcard::from_bytes(&decoded))
            .map_err(|why| RecipeError::Damaged(format!("the body does not parse: {why}")))?;
        recipe.check_shape().map_err(|why| RecipeError::Damaged(why.0))?;
        Ok(recipe)
    }

    /// What decoding alone cannot tell: the tree is a directory SWHID (it becomes part of API
    /// URLs), and every layer stays within what real files need, so that applying a hostile
    /// recipe costs no more than applying a real one. Says what is out of bounds.
    fn check_shape(&self) -> Result<(), OutOfBounds> {
        if self.tree.object_type != ObjectType::Directory {
            return Err(OutOfBounds(format!("the tree `{}` is not a directory SWHID", self.tree)));
        }
        if usize::try_from(self.size).map_or(true, |size| size > MAX_PLAIN) {
            return Err(OutOfBounds(format!("a file of {} bytes, more than a recipe models", self.size)));
        }
        match &self.compression {
            Compression::None => Ok(()),
            Compression::Gzip(layer) => layer.check_shape(),
            Compression::Xz(layer) => layer.check_shape(),
            Compression::Bzip2(layer) => layer.check_shape(),
            Compression::Zstd(layer) => layer.check_shape(),
            Compression::Lzip(layer) => layer.check_shape(),
            Compression::Lzw(layer) => layer.check_shape(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped tarball of one small tree, written by the `tar` and flate2 crates (what matters
    /// here is how damaged recipes fail, not which tool wrote the file).
    fn tarball() -> Vec<u8> {
        let mut builder = ::tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6)));
        for (path, contents) in [("pkg/README", &b"read me\n"[..]), ("pkg/src/main.c", &[b'x'; 5000][..])] {
            let mut header = ::tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, contents).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// `scripts/known-answers.sh tarball`: the small tree as `tiny-1.0/`, by GNU tar 1.34 and
    /// gzip 1.12 (`-9n`), its sha256 (sha256sum) and its extraction root (`swh identify`).
    const TINY_TAR_GZ: &str = "H4sIAAAAAAACA+3WTQrCMBCG4aw9RcS1zaTNz3laqDRYo7Tpore3CG6CCF0kFfs9m2T/MsME5+ezLEiwdGhhtX69i/j98LfSKMY1y2AaQz1wznYqvPvX4pf6K0L/3P0vKfsbpb70N3F/rYlxQv/kurbv7wcGu5//ohEJ53/l/jcl9n/+/u3tEeYt9n/0l2Rshf2ftX/v/DXl/Fu7pr+qJONlwpsE/aP+w+Q3u/9lGe9/Sxbzn8PpKBrnxdjhBgQAAAAAAAAAAAAA+BtP/KpB0AAoAAA=";
    const TINY_SHA256: &str = "8d10dc80a0d26e9252c6269d3f146fd0ffe588a7dde37e9a84e64b402e510b20";
    const TINY_ROOT: &str = "c70aac4214ddd31ce923cd1f6b8a28ca00ab96e1";

    #[test]
    fn a_tiny_tarball_by_the_gnu_tools_rebuilds_from_the_tree_swh_archives() {
        let file = data_encoding::BASE64.decode(TINY_TAR_GZ.as_bytes()).unwrap();
        let (recipe, tree) = Recipe::create(&file).unwrap();
        assert_eq!(recipe.tree, Swhid::from_hex(ObjectType::Directory, TINY_ROOT).unwrap());
        assert_eq!(recipe.expected_hash().unwrap().to_hex(), TINY_SHA256);
        let decoded = Recipe::decode(&recipe.encode()).unwrap();
        assert!(decoded.apply(&tree).unwrap() == file);
    }

    fn damaged(recipe: &Recipe) -> String {
        match Recipe::decode(&recipe.encode()) {
            Err(RecipeError::Damaged(why)) => why,
            other => panic!("a damaged recipe decoded: {other:?}"),
        }
    }

    #[test]
    fn a_tree_that_is_not_a_directory_swhid_is_refused() {
        let (mut recipe, _) = Recipe::create(&tarball()).unwrap();
        // A body whose tree is any string, as a hostile store could serve it.
        #[derive(Serialize)]
        struct Body<'a> {
            size: u64,
            sha256: &'a [u8],
            tree: String,
            compression: &'a Compression,
            container: &'a Container,
        }
        let encode = |tree: String| {
            let body = Body {
                size: recipe.size,
                sha256: &recipe.sha256,
                tree,
                compression: &recipe.compression,
                container: &recipe.container,
            };
            let mut out = MAGIC.to_vec();
            out.push(FORMAT_VERSION);
            let mut encoder = liblzma::write::XzEncoder::new(out, 6);
            encoder.write_all(&postcard::to_allocvec(&body).unwrap()).unwrap();
            encoder.finish().unwrap()
        };
        let decoded = |tree: String| match Recipe::decode(&encode(tree)) {
            Err(RecipeError::Damaged(why)) => why,
            other => panic!("a damaged recipe decoded: {other:?}"),
        };
        assert!(Recipe::decode(&encode(recipe.tree.to_string())).is_ok());
        let escaping = recipe.tree.to_string().replacen(&recipe.tree.hex()[..6], "../../", 1);
        let why = decoded(escaping);
        assert!(why.contains("does not parse"), "{why}");
        recipe.tree = Swhid::new(ObjectType::Content, [0; 20]);
        assert!(damaged(&recipe).contains("is not a directory SWHID"));
    }

    #[test]
    fn mutated_gzip_corrections_fail_cleanly() {
        let original = tarball();
        let (mut recipe, tree) = Recipe::create(&original).unwrap();
        let Compression::Gzip(layer) = &mut recipe.compression else { panic!("a gzip recipe") };
        // zlib wrote the stream, so the recipe names it; keep preflate's corrections instead.
        assert_eq!(layer.members[0].deflate, deflate::Deflate::Zlib { level: 6 });
        let header_len = layer.members[0].header.len();
        let (modelled, _) =
            preflate_rs::preflate_whole_deflate_stream(&original[header_len..original.len() - 8], true, MAX_PLAIN)
                .unwrap();
        let corrections = modelled.corrections;
        layer.members[0].deflate = deflate::Deflate::Preflate { corrections: corrections.clone() };
        assert!(recipe.apply(&tree).unwrap() == original);
        for at in 0..corrections.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut mutated = recipe.clone();
                let Compression::Gzip(layer) = &mut mutated.compression else { unreachable!() };
                let mut flipped = corrections.clone();
                flipped[at] ^= flip;
                layer.members[0].deflate = deflate::Deflate::Preflate { corrections: flipped };
                // preflate refuses the corrections, or the rebuilt file fails its hash, or the
                // flipped bit did not matter; never a panic, never other bytes.
                if let Ok(rebuilt) = mutated.apply(&tree) {
                    assert!(rebuilt == original, "flipping {flip:#x} at {at} rebuilt other bytes");
                }
            }
        }
    }

    #[test]
    fn empty_bzip2_streams_and_huge_xz_dictionaries_are_refused() {
        let (mut recipe, _) = Recipe::create(&tarball()).unwrap();
        let stream = |plain_len| bzip2::Bzip2Stream::Libbzip2 { level: 9, plain_len };
        recipe.compression =
            Compression::Bzip2(bzip2::Bzip2Layer { streams: vec![stream(10), stream(0)], trailing: vec![] });
        assert!(damaged(&recipe).contains("an empty stream among others"));
        recipe.compression = Compression::Xz(xz::XzLayer {
            preset: 6,
            dict_size: 1 << 30,
            check: 4,
            block_size: None,
            trailing: vec![],
        });
        assert!(damaged(&recipe).contains("a dictionary of 1073741824 bytes"));
    }

    #[test]
    fn a_recipe_that_takes_a_tree_file_over_and_over_stops_at_the_file_size() {
        let (mut recipe, tree) = Recipe::create(&tarball()).unwrap();
        recipe.compression = Compression::None;
        let Container::Tar(layer) = &mut recipe.container else { panic!("a tar recipe") };
        let member = layer.members.iter().find(|m| m.data == tar::Data::Tree).unwrap().clone();
        layer.members = vec![member; 100_000];
        match recipe.apply(&tree) {
            Err(RecipeError::Damaged(why)) => assert!(why.contains("grows past"), "{why}"),
            other => panic!("a 500 MB tar stream was built for a small file: {other:?}"),
        }
    }

    #[test]
    fn a_body_with_more_members_than_memory_allows_is_refused() {
        let (mut recipe, _) = Recipe::create(&tarball()).unwrap();
        let Container::Tar(layer) = &mut recipe.container else { panic!("a tar recipe") };
        let empty = tar::Member {
            name: tar::Name::Header,
            header: vec![],
            size_field: None,
            checksum_field: None,
            data: tar::Data::Tree,
            padding: None,
        };
        let members = MAX_DECODED_STRUCTS / std::mem::size_of::<tar::Member>() + 1;
        layer.members = vec![empty; members];
        let encoded = recipe.encode();
        assert!(encoded.len() < 1 << 20, "a small file asks for {members} members");
        let why = damaged(&recipe);
        assert!(why.contains("it holds more elements than 268435456 bytes of memory can"), "{why}");
    }
}
