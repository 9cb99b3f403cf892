//! Nix's base32 encoding ("nix32").
//!
//! Quirks, as `nix-hash --to-base32` shows them:
//! - the alphabet is `0123456789abcdfghijklmnpqrsvwxyz`: no `e`, `o`, `t` or `u`;
//! - there is no padding; `n` bytes take `ceil(8n / 5)` characters (52 for sha256, 103 for sha512);
//! - the digest is read as one little-endian number and printed most significant 5-bit group
//!   first, so the first character comes from the high bits of the LAST byte: this is not RFC 4648
//!   base32 with another alphabet;
//! - a string whose leading character carries bits beyond the digest's length is invalid (Nix
//!   rejects it), so every digest has exactly one spelling.

/// The 32 characters, by value.
pub(crate) const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Number of characters that encode `byte_len` bytes.
pub(crate) fn encoded_len(byte_len: usize) -> usize {
    (byte_len * 8).div_ceil(5)
}

/// Encodes `bytes` the way Nix prints base32 hashes.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let low = bytes[i] >> j;
        let high = match bytes.get(i + 1) {
            Some(&next) if j > 3 => next << (8 - j),
            _ => 0,
        };
        out.push(ALPHABET[usize::from((low | high) & 0x1f)] as char);
    }
    out
}

/// Why a string is not valid nix32 for a given digest length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Nix32Error {
    #[error("expected {expected} base32 characters, found {found}")]
    Length { expected: usize, found: usize },
    #[error("`{0}` is not a Nix base32 character (the alphabet has no e, o, t or u)")]
    Character(char),
    #[error("the leading character encodes bits beyond the digest's length")]
    Overflow,
}

/// Decodes a nix32 string into exactly `byte_len` bytes.
pub(crate) fn decode(s: &str, byte_len: usize) -> Result<Vec<u8>, Nix32Error> {
    let expected = encoded_len(byte_len);
    if s.len() != expected {
        return Err(Nix32Error::Length { expected, found: s.chars().count() });
    }
    let mut out = vec![0u8; byte_len];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == c).ok_or_else(|| Nix32Error::Character(char::from(c)))? as u16;
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        out[i] |= (digit << j) as u8;
        let carry = (digit << j) >> 8;
        if i + 1 < byte_len {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(Nix32Error::Overflow);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_every_length(bytes in proptest::collection::vec(any::<u8>(), 0..=80)) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), encoded_len(bytes.len()));
            prop_assert_eq!(decode(&text, bytes.len()).unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(s in "[0-9a-z]{0,110}", len in 0usize..70) {
            let _ = decode(&s, len);
        }
    }

    #[test]
    fn leading_overflow_is_rejected() {
        // 52 characters hold 260 bits; the top 4 bits must be zero for a 256-bit digest.
        let mut s = "0".repeat(52);
        s.replace_range(0..1, "z");
        assert_eq!(decode(&s, 32), Err(Nix32Error::Overflow));
        s.replace_range(0..1, "1");
        assert!(decode(&s, 32).is_ok());
    }

    #[test]
    fn foreign_characters_are_named() {
        let s = format!("e{}", "0".repeat(51));
        assert_eq!(decode(&s, 32), Err(Nix32Error::Character('e')));
    }
}
