//! The tar layer of a recipe: every byte of a tar stream that its unpacked tree cannot give back.
//!
//! A tar stream is a sequence of 512-byte headers, each followed by its member's data padded to
//! a multiple of 512 bytes, then an end marker (two zero blocks) and padding up to the record
//! size. Tools differ in everything but that frame: ustar, GNU (`ustar  \0` magic, `L`/`K`
//! long-name members, no prefix field), pax (`x`/`g` members holding `len key=value\n` records),
//! `git archive` (a pax global header with the commit id), octal or base-256 numbers, checksum
//! spelling, member order, non-zero padding, trailing garbage. So nothing is modelled that need not
//! be: each header is stored as the bytes that differ from the previous header (names and mtimes
//! mostly), with the size and checksum fields predicted from the data and stored only where the
//! prediction misses. A regular member's data comes from the tree file at the member's path
//! when the bytes are the same (the tree holds the last of several members with one path);
//! everything else (pax and long-name records, overwritten members) is kept literally.

use serde::{Deserialize, Serialize};

use super::runs::{Run, diff, patch};
use super::{Rebuilt, RecipeError, tree_paths};
use crate::hashing::tree::memory::Node;

const BLOCK: usize = 512;
const SIZE: std::ops::Range<usize> = 124..136;
const CHECKSUM: std::ops::Range<usize> = 148..156;
/// More zeros than any tar writer pads with (a record is 10 KiB by default): a damaged recipe.
const MAX_ZERO_TAIL: u64 = 64 << 20;

/// How to rebuild a tar stream from a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarLayer {
    #[serde(deserialize_with = "super::bounded::vec")]
    pub members: Vec<Member>,
    /// What follows the last member: the end marker and the record padding.
    pub tail: Tail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where the name field comes from.
    pub name: Name,
    /// The header's bytes that differ from the previous header's (size and checksum fields left
    /// out of both, and the name field taken from the tree where [`Name::Tree`] says so), as runs.
    #[serde(deserialize_with = "super::bounded::vec")]
    pub header: Vec<Run>,
    /// The size field, where it is not the usual `%011o\0` of the data's length.
    pub size_field: Option<Vec<u8>>,
    /// The checksum field, where it is not the usual `%06o\0 `.
    pub checksum_field: Option<Vec<u8>>,
    pub data: Data,
    /// The bytes after the data up to the block boundary, where they are not all zero.
    pub padding: Option<Vec<u8>>,
}

/// Where a member's name field comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Name {
    /// From the header runs, like any other field.
    Header,
    /// The tree's path number `previous + 1 + delta` in depth-first, byte-sorted order (the
    /// extraction root's entries, directories spelled with a trailing `/`), after `./` if
    /// `dot_slash`; NUL-padded. Archivers that walk sorted trees give deltas of zero.
    Tree { delta: i64, dot_slash: bool },
}

fn spelled(path: &[u8], dot_slash: bool) -> Result<[u8; 100], RecipeError> {
    let mut field = [0u8; 100];
    let prefix: &[u8] = if dot_slash { b"./" } else { b"" };
    if prefix.len() + path.len() > field.len() {
        return Err(RecipeError::Damaged("a tree name longer than the name field".into()));
    }
    field[..prefix.len()].copy_from_slice(prefix);
    field[prefix.len()..prefix.len() + path.len()].copy_from_slice(path);
    Ok(field)
}

/// Where a member's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Data {
    /// The tree's file at the member's path.
    Tree,
    /// These bytes (metadata members, overwritten or missing files).
    Literal(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tail {
    /// This many zero bytes.
    Zeros(u64),
    /// These bytes (something other than zeros follows the last member).
    Raw(Vec<u8>),
}

/// The state carried from member to member: long names and pax records apply to the next one.
#[derive(Default)]
struct PathState {
    gnu_long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

impl PathState {
    /// The member's path and data length, from its header and what came before it; and takes
    /// note of what this member says about the next one (once its data is known).
    fn path_of(&mut self, header: &[u8; BLOCK]) -> Vec<u8> {
        if let Some(long) = self.gnu_long_name.take() {
            self.pax_path = None;
            return long;
        }
        if let Some(path) = self.pax_path.take() {
            return path;
        }
        let name = field_str(&header[0..100]);
        let posix = &header[257..263] == b"ustar\0";
        let prefix = field_str(&header[345..500]);
        if posix && !prefix.is_empty() { [prefix, b"/", name].concat() } else { name.to_vec() }
    }

    fn note_metadata(&mut self, kind: u8, data: &[u8]) {
        match kind {
            b'L' => self.gnu_long_name = Some(field_str(data).to_vec()),
            b'x' => {
                for (key, value) in pax_records(data) {
                    match key {
                        b"path" => self.pax_path = Some(value.to_vec()),
                        b"size" => self.pax_size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// The bytes of a NUL-terminated field.
fn field_str(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or_default()
}

/// `len key=value\n` records; malformed ones end the list.
fn pax_records(mut data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let Some(space) = data.iter().position(|&b| b == b' ') else { break };
        let Some(len) = std::str::from_utf8(&data[..space]).ok().and_then(|l| l.parse::<usize>().ok()) else { break };
        if len <= space + 1 || len > data.len() {
            break;
        }
        let record = &data[space + 1..len - 1];
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            records.push((&record[..eq], &record[eq + 1..]));
        }
        data = &data[len..];
    }
    records
}

/// A header's size field: octal, or base-256 when the first byte has its high bit set.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x7f), |acc, &b| acc.checked_mul(256).map(|a| a + u64::from(b)));
    }
    let digits: Vec<u8> =
        field.iter().copied().skip_while(|&b| b == b' ' || b == 0).take_while(|b| b.is_ascii_digit()).collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

fn predicted_size_field(len: u64) -> Vec<u8> {
    if len < 0o77777777777 {
        format!("{len:011o}\0").into_bytes()
    } else {
        let mut field = vec![0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&len.to_be_bytes());
        field
    }
}

fn predicted_checksum_field(header: &[u8; BLOCK]) -> Vec<u8> {
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if CHECKSUM.contains(&i) { u32::from(b' ') } else { u32::from(b) })
        .sum();
    format!("{sum:06o}\0 ").into_bytes()
}

/// Whether `bytes` starts with a tar header: its checksum field holds the sum of its bytes (the
/// field counted as spaces). Older archives carry no `ustar` magic, so the magic proves nothing.
pub(crate) fn starts_like_tar(bytes: &[u8]) -> bool {
    let Some(header) = bytes.get(..BLOCK) else { return false };
    let header: &[u8; BLOCK] = header.try_into().expect("a block");
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| if CHECKSUM.contains(&i) { u32::from(b' ') } else { u32::from(b) })
        .sum();
    header.iter().any(|&b| b != 0) && parse_size(&header[CHECKSUM]) == Some(u64::from(sum))
}

fn masked(header: &[u8; BLOCK]) -> [u8; BLOCK] {
    let mut masked = *header;
    masked[SIZE].fill(0);
    masked[CHECKSUM].fill(0);
    masked
}

/// Normalises a member path as extraction does: no leading `./` or `/`, no `.` components, no
/// trailing `/`.
fn tree_path(path: &[u8]) -> Vec<u8> {
    let components: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    components.join(&b'/')
}

fn is_regular(kind: u8) -> bool {
    matches!(kind, b'0' | 0 | b'7')
}

impl TarLayer {
    /// Records how to rebuild the tar stream `tar` from `tree`, its unpacked form.
    pub(crate) fn create(tar: &[u8], tree: &Node) -> Result<TarLayer, RecipeError> {
        let malformed = |at: usize, why: &str| RecipeError::Unsupported(format!("tar: {why} at byte {at}"));
        let mut members = Vec::new();
        let mut previous = [0u8; BLOCK];
        let mut state = PathState::default();
        let mut pos = 0;
        let paths = tree_paths(tree);
        let numbers: std::collections::HashMap<&[u8], i64> =
            paths.iter().enumerate().map(|(i, p)| (p.as_slice(), i as i64)).collect();
        let mut previous_number = -1i64;
        loop {
            if pos + BLOCK > tar.len() {
                return Err(malformed(pos, "the stream ends without an end marker"));
            }
            let header: &[u8; BLOCK] = tar[pos..pos + BLOCK].try_into().expect("a block");
            if header.iter().all(|&b| b == 0) {
                let rest = &tar[pos..];
                let tail = if rest.iter().all(|&b| b == 0) {
                    Tail::Zeros(rest.len() as u64)
                } else {
                    Tail::Raw(rest.to_vec())
                };
                return Ok(TarLayer { members, tail });
            }
            let kind = header[156];
            let path = state.path_of(header);
            let size = match state.pax_size.take() {
                Some(size) if is_regular(kind) => size,
                _ => parse_size(&header[SIZE]).ok_or_else(|| malformed(pos + 124, "an unreadable size field"))?,
            };
            let data_start = pos + BLOCK;
            let data_end =
                usize::try_from(size).ok().and_then(|s| data_start.checked_add(s)).filter(|&e| e <= tar.len());
            let data_end = data_end.ok_or_else(|| malformed(pos, "a member's data runs past the end"))?;
            let padded_end = data_start + (size as usize).next_multiple_of(BLOCK);
            if padded_end > tar.len() {
                return Err(malformed(pos, "a member's padding runs past the end"));
            }
            let bytes = &tar[data_start..data_end];
            let from_tree = is_regular(kind)
                && matches!(tree.get(&tree_path(&path)), Some(Node::File { contents, .. }) if contents == bytes);
            if !is_regular(kind) {
                state.note_metadata(kind, bytes);
            }
            let size_field = (header[SIZE] != predicted_size_field(size)[..]).then(|| header[SIZE].to_vec());
            let checksum_field =
                (header[CHECKSUM] != predicted_checksum_field(header)[..]).then(|| header[CHECKSUM].to_vec());
            let padding = &tar[data_end..padded_end];
            let mut predicted = masked(&previous);
            let name_field = &header[0..100];
            let (dot_slash, bare) = match name_field.strip_prefix(b"./") {
                Some(rest) => (true, rest),
                None => (false, name_field),
            };
            let number = numbers.get(field_str(bare)).copied().filter(|&n| {
                !matches!(kind, b'L' | b'K' | b'x' | b'g')
                    && spelled(&paths[n as usize], dot_slash).is_ok_and(|field| field[..] == *name_field)
            });
            let name = match number {
                Some(number) => {
                    predicted[0..100].copy_from_slice(name_field);
                    let delta = number - (previous_number + 1);
                    previous_number = number;
                    Name::Tree { delta, dot_slash }
                }
                None => Name::Header,
            };
            members.push(Member {
                name,
                header: diff(&predicted, &masked(header)),
                size_field,
                checksum_field,
                data: if from_tree { Data::Tree } else { Data::Literal(bytes.to_vec()) },
                padding: padding.iter().any(|&b| b != 0).then(|| padding.to_vec()),
            });
            previous = *header;
            pos = padded_end;
        }
    }

    /// Rebuilds the tar stream from `tree`, refusing to write more than `limit` bytes (a damaged
    /// recipe could take one large tree file a million times).
    pub(crate) fn apply(&self, tree: &Node, limit: usize, out: &mut impl Rebuilt) -> Result<(), RecipeError> {
        let too_long = || RecipeError::Damaged(format!("the tar stream grows past {limit} bytes"));
        let mut previous = [0u8; BLOCK];
        let mut state = PathState::default();
        let paths = tree_paths(tree);
        let mut previous_number = -1i64;
        for member in &self.members {
            let mut header = masked(&previous);
            if let Name::Tree { delta, dot_slash } = member.name {
                let number = previous_number.checked_add(1).and_then(|n| n.checked_add(delta));
                let path =
                    number.and_then(|n| usize::try_from(n).ok()).and_then(|n| paths.get(n)).ok_or_else(|| {
                        RecipeError::Damaged(format!(
                            "a tar member names tree path number {number:?}, which the tree lacks"
                        ))
                    })?;
                header[0..100].copy_from_slice(&spelled(path, dot_slash)?);
                previous_number = number.expect("checked above");
            }
            patch(&mut header, &member.header, "tar header")?;
            let kind = header[156];
            let path = state.path_of(&header);
            state.pax_size = None;
            let data: &[u8] = match &member.data {
                Data::Literal(bytes) => bytes,
                Data::Tree => match tree.get(&tree_path(&path)) {
                    Some(Node::File { contents, .. }) => contents,
                    _ => {
                        return Err(RecipeError::TreeLacks { path: String::from_utf8_lossy(&path).into_owned() });
                    }
                },
            };
            if !is_regular(kind) {
                state.note_metadata(kind, data);
            }
            let size_field = member.size_field.clone().unwrap_or_else(|| predicted_size_field(data.len() as u64));
            if size_field.len() != SIZE.len() {
                return Err(RecipeError::Damaged("a tar size field is not 12 bytes".into()));
            }
            header[SIZE].copy_from_slice(&size_field);
            let checksum_field = member.checksum_field.clone().unwrap_or_else(|| predicted_checksum_field(&header));
            if checksum_field.len() != CHECKSUM.len() {
                return Err(RecipeError::Damaged("a tar checksum field is not 8 bytes".into()));
            }
            header[CHECKSUM].copy_from_slice(&checksum_field);
            let pad = data.len().next_multiple_of(BLOCK) - data.len();
            if out.written() + BLOCK + data.len() + pad > limit {
                return Err(too_long());
            }
            out.put(&header)?;
            out.put(data)?;
            match &member.padding {
                Some(padding) if padding.len() == pad => out.put(padding)?,
                Some(_) => return Err(RecipeError::Damaged("a tar member's padding has the wrong length".into())),
                None => out.put_zeros(pad)?,
            }
            previous = header;
        }
        let tail_len = match &self.tail {
            Tail::Zeros(n) if *n <= MAX_ZERO_TAIL => *n as usize,
            Tail::Zeros(n) => return Err(RecipeError::Damaged(format!("a tail of {n} zero bytes"))),
            Tail::Raw(bytes) => bytes.len(),
        };
        if out.written() + tail_len > limit {
            return Err(too_long());
        }
        match &self.tail {
            Tail::Zeros(_) => out.put_zeros(tail_len),
            Tail::Raw(bytes) => out.put(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_layers_are_refused_without_allocating() {
        let tree = Node::empty_directory();
        let huge = TarLayer { members: vec![], tail: Tail::Zeros(u64::MAX) };
        assert!(matches!(huge.apply(&tree, usize::MAX, &mut Vec::new()), Err(RecipeError::Damaged(_))));
        let overflowing = Member {
            name: Name::Header,
            header: vec![Run { offset: 510, bytes: vec![1, 2, 3] }],
            size_field: None,
            checksum_field: None,
            data: Data::Literal(vec![]),
            padding: None,
        };
        let layer = TarLayer { members: vec![overflowing], tail: Tail::Zeros(1024) };
        assert!(matches!(layer.apply(&tree, usize::MAX, &mut Vec::new()), Err(RecipeError::Damaged(_))));
    }
}
