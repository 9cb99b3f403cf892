//! The zip layer of a recipe (zip, jar, wheel): every byte of a zip file that its unpacked tree
//! cannot give back. See [`crate::hashing::tree::zip_archive`] for the format and for the tree.
//!
//! Each entry is a local header, its data, perhaps a data descriptor; the central directory
//! repeats the entries; an end record closes the file. Writers differ in which fields they fill
//! where (Java leaves the local CRC and sizes zero and writes a descriptor; Info-ZIP adds
//! timestamp and uid/gid extra fields that differ between local and central headers; some
//! align entries with padding), so, as with tar, little is modelled: each fixed header part is
//! kept as its runs of difference from the previous one, with the CRC, sizes, lengths and
//! offsets computed from the tree and stored only where the computation misses. The central
//! record's version, flags, method and time are predicted from its local header, and its name
//! and extra field are stored only where they differ from the local header's. A deflated entry
//! is kept as its encoder (see [`super::deflate`]); a stored one needs nothing.
//! Names come from the tree's sorted path list where they match it, as for tar.

use serde::{Deserialize, Serialize};

use super::deflate::{self, Deflate};
use super::runs::{Run, diff, patch};
use super::{Rebuilt, RecipeError, tree_paths};
use crate::hashing::tree::memory::Node;
use crate::hashing::tree::zip_archive::{
    self, CENTRAL_FIXED, FLAG_DESCRIPTOR, LOCAL_FIXED, METHOD_DEFLATED, METHOD_STORED,
};

const CENTRAL_SIGNATURE: [u8; 4] = *b"PK\x01\x02";
const DESCRIPTOR_SIGNATURE: [u8; 4] = *b"PK\x07\x08";
/// The local header's CRC and sizes, and its name and extra lengths: computed, not stored.
const LOCAL_COMPUTED: std::ops::Range<usize> = 14..30;
const LOCAL_SUMS: std::ops::Range<usize> = 14..26;

/// How to rebuild a zip file from a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZipLayer {
    #[serde(deserialize_with = "super::bounded::vec")]
    pub entries: Vec<ZipEntry>,
    /// Bytes between the last entry and the central directory.
    pub before_central: Vec<u8>,
    /// Everything after the central directory: zip64 end record and locator, end record, comment,
    /// and whatever follows.
    pub end: Vec<u8>,
    /// How far the offsets the headers record fall short of the real ones (bytes put before a
    /// zip after it was written, such as a self-extractor's stub).
    pub shift: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZipEntry {
    /// Bytes before the local header.
    pub gap: Vec<u8>,
    pub name: Name,
    /// The local header's fixed part as runs of difference from the previous one's, with the
    /// CRC, sizes and lengths zeroed in both.
    #[serde(deserialize_with = "super::bounded::vec")]
    pub local: Vec<Run>,
    /// The local header's CRC and sizes, where they are neither the entry's (nor zeros, when a
    /// data descriptor follows).
    pub local_sums: Option<Vec<u8>>,
    pub local_extra: Vec<u8>,
    pub data: Data,
    pub descriptor: Descriptor,
    /// The central record's fixed part as runs of difference from the one predicted.
    #[serde(deserialize_with = "super::bounded::vec")]
    pub central: Vec<Run>,
    /// The central record's name, where it is not the local header's.
    pub central_name: Option<Vec<u8>>,
    /// The central record's extra field, where it is not the local header's.
    pub central_extra: Option<Vec<u8>>,
    pub comment: Vec<u8>,
}

/// Where an entry's name comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Name {
    /// The tree's path number `previous + 1 + delta` (see the tar layer's [`super::tar::Name`]).
    Tree {
        delta: i64,
    },
    Literal(Vec<u8>),
}

/// Where an entry's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Data {
    /// The tree's file (empty for a directory), stored.
    Stored,
    /// The tree's file, deflated as this says.
    Deflated(Deflate),
    /// These bytes, whose uncompressed form has this CRC and size: entries the tree does not
    /// hold as they were (overwritten by a later one, or skipped on unpacking).
    Literal { bytes: Vec<u8>, crc: u32, size: u64 },
}

/// What follows an entry's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Descriptor {
    None,
    /// A data descriptor holding the entry's CRC and sizes, after a signature or not, with
    /// 8-byte sizes or 4-byte ones.
    Computed {
        signature: bool,
        zip64: bool,
    },
    Raw(Vec<u8>),
}

/// What the recipe computes for an entry.
struct Sums {
    crc: u32,
    compressed: u64,
    size: u64,
}

fn u32_field(value: u64) -> [u8; 4] {
    u32::try_from(value).unwrap_or(u32::MAX).to_le_bytes()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

fn predicted_local_sums(flags: u16, sums: &Sums) -> Vec<u8> {
    if flags & FLAG_DESCRIPTOR != 0 {
        return vec![0; 12];
    }
    [sums.crc.to_le_bytes(), u32_field(sums.compressed), u32_field(sums.size)].concat()
}

impl Descriptor {
    fn bytes(signature: bool, zip64: bool, sums: &Sums) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        if signature {
            out.extend_from_slice(&DESCRIPTOR_SIGNATURE);
        }
        out.extend_from_slice(&sums.crc.to_le_bytes());
        if zip64 {
            out.extend_from_slice(&sums.compressed.to_le_bytes());
            out.extend_from_slice(&sums.size.to_le_bytes());
        } else {
            out.extend_from_slice(&u32_field(sums.compressed));
            out.extend_from_slice(&u32_field(sums.size));
        }
        out
    }

    /// Which descriptor, if any, starts `after` (the bytes up to the next header).
    fn find(flags: u16, after: &[u8], sums: &Sums) -> (Descriptor, usize) {
        if flags & FLAG_DESCRIPTOR == 0 {
            return (Descriptor::None, 0);
        }
        for (signature, zip64) in [(true, false), (false, false), (true, true), (false, true)] {
            let bytes = Descriptor::bytes(signature, zip64, sums);
            if after.starts_with(&bytes) {
                return (Descriptor::Computed { signature, zip64 }, bytes.len());
            }
        }
        (Descriptor::Raw(after.to_vec()), after.len())
    }
}

/// The central record's fixed part as predicted from the previous one and this entry.
fn predicted_central(
    previous: &[u8; CENTRAL_FIXED],
    local: &[u8],
    sums: &Sums,
    lengths: [usize; 3],
    offset: u64,
) -> [u8; CENTRAL_FIXED] {
    let mut predicted = *previous;
    predicted[0..4].copy_from_slice(&CENTRAL_SIGNATURE);
    predicted[6..16].copy_from_slice(&local[4..14]);
    predicted[16..20].copy_from_slice(&sums.crc.to_le_bytes());
    predicted[20..24].copy_from_slice(&u32_field(sums.compressed));
    predicted[24..28].copy_from_slice(&u32_field(sums.size));
    for (i, len) in lengths.into_iter().enumerate() {
        predicted[28 + 2 * i..30 + 2 * i].copy_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes());
    }
    predicted[42..46].copy_from_slice(&u32_field(offset));
    predicted
}

/// The bytes an entry's data holds once unpacked, as the tree has them: empty for a directory.
fn tree_contents<'t>(tree: &'t Node, raw_name: &[u8], flags: u16) -> Option<&'t [u8]> {
    let name = zip_archive::decode_name(raw_name, flags)?;
    if !zip_archive::is_unpacked(&name) {
        return None;
    }
    if name.ends_with(b"/") {
        return matches!(tree.get(&name), Some(Node::Directory(_))).then_some(&[][..]);
    }
    match tree.get(&name) {
        Some(Node::File { contents, .. }) => Some(contents),
        _ => None,
    }
}

impl ZipLayer {
    /// Records how to rebuild the zip file `bytes`, laid out as `layout`, from `tree`, its
    /// unpacked form.
    pub(crate) fn create(bytes: &[u8], layout: &zip_archive::Layout, tree: &Node) -> Result<ZipLayer, RecipeError> {
        let unsupported = |why: String| RecipeError::Unsupported(format!("zip: {why}"));
        let paths = tree_paths(tree);
        let numbers: std::collections::HashMap<&[u8], i64> =
            paths.iter().enumerate().map(|(i, p)| (p.as_slice(), i as i64)).collect();
        let mut previous_number = -1i64;
        let mut previous_local = [0u8; LOCAL_FIXED];
        let mut previous_central = [0u8; CENTRAL_FIXED];
        let mut entries = Vec::with_capacity(layout.entries.len());
        let mut pos = 0;
        for (i, entry) in layout.entries.iter().enumerate() {
            if entry.local.start < pos {
                return Err(unsupported("the central directory lists entries out of file order".into()));
            }
            let next = layout.entries.get(i + 1).map_or(layout.central.start, |e| e.local.start);
            if next < entry.data.end {
                return Err(unsupported("entries overlap".into()));
            }
            let gap = bytes[pos..entry.local.start].to_vec();
            let local = &bytes[entry.local.clone()];
            // The local header's flags, as apply will read them (the central record's may differ).
            let flags = u16::from_le_bytes([local[6], local[7]]);
            let name_len = usize::from(u16::from_le_bytes([local[26], local[27]]));
            let local_name = &local[LOCAL_FIXED..LOCAL_FIXED + name_len];
            let local_extra = local[LOCAL_FIXED + name_len..].to_vec();
            let name = match numbers.get(local_name) {
                Some(&number) if zip_archive::decode_name(local_name, flags).as_deref() == Some(local_name) => {
                    let delta = number - (previous_number + 1);
                    previous_number = number;
                    Name::Tree { delta }
                }
                _ => Name::Literal(local_name.to_vec()),
            };
            let stored = &bytes[entry.data.clone()];
            let from_tree = tree_contents(tree, local_name, flags);
            let (data, plain_crc, size) = match (entry.method, from_tree) {
                (METHOD_STORED, Some(contents)) if contents == stored => {
                    (Data::Stored, crc32(contents), contents.len() as u64)
                }
                // The tree holds this entry's data if it has its size and CRC (checked against the
                // data when the tree was read); modelling then checks it byte for byte.
                (METHOD_DEFLATED, Some(contents))
                    if contents.len() as u64 == entry.size && crc32(contents) == entry.crc =>
                {
                    let name = format!("`{}`", String::from_utf8_lossy(local_name));
                    let deflate = deflate::model(contents, stored, &name).map_err(|e| match e {
                        RecipeError::Unsupported(why) => unsupported(why),
                        other => other,
                    })?;
                    (Data::Deflated(deflate), entry.crc, entry.size)
                }
                _ => literal(stored, entry),
            };
            let sums = Sums { crc: plain_crc, compressed: stored.len() as u64, size };
            let (descriptor, descriptor_len) = Descriptor::find(flags, &bytes[entry.data.end..next], &sums);

            let mut masked_local: [u8; LOCAL_FIXED] = local[..LOCAL_FIXED].try_into().expect("a fixed part");
            let local_sums = &local[LOCAL_SUMS];
            masked_local[LOCAL_COMPUTED].fill(0);
            let local_runs = diff(&previous_local, &masked_local);
            previous_local = masked_local;

            let central = &bytes[entry.central.clone()];
            let central_name_len = usize::from(u16::from_le_bytes([central[28], central[29]]));
            let central_extra_len = usize::from(u16::from_le_bytes([central[30], central[31]]));
            let central_name = &central[CENTRAL_FIXED..CENTRAL_FIXED + central_name_len];
            let central_extra =
                &central[CENTRAL_FIXED + central_name_len..CENTRAL_FIXED + central_name_len + central_extra_len];
            let comment = &central[CENTRAL_FIXED + central_name_len + central_extra_len..];
            let offset = (entry.local.start as u64).wrapping_sub(layout.shift as u64);
            let predicted = predicted_central(
                &previous_central,
                local,
                &sums,
                [central_name.len(), central_extra.len(), comment.len()],
                offset,
            );
            let actual_central: [u8; CENTRAL_FIXED] = central[..CENTRAL_FIXED].try_into().expect("a fixed part");
            entries.push(ZipEntry {
                gap,
                name,
                local: local_runs,
                local_sums: (local_sums != predicted_local_sums(flags, &sums)).then(|| local_sums.to_vec()),
                local_extra: local_extra.clone(),
                data,
                descriptor,
                central: diff(&predicted, &actual_central),
                central_name: (central_name != local_name).then(|| central_name.to_vec()),
                central_extra: (central_extra != local_extra).then(|| central_extra.to_vec()),
                comment: comment.to_vec(),
            });
            previous_central = actual_central;
            pos = entry.data.end + descriptor_len;
        }
        if pos > layout.central.start {
            return Err(unsupported("the last entry runs into the central directory".into()));
        }
        Ok(ZipLayer {
            entries,
            before_central: bytes[pos..layout.central.start].to_vec(),
            end: bytes[layout.central.end..].to_vec(),
            shift: layout.shift as u64,
        })
    }

    /// Rebuilds the zip file from `tree`, refusing to write more than `limit` bytes.
    pub(crate) fn apply(&self, tree: &Node, limit: usize, out: &mut impl Rebuilt) -> Result<(), RecipeError> {
        let damaged = |why: String| RecipeError::Damaged(format!("zip: {why}"));
        let grow = |out: &mut dyn Rebuilt, bytes: &[u8]| {
            if out.written() + bytes.len() > limit {
                return Err(RecipeError::Damaged(format!("the zip file grows past {limit} bytes")));
            }
            out.put(bytes)
        };
        let paths = tree_paths(tree);
        let mut previous_number = -1i64;
        let mut previous_local = [0u8; LOCAL_FIXED];
        // What the central directory needs of each entry: its local header's fixed part, sums,
        // name and offset.
        let mut written = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            grow(out, &entry.gap)?;
            let offset = (out.written() as u64).wrapping_sub(self.shift);
            let name: &[u8] = match &entry.name {
                Name::Literal(name) => name,
                Name::Tree { delta } => {
                    let number = previous_number.checked_add(1).and_then(|n| n.checked_add(*delta));
                    let path = number.and_then(|n| usize::try_from(n).ok()).and_then(|n| paths.get(n));
                    let path = path.ok_or_else(|| {
                        damaged(format!("an entry names tree path number {number:?}, which the tree lacks"))
                    })?;
                    previous_number = number.expect("checked above");
                    path
                }
            };
            let mut header = previous_local;
            patch(&mut header, &entry.local, "zip local header")?;
            previous_local = header;
            let flags = u16::from_le_bytes([header[6], header[7]]);
            let (data, sums) = match &entry.data {
                Data::Literal { bytes, crc, size } => (
                    std::borrow::Cow::Borrowed(&bytes[..]),
                    Sums { crc: *crc, compressed: bytes.len() as u64, size: *size },
                ),
                from_tree => {
                    let contents = tree_contents(tree, name, flags)
                        .ok_or_else(|| RecipeError::TreeLacks { path: String::from_utf8_lossy(name).into_owned() })?;
                    let data = match from_tree {
                        Data::Deflated(deflate) => std::borrow::Cow::Owned(deflate::recreate(contents, deflate)?),
                        _ => std::borrow::Cow::Borrowed(contents),
                    };
                    let sums =
                        Sums { crc: crc32(contents), compressed: data.len() as u64, size: contents.len() as u64 };
                    (data, sums)
                }
            };
            let local_sums = entry.local_sums.clone().unwrap_or_else(|| predicted_local_sums(flags, &sums));
            if local_sums.len() != LOCAL_SUMS.len() {
                return Err(damaged("local CRC and sizes that are not 12 bytes".into()));
            }
            header[LOCAL_SUMS].copy_from_slice(&local_sums);
            let too_long = |what: &str| damaged(format!("a {what} longer than 65,535 bytes"));
            let name_len = u16::try_from(name.len()).map_err(|_| too_long("name"))?;
            let extra_len = u16::try_from(entry.local_extra.len()).map_err(|_| too_long("extra field"))?;
            header[26..28].copy_from_slice(&name_len.to_le_bytes());
            header[28..30].copy_from_slice(&extra_len.to_le_bytes());
            grow(out, &header)?;
            grow(out, name)?;
            grow(out, &entry.local_extra)?;
            grow(out, &data)?;
            match &entry.descriptor {
                Descriptor::None => {}
                Descriptor::Computed { signature, zip64 } => grow(out, &Descriptor::bytes(*signature, *zip64, &sums))?,
                Descriptor::Raw(bytes) => grow(out, bytes)?,
            }
            written.push((header, sums, name, offset));
        }
        grow(out, &self.before_central)?;
        let mut previous_central = [0u8; CENTRAL_FIXED];
        for (entry, (local, sums, local_name, offset)) in self.entries.iter().zip(written) {
            let name = entry.central_name.as_deref().unwrap_or(local_name);
            let extra = entry.central_extra.as_deref().unwrap_or(&entry.local_extra);
            let mut header = predicted_central(
                &previous_central,
                &local,
                &sums,
                [name.len(), extra.len(), entry.comment.len()],
                offset,
            );
            patch(&mut header, &entry.central, "zip central directory record")?;
            previous_central = header;
            grow(out, &header)?;
            grow(out, name)?;
            grow(out, extra)?;
            grow(out, &entry.comment)?;
        }
        grow(out, &self.end)
    }
}

/// An entry kept as it is, with what its central record says of its uncompressed form.
fn literal(stored: &[u8], entry: &zip_archive::Entry) -> (Data, u32, u64) {
    (Data::Literal { bytes: stored.to_vec(), crc: entry.crc, size: entry.size }, entry.crc, entry.size)
}
