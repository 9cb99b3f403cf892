//! The gzip layer of a recipe.
//!
//! A gzip file is one or more members, each a header (magic, method, flags, mtime, extra flags,
//! OS, then optional extra field, file name, comment and header CRC), a raw deflate stream, and a
//! trailer (CRC-32 and length of the member's data, mod 2^32); some files carry zero bytes or
//! other trailing garbage after the last member. Headers and anything after the last member are
//! kept as they are (a few bytes). The deflate stream is kept as the encoder that wrote it (see
//! [`super::deflate`]). Trailers are recomputed and kept only where they differ.
//!
//! Format version 1 kept every stream as preflate corrections; such layers still decode (see
//! [`super::CompressionWire`]).

use serde::{Deserialize, Serialize};

use super::deflate::{self, Deflate};
use super::{MAX_PLAIN, OutOfBounds, RecipeError};

const MAX_MEMBERS: usize = MAX_PLAIN / (64 << 10);

/// How to rebuild a gzip file from its uncompressed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GzipLayer {
    #[serde(deserialize_with = "super::bounded::vec")]
    pub members: Vec<GzipMember>,
    /// Bytes after the last member.
    pub trailing: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GzipMember {
    pub header: Vec<u8>,
    /// How many bytes of the uncompressed stream this member holds.
    pub plain_len: u64,
    pub deflate: Deflate,
    /// The trailer, where it is not the CRC-32 and length of the member's data.
    pub trailer: Option<Vec<u8>>,
}

/// A gzip member as format version 1 kept it: the deflate stream as preflate corrections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GzipMemberV1 {
    pub header: Vec<u8>,
    pub plain_len: u64,
    pub corrections: Vec<u8>,
    pub trailer: Option<Vec<u8>>,
}

/// A gzip layer as format version 1 kept it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GzipLayerV1 {
    #[serde(deserialize_with = "super::bounded::vec")]
    pub members: Vec<GzipMemberV1>,
    pub trailing: Vec<u8>,
}

impl From<GzipLayerV1> for GzipLayer {
    fn from(old: GzipLayerV1) -> GzipLayer {
        let members = old
            .members
            .into_iter()
            .map(|m| GzipMember {
                header: m.header,
                plain_len: m.plain_len,
                deflate: Deflate::Preflate { corrections: m.corrections },
                trailer: m.trailer,
            })
            .collect();
        GzipLayer { members, trailing: old.trailing }
    }
}

fn header_len(bytes: &[u8]) -> Result<usize, RecipeError> {
    let short = || RecipeError::Unsupported("gzip: the header is cut short".into());
    if bytes.len() < 10 || bytes[0..2] != [0x1f, 0x8b] {
        return Err(RecipeError::Unsupported("gzip: no gzip magic".into()));
    }
    if bytes[2] != 8 {
        return Err(RecipeError::Unsupported(format!("gzip: compression method {} is not deflate", bytes[2])));
    }
    let flags = bytes[3];
    let mut pos = 10;
    if flags & 0x04 != 0 {
        let xlen = usize::from(u16::from_le_bytes([
            *bytes.get(pos).ok_or_else(short)?,
            *bytes.get(pos + 1).ok_or_else(short)?,
        ]));
        pos += 2 + xlen;
    }
    for flag in [0x08, 0x10] {
        if flags & flag != 0 {
            let nul = bytes.get(pos..).and_then(|rest| rest.iter().position(|&b| b == 0)).ok_or_else(short)?;
            pos += nul + 1;
        }
    }
    if flags & 0x02 != 0 {
        pos += 2;
    }
    if pos > bytes.len() { Err(short()) } else { Ok(pos) }
}

fn trailer_of(plain: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(plain);
    let mut trailer = crc.sum().to_le_bytes().to_vec();
    trailer.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    trailer
}

impl GzipLayer {
    /// Models the gzip file `bytes`; returns the layer and the uncompressed bytes, refused past
    /// `limit` of them.
    pub(crate) fn create(bytes: &[u8], limit: usize) -> Result<(GzipLayer, Vec<u8>), RecipeError> {
        let mut members = Vec::new();
        let mut plain = Vec::new();
        let mut pos = 0;
        while bytes.len() - pos >= 18 && bytes[pos..pos + 2] == [0x1f, 0x8b] {
            let header_end = pos + header_len(&bytes[pos..])?;
            let (text, deflate_len) = deflate::inflate(&bytes[header_end..], limit - plain.len())
                .map_err(|why| RecipeError::Unsupported(format!("gzip: {why}")))?;
            let deflate_end = header_end + deflate_len;
            let name = format!("the gzip member at byte {pos}");
            let deflate = deflate::model(&text, &bytes[header_end..deflate_end], &name)?;
            let trailer = bytes
                .get(deflate_end..deflate_end + 8)
                .ok_or_else(|| RecipeError::Unsupported("gzip: a member has no trailer".into()))?;
            members.push(GzipMember {
                header: bytes[pos..header_end].to_vec(),
                plain_len: text.len() as u64,
                deflate,
                trailer: (trailer != trailer_of(&text)).then(|| trailer.to_vec()),
            });
            // Most files have one member: moved, not copied, so the stream is held once.
            if plain.is_empty() {
                plain = text;
            } else {
                plain.extend_from_slice(&text);
            }
            if plain.len() > limit {
                return Err(RecipeError::Unsupported(format!("gzip: it decompresses to more than {limit} bytes")));
            }
            pos = deflate_end + 8;
        }
        if members.is_empty() {
            return Err(RecipeError::Unsupported("gzip: no member".into()));
        }
        Ok((GzipLayer { members, trailing: bytes[pos..].to_vec() }, plain))
    }

    /// Within what real files need: bgzip writes the most members, one per 64 KiB.
    pub(super) fn check_shape(&self) -> Result<(), OutOfBounds> {
        if self.members.len() > MAX_MEMBERS {
            return Err(OutOfBounds(format!("gzip: {} members, more than {MAX_MEMBERS}", self.members.len())));
        }
        Ok(())
    }

    /// Recompresses `plain` exactly as the original file was.
    pub(crate) fn apply(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecipeError> {
        let texts = super::split_by_lengths(plain, self.members.iter().map(|m| m.plain_len), "gzip members")?;
        for (member, text) in self.members.iter().zip(texts) {
            out.extend_from_slice(&member.header);
            let deflate = deflate::recreate(text, &member.deflate)?;
            out.extend_from_slice(&deflate);
            out.extend_from_slice(member.trailer.as_deref().unwrap_or(&trailer_of(text)));
        }
        out.extend_from_slice(&self.trailing);
        Ok(())
    }
}
