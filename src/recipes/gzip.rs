//! The gzip layer of a recipe.
//!
//! A gzip file is one or more members, each a header (magic, method, flags, mtime, extra flags,
//! OS, then optional extra field, file name, comment and header CRC), a raw deflate stream, and a
//! trailer (CRC-32 and length of the member's data, mod 2^32); some files carry zero bytes or
//! other trailing garbage after the last member. Headers and anything after the last member are
//! kept as they are (a few bytes). The deflate stream is not: the same data compresses to
//! different bytes with every implementation, version and level, so it is kept as preflate's
//! corrections against its prediction of the compressor's choices, which are small for the
//! compressors real tarballs come from (zlib and GNU gzip). Trailers are recomputed and kept
//! only where they differ.

use serde::{Deserialize, Serialize};

use super::{MAX_PLAIN, RecipeError};

/// How to rebuild a gzip file from its uncompressed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GzipLayer {
    pub members: Vec<GzipMember>,
    /// Bytes after the last member.
    pub trailing: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GzipMember {
    pub header: Vec<u8>,
    /// How many bytes of the uncompressed stream this member holds.
    pub plain_len: u64,
    /// preflate's corrections, from which the exact deflate stream is recomputed.
    pub corrections: Vec<u8>,
    /// The trailer, where it is not the CRC-32 and length of the member's data.
    pub trailer: Option<Vec<u8>>,
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
    /// Models the gzip file `bytes`; returns the layer and the uncompressed bytes.
    pub fn create(bytes: &[u8]) -> Result<(GzipLayer, Vec<u8>), RecipeError> {
        let mut members = Vec::new();
        let mut plain = Vec::new();
        let mut pos = 0;
        while bytes.len() - pos >= 18 && bytes[pos..pos + 2] == [0x1f, 0x8b] {
            let header_end = pos + header_len(&bytes[pos..])?;
            let (result, text) = preflate_rs::preflate_whole_deflate_stream(&bytes[header_end..], true, MAX_PLAIN)
                .map_err(|e| {
                    RecipeError::Unsupported(format!("gzip: preflate cannot model the deflate stream: {e:?}"))
                })?;
            let deflate_end = header_end + result.compressed_size;
            let text = text.text();
            let trailer = bytes
                .get(deflate_end..deflate_end + 8)
                .ok_or_else(|| RecipeError::Unsupported("gzip: a member has no trailer".into()))?;
            members.push(GzipMember {
                header: bytes[pos..header_end].to_vec(),
                plain_len: text.len() as u64,
                corrections: result.corrections,
                trailer: (trailer != trailer_of(text)).then(|| trailer.to_vec()),
            });
            plain.extend_from_slice(text);
            if plain.len() > MAX_PLAIN {
                return Err(RecipeError::Unsupported(format!("gzip: it decompresses to more than {MAX_PLAIN} bytes")));
            }
            pos = deflate_end + 8;
        }
        if members.is_empty() {
            return Err(RecipeError::Unsupported("gzip: no member".into()));
        }
        Ok((GzipLayer { members, trailing: bytes[pos..].to_vec() }, plain))
    }

    /// Recompresses `plain` exactly as the original file was.
    pub fn apply(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecipeError> {
        let texts = super::split_by_lengths(plain, self.members.iter().map(|m| m.plain_len), "gzip members")?;
        for (member, text) in self.members.iter().zip(texts) {
            out.extend_from_slice(&member.header);
            let deflate = preflate_rs::recreate_whole_deflate_stream(text, &member.corrections)
                .map_err(|e| RecipeError::Damaged(format!("gzip: preflate cannot recreate a deflate stream: {e:?}")))?;
            out.extend_from_slice(&deflate);
            out.extend_from_slice(member.trailer.as_deref().unwrap_or(&trailer_of(text)));
        }
        out.extend_from_slice(&self.trailing);
        Ok(())
    }
}
