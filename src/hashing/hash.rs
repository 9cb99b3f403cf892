//! A digest with its algorithm, in every spelling Nixpkgs uses.
//!
//! Quirks of the forms met in Nixpkgs and accepted by Nix:
//! - SRI: `sha256-<base64>`, always with `=` padding, never another encoding after the dash;
//! - prefixed: `sha256:<digest>` where the digest may be hex, nix32 or base64;
//! - bare: the algorithm comes from the context (`outputHashAlgo`, the attribute name) and the
//!   encoding from the length alone: for sha256, 64 hex, 52 nix32 or 44 base64 characters.
//!   Lengths of different algorithms collide once: 32 characters are md5 in hex or sha1 in nix32,
//!   so a bare 32-character string needs its algorithm named;
//! - hex is read in either case but printed lowercase (hashed mirrors use lowercase paths);
//! - Nix decodes base64 leniently, and so does this module: an SRI digest may have any number of
//!   `=` (none included), and the unused low bits of the last character need not be zero; a bare
//!   or `algo:` base64 digest must still have the padded length, as Nix tells encodings apart by
//!   length. Printing is always canonical, with padding.

use std::fmt;
use std::str::FromStr;

use std::sync::LazyLock;

use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};

use super::algo::{HashAlgo, UnknownAlgo};
use super::nix32;

/// How a fixed-output hash covers its source (Nix's `outputHashMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashMode {
    /// The bytes of one file (`fetchurl`).
    Flat,
    /// The NAR of a tree (`fetchzip`, `fetchgit`, …).
    Recursive,
}

impl HashMode {
    /// `flat` or `recursive`, as sources.json and Nix spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HashMode::Flat => "flat",
            HashMode::Recursive => "recursive",
        }
    }
}

impl fmt::Display for HashMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hash mode other than `flat` and `recursive`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hash mode {0:?}: expected flat or recursive")]
pub struct UnknownHashMode(pub String);

impl FromStr for HashMode {
    type Err = UnknownHashMode;

    fn from_str(s: &str) -> Result<HashMode, UnknownHashMode> {
        match s {
            "flat" => Ok(HashMode::Flat),
            "recursive" => Ok(HashMode::Recursive),
            _ => Err(UnknownHashMode(s.to_owned())),
        }
    }
}

/// A digest together with the algorithm that produced it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    algo: HashAlgo,
    digest: Vec<u8>,
}

/// A way of writing a digest as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `sha256-<base64>`: Nix's default output and the form of `hash = "…"` in Nixpkgs.
    Sri,
    /// Nix's own base32 (see [`nix32`]).
    Nix32,
    /// Lowercase base16.
    Hex,
    /// Standard base64 with padding, no algorithm prefix.
    Base64,
}

impl Encoding {
    pub(crate) const ALL: [Encoding; 4] = [Encoding::Sri, Encoding::Nix32, Encoding::Hex, Encoding::Base64];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Sri => "sri",
            Encoding::Nix32 => "nix32",
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }

    /// Length of an unprefixed digest of `algo` in this encoding.
    fn bare_len(self, algo: HashAlgo) -> usize {
        let n = algo.digest_len();
        match self {
            Encoding::Hex => 2 * n,
            Encoding::Nix32 => nix32::encoded_len(n),
            Encoding::Base64 | Encoding::Sri => n.div_ceil(3) * 4,
        }
    }
}

/// Why a string is not a valid hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    #[error("invalid hash `{input}`: {source}")]
    UnknownAlgo {
        input: String,
        #[source]
        source: UnknownAlgo,
    },
    #[error("invalid hash `{input}`: it is {found}, but {expected} was expected")]
    AlgoMismatch { input: String, expected: HashAlgo, found: HashAlgo },
    #[error(
        "invalid hash `{input}`: no algorithm is given and {len} characters could be {candidates}; name the algorithm"
    )]
    AlgoUnknown { input: String, len: usize, candidates: String },
    #[error(
        "invalid hash `{input}`: a {algo} hash has {hex} hex, {nix32} nix32 or {base64} base64 characters, not {found}"
    )]
    Length { input: String, algo: HashAlgo, hex: usize, nix32: usize, base64: usize, found: usize },
    #[error("invalid hash `{input}`: an SRI hash for {algo} needs {expected} base64 characters, found {found}")]
    SriLength { input: String, algo: HashAlgo, expected: usize, found: usize },
    #[error("invalid hash `{input}`: not valid {encoding}: {reason}")]
    Alphabet { input: String, encoding: &'static str, reason: String },
}

impl Hash {
    /// Wraps a raw digest; `None` if its length does not fit `algo`.
    pub fn from_digest(algo: HashAlgo, digest: &[u8]) -> Option<Hash> {
        (digest.len() == algo.digest_len()).then(|| Hash { algo, digest: digest.to_vec() })
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub(crate) fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// Parses any form Nix accepts. `expected` is the algorithm the context implies
    /// (`outputHashAlgo`, `sha256 = …`); a prefix that names another one is an error, and a bare
    /// digest needs it unless its length leaves only one algorithm.
    pub fn parse(input: &str, expected: Option<HashAlgo>) -> Result<Hash, HashParseError> {
        let prefixed = |sep: char| {
            let (name, rest) = input.split_once(sep)?;
            Some((name, rest))
        };
        if let Some((name, rest)) = prefixed(':') {
            let algo = Self::prefix_algo(input, name, expected)?;
            return Self::parse_bare(input, rest, algo);
        }
        if let Some((name, rest)) = prefixed('-') {
            let algo = Self::prefix_algo(input, name, expected)?;
            let want = Encoding::Sri.bare_len(algo);
            let unpadded = rest.trim_end_matches('=');
            if unpadded.len() != unpadded_base64_len(algo.digest_len()) {
                return Err(HashParseError::SriLength {
                    input: input.to_owned(),
                    algo,
                    expected: want,
                    found: rest.chars().count(),
                });
            }
            return Self::decode(input, unpadded, algo, Encoding::Sri);
        }
        let algo = match expected {
            Some(algo) => algo,
            None => Self::algo_from_len(input)?,
        };
        Self::parse_bare(input, input, algo)
    }

    fn prefix_algo(input: &str, name: &str, expected: Option<HashAlgo>) -> Result<HashAlgo, HashParseError> {
        let algo: HashAlgo =
            name.parse().map_err(|source| HashParseError::UnknownAlgo { input: input.to_owned(), source })?;
        match expected {
            Some(want) if want != algo => {
                Err(HashParseError::AlgoMismatch { input: input.to_owned(), expected: want, found: algo })
            }
            _ => Ok(algo),
        }
    }

    fn algo_from_len(input: &str) -> Result<HashAlgo, HashParseError> {
        let len = input.len();
        let mut candidates = Vec::new();
        for algo in HashAlgo::ALL {
            for encoding in [Encoding::Hex, Encoding::Nix32, Encoding::Base64] {
                if encoding.bare_len(algo) == len {
                    candidates.push((algo, encoding));
                }
            }
        }
        match candidates.as_slice() {
            [(algo, _)] => Ok(*algo),
            _ => {
                let described = if candidates.is_empty() {
                    "no known hash".to_owned()
                } else {
                    candidates.iter().map(|(a, e)| format!("{a} in {}", e.name())).collect::<Vec<_>>().join(" or ")
                };
                Err(HashParseError::AlgoUnknown { input: input.to_owned(), len, candidates: described })
            }
        }
    }

    fn parse_bare(input: &str, rest: &str, algo: HashAlgo) -> Result<Hash, HashParseError> {
        let len = rest.len();
        let encoding = [Encoding::Hex, Encoding::Nix32, Encoding::Base64]
            .into_iter()
            .find(|e| e.bare_len(algo) == len)
            .ok_or_else(|| HashParseError::Length {
                input: input.to_owned(),
                algo,
                hex: Encoding::Hex.bare_len(algo),
                nix32: Encoding::Nix32.bare_len(algo),
                base64: Encoding::Base64.bare_len(algo),
                found: rest.chars().count(),
            })?;
        Self::decode(input, rest, algo, encoding)
    }

    /// Decodes `text` (for SRI, already stripped of `=`) into a digest of `algo`.
    fn decode(input: &str, text: &str, algo: HashAlgo, encoding: Encoding) -> Result<Hash, HashParseError> {
        let invalid = |encoding: &'static str, reason: String| HashParseError::Alphabet {
            input: input.to_owned(),
            encoding,
            reason,
        };
        let digest = match encoding {
            Encoding::Hex => HEXLOWER_PERMISSIVE.decode(text.as_bytes()).map_err(|e| invalid("hex", e.to_string()))?,
            Encoding::Nix32 => {
                nix32::decode(text, algo.digest_len()).map_err(|e| invalid("Nix base32", e.to_string()))?
            }
            Encoding::Base64 | Encoding::Sri => LENIENT_BASE64
                .decode(text.trim_end_matches('=').as_bytes())
                .map_err(|e| invalid("base64", e.to_string()))?,
        };
        Hash::from_digest(algo, &digest).ok_or_else(|| {
            invalid(encoding_name(encoding), format!("it decodes to {} bytes, not {}", digest.len(), algo.digest_len()))
        })
    }

    /// Prints the digest in `encoding`; only [`Encoding::Sri`] includes the algorithm.
    pub fn encode(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Sri => format!("{}-{}", self.algo, BASE64.encode(&self.digest)),
            Encoding::Nix32 => nix32::encode(&self.digest),
            Encoding::Hex => data_encoding::HEXLOWER.encode(&self.digest),
            Encoding::Base64 => BASE64.encode(&self.digest),
        }
    }

    pub fn to_sri(&self) -> String {
        self.encode(Encoding::Sri)
    }

    pub fn to_hex(&self) -> String {
        self.encode(Encoding::Hex)
    }

    pub fn to_nix32(&self) -> String {
        self.encode(Encoding::Nix32)
    }
}

/// Base64 as Nix reads it: no padding required, unused trailing bits ignored.
static LENIENT_BASE64: LazyLock<data_encoding::Encoding> = LazyLock::new(|| {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
    spec.check_trailing_bits = false;
    spec.encoding().expect("the standard base64 alphabet is a valid specification")
});

/// Characters of unpadded base64 for `n` bytes.
fn unpadded_base64_len(n: usize) -> usize {
    (n * 8).div_ceil(6)
}

fn encoding_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Hex => "hex",
        Encoding::Nix32 => "Nix base32",
        Encoding::Base64 | Encoding::Sri => "base64",
    }
}

/// Parses with no expected algorithm: SRI, `algo:…`, or a bare digest whose length is unambiguous.
impl FromStr for Hash {
    type Err = HashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::parse(s, None)
    }
}

/// Displays as SRI.
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_sri())
    }
}

/// The error for a name that is not one of the [`Encoding`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hash format `{0}` (expected sri, nix32, hex or base64)")]
pub struct UnknownEncoding(pub String);

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Encoding::ALL.into_iter().find(|e| e.name() == s).ok_or_else(|| UnknownEncoding(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_hash() -> impl Strategy<Value = Hash> {
        proptest::sample::select(HashAlgo::ALL.to_vec()).prop_flat_map(|algo| {
            proptest::collection::vec(any::<u8>(), algo.digest_len())
                .prop_map(move |d| Hash::from_digest(algo, &d).unwrap())
        })
    }

    proptest! {
        #[test]
        fn every_encoding_round_trips(hash in any_hash()) {
            for encoding in Encoding::ALL {
                let text = hash.encode(encoding);
                prop_assert_eq!(Hash::parse(&text, Some(hash.algo())).unwrap(), hash.clone());
                let prefixed = format!("{}:{}", hash.algo(), text);
                if encoding != Encoding::Sri {
                    prop_assert_eq!(Hash::parse(&prefixed, None).unwrap(), hash.clone());
                }
            }
            prop_assert_eq!(Hash::parse(&hash.to_sri(), None).unwrap(), hash.clone());
            let upper = hash.to_hex().to_uppercase();
            prop_assert_eq!(Hash::parse(&upper, Some(hash.algo())).unwrap(), hash);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,140}") {
            let _ = Hash::parse(&s, None);
            let _ = Hash::parse(&s, Some(HashAlgo::Sha256));
        }
    }

    #[test]
    fn base64_is_read_as_leniently_as_nix_reads_it() {
        // Each of these is accepted by `nix hash to-base16` (Nix 2.8) as the empty string's sha256.
        let empty = Hash::parse("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", None).unwrap();
        for lenient in [
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=",
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU==",
            "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=",
        ] {
            assert_eq!(Hash::parse(lenient, None).unwrap(), empty, "{lenient}");
        }
        // Nix refuses these: a bare digest without padding has no known length, and a short SRI.
        assert!(Hash::parse("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", Some(HashAlgo::Sha256)).is_err());
        assert!(Hash::parse("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSu", None).is_err());
    }

    #[test]
    fn contradicting_algorithm_is_an_error() {
        let sri = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let err = Hash::parse(sri, Some(HashAlgo::Sha512)).unwrap_err();
        assert!(matches!(err, HashParseError::AlgoMismatch { .. }), "{err}");
        assert!(err.to_string().contains("sha512 was expected"), "{err}");
    }

    #[test]
    fn ambiguous_bare_length_asks_for_the_algorithm() {
        let err = Hash::parse(&"0".repeat(32), None).unwrap_err();
        assert!(err.to_string().contains("md5 in hex or sha1 in nix32"), "{err}");
        assert_eq!(Hash::parse(&"0".repeat(32), Some(HashAlgo::Md5)).unwrap().algo(), HashAlgo::Md5);
    }

    #[test]
    fn bad_lengths_and_alphabets_are_named() {
        let err = Hash::parse("abc", Some(HashAlgo::Sha256)).unwrap_err();
        assert!(err.to_string().contains("64 hex, 52 nix32 or 44 base64 characters, not 3"), "{err}");
        let err = Hash::parse(&"g".repeat(64), Some(HashAlgo::Sha256)).unwrap_err();
        assert!(err.to_string().contains("not valid hex"), "{err}");
        let err = Hash::parse("sha256-abc", None).unwrap_err();
        assert!(err.to_string().contains("needs 44 base64 characters"), "{err}");
        let err = Hash::parse("sha3-abc", None).unwrap_err();
        assert!(err.to_string().contains("unknown hash algorithm `sha3`"), "{err}");
    }
}
