//! The bridge index: for each file with a recipe, every name Nix and Software Heritage give it.
//!
//! Nix names a tarball by the flat hash of the file (`fetchurl`) or by the NAR hash of the tree
//! it unpacks to (`fetchzip`, which strips the top directory when there is exactly one); SWH
//! names the extraction root by a directory SWHID, and its ExtIDs link only the hashes its
//! loader saw. An entry joins them all, so that a NAR hash with no ExtID still leads to a
//! directory in the archive (and a flat hash to the tree its recipe needs). An entry is a small
//! JSON document, kept in the recipe store under each of its keys (see [`BridgeEntry::keys`]).
//!
//! Three kinds of entry, told apart by their fields: an archive (tarball, zip) has a size, flat
//! hashes, its extraction root as `tree` and the fetchzip-style `unpacked` tree; a plain file
//! has a size, flat hashes and its content SWHID as `tree` (so that a sha512 or md5 that no
//! ExtID names still leads to the content); a tree known only from its NAR (a binary cache's,
//! say) has `tree` and `unpacked` alone.
//!
//! The unpacked tree's NAR hash is computed from the tree SWH archives: for tarballs that is the
//! tree Nix unpacks; for zips, `unzip` (which fetchzip uses) keeps executable bits and symlinks
//! that SWH's unpacking drops, so the NAR hash matches fetchzip's only for zips without them.
//! Whoever uses an entry verifies what it leads to.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hashing::tree::memory::Node;
use crate::hashing::{Hash, HashAlgo, ObjectType, Swhid};

/// The flat hashes an entry is kept under: the ones Nix expressions pin.
pub(crate) const FLAT_ALGOS: [HashAlgo; 4] = [HashAlgo::Sha256, HashAlgo::Sha512, HashAlgo::Sha1, HashAlgo::Md5];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeEntry {
    /// The file's length (none for a tree known only from its NAR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The file's flat hashes, hex, by algorithm (`sha256`, `sha512`, `sha1`, `md5`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flat: BTreeMap<String, String>,
    /// What SWH archives: an archive's extraction root (what the recipe rebuilds from, and what
    /// SWH's `checksum-*` ExtIDs name), a plain file's content, or the tree itself.
    pub tree: Swhid,
    /// The tree as Nix's fetchzip makes it (none for a plain file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked: Option<Unpacked>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unpacked {
    /// The top directory stripped, if the extraction root holds exactly one directory and
    /// nothing else.
    pub top: Option<String>,
    pub swhid: Swhid,
    /// The NAR sha256, hex.
    pub nar_sha256: String,
}

impl BridgeEntry {
    /// The entry for `file`, whose extraction root is `tree`, with SWHID `root` (which making
    /// the recipe has computed already: hashing the whole tree again is not free).
    pub fn of(file: &[u8], tree: &Node, root: Swhid) -> BridgeEntry {
        let (top, unpacked) = match tree {
            Node::Directory(entries) if entries.len() == 1 => match entries.iter().next() {
                Some((name, dir @ Node::Directory(_))) => (Some(String::from_utf8_lossy(name).into_owned()), dir),
                _ => (None, tree),
            },
            _ => (None, tree),
        };
        // The root itself unless a top folder is stripped.
        let unpacked_swhid = if top.is_some() { unpacked.swhid() } else { root };
        BridgeEntry {
            size: Some(file.len() as u64),
            flat: flat_hashes(file),
            tree: root,
            unpacked: Some(Unpacked {
                top,
                swhid: unpacked_swhid,
                nar_sha256: unpacked.nar_hash(HashAlgo::Sha256).to_hex(),
            }),
        }
    }

    /// The entry for a plain file, archived as a content.
    pub(crate) fn of_content(file: &[u8]) -> BridgeEntry {
        BridgeEntry {
            size: Some(file.len() as u64),
            flat: flat_hashes(file),
            tree: crate::hashing::swhid::content_id(file),
            unpacked: None,
        }
    }

    /// The entry for a tree known only as itself (from a NAR, say).
    pub(crate) fn of_tree(tree: &Node) -> BridgeEntry {
        let swhid = tree.swhid();
        BridgeEntry {
            size: None,
            flat: BTreeMap::new(),
            tree: swhid,
            unpacked: Some(Unpacked { top: None, swhid, nar_sha256: tree.nar_hash(HashAlgo::Sha256).to_hex() }),
        }
    }

    /// The keys the entry is found under: each flat hash, the unpacked tree's NAR hash, and a
    /// directory it names. Hashes the entry holds that cannot be read are left out.
    pub(crate) fn keys(&self) -> Vec<BridgeKey> {
        let read = |algo: &str, hex: &str| Hash::parse(hex, algo.parse().ok()).ok();
        let mut keys: Vec<BridgeKey> =
            self.flat.iter().filter_map(|(algo, hex)| read(algo, hex)).map(BridgeKey::Flat).collect();
        if let Some(unpacked) = &self.unpacked {
            keys.extend(read("sha256", &unpacked.nar_sha256).map(BridgeKey::NarSha256));
        }
        if self.tree.object_type == ObjectType::Directory {
            keys.push(BridgeKey::Directory(self.tree));
        }
        keys
    }
}

/// What an entry is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BridgeKey {
    /// The file's flat hash: `<algo>/<hex>`.
    Flat(Hash),
    /// The unpacked tree's NAR sha256: `nar-sha256/<hex>` (the index keeps sha256 only).
    NarSha256(Hash),
    /// The SWHID of a directory it names: `swh-dir/<hex>`.
    Directory(Swhid),
}

impl fmt::Display for BridgeKey {
    /// The key as a path under the store's `bridge/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeKey::Flat(hash) => write!(f, "{}/{}", hash.algo(), hash.to_hex()),
            BridgeKey::NarSha256(hash) => write!(f, "nar-sha256/{}", hash.to_hex()),
            BridgeKey::Directory(swhid) => write!(f, "swh-dir/{}", swhid.hex()),
        }
    }
}

fn flat_hashes(file: &[u8]) -> BTreeMap<String, String> {
    FLAT_ALGOS
        .iter()
        .map(|algo| {
            let mut hasher = algo.hasher();
            hasher.update(file);
            (algo.name().to_owned(), hasher.finish().to_hex())
        })
        .collect()
}
