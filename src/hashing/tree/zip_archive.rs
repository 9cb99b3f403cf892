//! Zip files (also jar and wheel): their layout, and the tree Software Heritage archives for them.
//!
//! A zip file is a sequence of entries, each a local header (30 bytes, then the name and an
//! extra field), the entry's data (stored or deflated), and, when flag bit 3 is set, a data
//! descriptor (an optional signature, the CRC-32 and both sizes, 4 or 8 bytes each) for writers
//! that learn the sizes only after writing the data. The central directory then repeats each
//! entry (46 bytes, name, extra field, comment, and where the local header is), and the end
//! record (with an optional zip64 record and locator before it, for more than 65,535 entries or
//! offsets past 4 GiB) says where the central directory is. The central directory is what
//! counts: local headers may leave the CRC and sizes zero, and bytes may come before the first
//! entry (a self-extractor's stub), in which case every recorded offset is off by their length.
//!
//! SWH's loaders unpack a zip with Python's `shutil.unpack_archive`, whose zip support keeps far
//! less than the format holds, so [`Node::from_zip`] follows it rather than `unzip`:
//! - names are cut at the first NUL, and decoded as UTF-8 when flag bit 11 says so, else as code
//!   page 437 (the Info-ZIP Unicode path extra field is ignored), and written as UTF-8;
//! - a name that starts with `/` or contains `..` anywhere (even inside a component) is skipped;
//! - a name ending in `/` is a directory; parents are created as needed;
//! - every file is written with the default mode, so nothing is executable; a symlink entry
//!   becomes a regular file holding its target;
//! - of several entries with one name, the last one's data wins.
//!
//! Each entry's declared size is charged against the [`Limits`] before it is inflated, and the
//! inflated bytes are capped at that size and checked against the CRC, so a decompression bomb or
//! a lying header is refused, not unpacked.

use std::ops::Range;

use super::memory::Node;
use super::{Budget, Limits, TreeError, path_components};

const LOCAL_SIGNATURE: &[u8] = b"PK\x03\x04";
const CENTRAL_SIGNATURE: &[u8] = b"PK\x01\x02";
const END_SIGNATURE: &[u8] = b"PK\x05\x06";
const ZIP64_END_SIGNATURE: &[u8] = b"PK\x06\x06";
const ZIP64_LOCATOR_SIGNATURE: &[u8] = b"PK\x06\x07";
pub(crate) const LOCAL_FIXED: usize = 30;
pub(crate) const CENTRAL_FIXED: usize = 46;
const END_FIXED: usize = 22;
/// Flag bit 3: the CRC and sizes follow the data, in a data descriptor.
pub(crate) const FLAG_DESCRIPTOR: u16 = 1 << 3;
/// Flag bit 11: the name is UTF-8.
pub(crate) const FLAG_UTF8: u16 = 1 << 11;
pub(crate) const METHOD_STORED: u16 = 0;
pub(crate) const METHOD_DEFLATED: u16 = 8;

/// Code page 437's characters for bytes 0x80 to 0xff, as Python's `cp437` codec maps them (its
/// lower half is ASCII).
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐\
                          └┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

/// One entry, as its central directory record describes it, with its local header found.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The central directory record (fixed part, name, extra field, comment).
    pub central: Range<usize>,
    /// The local header (fixed part, name, extra field).
    pub local: Range<usize>,
    /// The entry's data as stored (compressed or not).
    pub data: Range<usize>,
    pub method: u16,
    pub crc: u32,
    /// The uncompressed size.
    pub size: u64,
    /// The name's bytes as the central directory stores them.
    pub raw_name: Vec<u8>,
    /// The name as Python decodes it, in UTF-8; `None` when flag bit 11 claims UTF-8 that is not.
    pub name: Option<Vec<u8>>,
}

/// Where everything is in a zip file.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// In central directory order.
    pub entries: Vec<Entry>,
    /// The central directory's records, start to end.
    pub central: Range<usize>,
    /// How many bytes were put before the file as its offsets record it (a self-extractor's stub).
    pub shift: usize,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn malformed(offset: usize, reason: impl Into<String>) -> TreeError {
    TreeError::MalformedZip { offset: offset as u64, reason: reason.into() }
}

/// Decodes an entry name as Python's zipfile does.
pub(crate) fn decode_name(raw: &[u8], flags: u16) -> Option<Vec<u8>> {
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    if flags & FLAG_UTF8 != 0 {
        return std::str::from_utf8(raw).ok().map(|name| name.as_bytes().to_vec());
    }
    let high: Vec<char> = CP437_HIGH.chars().collect();
    let decoded: String =
        raw.iter().map(|&b| if b < 0x80 { char::from(b) } else { high[usize::from(b - 0x80)] }).collect();
    Some(decoded.into_bytes())
}

/// The zip64 extended information extra field's values, for the fields the fixed part left at
/// their maximum, in the order the format gives them.
fn zip64_values(extra: &[u8], wanted: usize) -> Option<Vec<u64>> {
    let mut rest = extra;
    while rest.len() >= 4 {
        let (id, len) = (u16_at(rest, 0), usize::from(u16_at(rest, 2)));
        let body = rest.get(4..4 + len)?;
        if id == 1 {
            return (body.len() >= wanted * 8).then(|| (0..wanted).map(|i| u64_at(body, i * 8)).collect());
        }
        rest = &rest[4 + len..];
    }
    None
}

/// Finds the end record: the last `PK\5\6` from which the record and its comment fit the file.
fn find_end(bytes: &[u8]) -> Result<usize, TreeError> {
    if bytes.len() < END_FIXED {
        return Err(malformed(0, "shorter than an end of central directory record"));
    }
    let earliest = bytes.len().saturating_sub(END_FIXED + usize::from(u16::MAX));
    (earliest..=bytes.len().saturating_sub(END_FIXED))
        .rev()
        .find(|&at| {
            bytes[at..].starts_with(END_SIGNATURE)
                && at + END_FIXED + usize::from(u16_at(bytes, at + 20)) <= bytes.len()
        })
        .ok_or_else(|| malformed(bytes.len(), "no end of central directory record"))
}

/// Reads where every entry of the zip file `bytes` is.
pub(crate) fn layout(bytes: &[u8]) -> Result<Layout, TreeError> {
    let end = find_end(bytes)?;
    let mut count = u64::from(u16_at(bytes, end + 10));
    let mut size = u64::from(u32_at(bytes, end + 12));
    let mut offset = u64::from(u32_at(bytes, end + 16));
    let mut central_end = end;
    let locator = end.checked_sub(20).filter(|&at| bytes[at..].starts_with(ZIP64_LOCATOR_SIGNATURE));
    if let Some(locator) = locator {
        let record = usize::try_from(u64_at(bytes, locator + 8)).ok();
        // The record's recorded offset is off by the stub like every other; it sits right
        // before the locator in any case.
        let record = record.filter(|&r| bytes.get(r..).is_some_and(|b| b.starts_with(ZIP64_END_SIGNATURE)));
        let record =
            record.or_else(|| locator.checked_sub(56).filter(|&r| bytes[r..].starts_with(ZIP64_END_SIGNATURE)));
        let record = record.ok_or_else(|| malformed(locator, "a zip64 locator without its record"))?;
        if record + 56 > bytes.len() {
            return Err(malformed(record, "a zip64 end record cut short"));
        }
        count = u64_at(bytes, record + 32);
        size = u64_at(bytes, record + 40);
        offset = u64_at(bytes, record + 48);
        central_end = record;
    }
    let recorded_end = offset.checked_add(size).and_then(|e| usize::try_from(e).ok());
    let shift = recorded_end
        .and_then(|recorded| central_end.checked_sub(recorded))
        .ok_or_else(|| malformed(end, "the central directory is said to end past where it can"))?;
    let central_start = central_end - size as usize;
    // A record takes at least its fixed part: more entries than that cannot fit.
    if count > (size / CENTRAL_FIXED as u64) {
        return Err(malformed(end, format!("{count} entries in a central directory of {size} bytes")));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut at = central_start;
    for _ in 0..count {
        entries.push(entry_at(bytes, at, shift, central_end)?);
        at = entries.last().expect("just pushed").central.end;
    }
    if at != central_end {
        return Err(malformed(at, "the central directory holds more than its entries"));
    }
    Ok(Layout { entries, central: central_start..central_end, shift })
}

/// The central directory record at `at`, and the local header and data it points to.
fn entry_at(bytes: &[u8], at: usize, shift: usize, central_end: usize) -> Result<Entry, TreeError> {
    if at + CENTRAL_FIXED > central_end || !bytes[at..].starts_with(CENTRAL_SIGNATURE) {
        return Err(malformed(at, "a central directory record is missing"));
    }
    let (flags, method, crc) = (u16_at(bytes, at + 8), u16_at(bytes, at + 10), u32_at(bytes, at + 16));
    let name_len = usize::from(u16_at(bytes, at + 28));
    let extra_len = usize::from(u16_at(bytes, at + 30));
    let comment_len = usize::from(u16_at(bytes, at + 32));
    let record_end = at + CENTRAL_FIXED + name_len + extra_len + comment_len;
    if record_end > central_end {
        return Err(malformed(at, "a central directory record runs past the directory"));
    }
    let raw_name = bytes[at + CENTRAL_FIXED..at + CENTRAL_FIXED + name_len].to_vec();
    let extra = &bytes[at + CENTRAL_FIXED + name_len..at + CENTRAL_FIXED + name_len + extra_len];
    let mut size = u64::from(u32_at(bytes, at + 24));
    let mut compressed = u64::from(u32_at(bytes, at + 20));
    let mut local = u64::from(u32_at(bytes, at + 42));
    let maxed = [size == u64::from(u32::MAX), compressed == u64::from(u32::MAX), local == u64::from(u32::MAX)];
    let wanted = maxed.iter().filter(|&&m| m).count();
    if wanted > 0 {
        let values = zip64_values(extra, wanted).ok_or_else(|| malformed(at, "a zip64 field without its value"))?;
        let mut values = values.into_iter();
        for (field, is_maxed) in [&mut size, &mut compressed, &mut local].into_iter().zip(maxed) {
            if is_maxed {
                *field = values.next().expect("one value per maxed field");
            }
        }
    }
    let local =
        usize::try_from(local).ok().and_then(|l| l.checked_add(shift)).filter(|&l| l + LOCAL_FIXED <= bytes.len());
    let local = local.ok_or_else(|| malformed(at, "an entry's local header lies past the end"))?;
    if !bytes[local..].starts_with(LOCAL_SIGNATURE) {
        return Err(malformed(local, "no local header where the central directory says"));
    }
    let local_end =
        local + LOCAL_FIXED + usize::from(u16_at(bytes, local + 26)) + usize::from(u16_at(bytes, local + 28));
    let data_end =
        usize::try_from(compressed).ok().and_then(|c| local_end.checked_add(c)).filter(|&e| e <= bytes.len());
    let data_end = data_end.ok_or_else(|| malformed(local, "an entry's data runs past the end"))?;
    Ok(Entry {
        central: at..record_end,
        local: local..local_end,
        data: local_end..data_end,
        method,
        crc,
        size,
        name: decode_name(&raw_name, flags),
        raw_name,
    })
}

/// An entry's uncompressed bytes, checked against its size and CRC.
pub(crate) fn contents(bytes: &[u8], entry: &Entry) -> Result<Vec<u8>, TreeError> {
    let data = &bytes[entry.data.clone()];
    let contents = match entry.method {
        METHOD_STORED => data.to_vec(),
        METHOD_DEFLATED => {
            let mut out = Vec::with_capacity(entry.size.min(1 << 24) as usize);
            let mut inflater = flate2::Decompress::new(false);
            loop {
                out.reserve(1 << 16);
                let consumed = inflater.total_in() as usize;
                let status = inflater
                    .decompress_vec(&data[consumed..], &mut out, flate2::FlushDecompress::Finish)
                    .map_err(|e| malformed(entry.data.start, format!("the data does not inflate: {e}")))?;
                if status == flate2::Status::StreamEnd {
                    break;
                }
                if out.len() as u64 > entry.size {
                    break;
                }
                if inflater.total_in() as usize == consumed && out.len() < out.capacity() {
                    return Err(malformed(entry.data.start, "the deflate stream is cut short"));
                }
            }
            out
        }
        other => {
            return Err(malformed(
                entry.local.start,
                format!("compression method {other} (only stored and deflated are read)"),
            ));
        }
    };
    let mut crc = flate2::Crc::new();
    crc.update(&contents);
    if contents.len() as u64 != entry.size || crc.sum() != entry.crc {
        return Err(malformed(entry.data.start, "the data does not match its size and CRC"));
    }
    Ok(contents)
}

/// The tree path an entry becomes, or `None` for one Python's unpacking skips.
pub(crate) fn tree_path(entry: &Entry) -> Result<Option<&[u8]>, TreeError> {
    let name = entry.name.as_deref().ok_or_else(|| {
        malformed(
            entry.central.start,
            format!("the name {:?} claims to be UTF-8 and is not", String::from_utf8_lossy(&entry.raw_name)),
        )
    })?;
    Ok(is_unpacked(name).then_some(name))
}

/// Whether Python's unpacking writes an entry with this (decoded) name: not if it starts with
/// `/` or contains `..` anywhere.
pub(crate) fn is_unpacked(name: &[u8]) -> bool {
    !name.starts_with(b"/") && !name.windows(2).any(|w| w == b"..")
}

impl Node {
    /// Reads the zip file `bytes` into a directory node as SWH's loader unpacks it (see the
    /// module docs), refusing archives past `limits`.
    pub fn from_zip(bytes: &[u8], limits: Limits) -> Result<Node, TreeError> {
        Node::from_zip_layout(bytes, &layout(bytes)?, limits)
    }

    /// [`Node::from_zip`] for a zip whose layout has been read already.
    pub(crate) fn from_zip_layout(bytes: &[u8], layout: &Layout, limits: Limits) -> Result<Node, TreeError> {
        let mut budget = Budget::new(limits);
        let mut root = Node::empty_directory();
        for entry in &layout.entries {
            let Some(path) = tree_path(entry)? else { continue };
            budget.depth(path_components(path)?.len())?;
            let node = if path.ends_with(b"/") {
                Node::empty_directory()
            } else {
                budget.bytes(entry.size)?;
                Node::File { executable: false, contents: contents(bytes, entry)? }
            };
            budget.node()?;
            for _ in 0..root.insert(path, node)? {
                budget.node()?;
            }
        }
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn truncated_end_records_are_malformed_not_panics() {
        for bytes in [&b"PK\x05\x06PX"[..], b"", b"PK\x05\x06", &[0u8; 21]] {
            assert!(matches!(layout(bytes), Err(TreeError::MalformedZip { .. })), "{bytes:?}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_after_a_local_signature_fail_cleanly(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            end in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let bytes = [LOCAL_SIGNATURE, &body, END_SIGNATURE, &end].concat();
            let _ = Node::from_zip(&bytes, Limits { max_bytes: 1 << 20, max_nodes: 100, max_depth: 16 });
        }
    }
}
