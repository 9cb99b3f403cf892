//! Store paths: `/nix/store/<hash part>-<name>`, and the path Nix gives a fixed output.
//!
//! Quirks, as Nix 2.8 computes them (`nix-store --print-fixed-path` agrees with every case in the
//! tests):
//! - the hash part is 20 bytes in nix32 (32 characters): a sha256 folded to 20 bytes by XOR-ing
//!   byte `i` into byte `i % 20`;
//! - what is hashed is `<type>:sha256:<hex>:/nix/store:<name>`; for a recursive sha256 output the
//!   type is `source` and the hex is the NAR hash itself; for anything else (flat, or another
//!   algorithm) the type is `output:out` and the hex is the sha256 of
//!   `fixed:out:[r:]<algo>:<hex of the hash>:`;
//! - a name is 1 to 211 characters of `A-Za-z0-9+-._?=` and does not start with `.`;
//! - a binary cache names a path's `.narinfo` by the hash part alone.

use std::fmt;

use crate::hashing::{Hash, HashAlgo, HashMode, nix32};

/// The store directory every path here is in: binary caches and sources.json files name paths
/// under it, whatever store a machine uses locally.
pub(crate) const STORE_DIR: &str = "/nix/store";

/// A path in the Nix store.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    digest: [u8; 20],
    name: String,
}

/// Why a string or a name is not a store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store path `{input}`: {reason}")]
pub struct StorePathError {
    pub input: String,
    pub reason: &'static str,
}

impl StorePath {
    /// Reads `/nix/store/<hash part>-<name>`.
    pub(crate) fn parse(input: &str) -> Result<StorePath, StorePathError> {
        let fail = |reason| StorePathError { input: input.to_owned(), reason };
        let base = input
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| fail("it is not under /nix/store/"))?;
        let (hash_part, name) = base.split_once('-').ok_or_else(|| fail("expected <hash>-<name>"))?;
        let digest = nix32::decode(hash_part, 20).map_err(|_| fail("the hash part is not 32 nix32 characters"))?;
        check_name(name).map_err(fail)?;
        Ok(StorePath { digest: digest.try_into().expect("20 bytes decoded"), name: name.to_owned() })
    }

    /// The path of the fixed output named `name` with hash `hash` in `mode`, as Nix makes it.
    pub fn fixed_output(name: &str, hash: &Hash, mode: HashMode) -> Result<StorePath, StorePathError> {
        check_name(name).map_err(|reason| StorePathError { input: name.to_owned(), reason })?;
        let (kind, inner) = match (mode, hash.algo()) {
            (HashMode::Recursive, HashAlgo::Sha256) => ("source", hash.clone()),
            (mode, algo) => {
                let prefix = if mode == HashMode::Recursive { "r:" } else { "" };
                ("output:out", sha256(format!("fixed:out:{prefix}{algo}:{}:", hash.to_hex()).as_bytes()))
            }
        };
        let fingerprint = format!("{kind}:sha256:{}:{STORE_DIR}:{name}", inner.to_hex());
        let mut digest = [0u8; 20];
        for (i, byte) in sha256(fingerprint.as_bytes()).digest().iter().enumerate() {
            digest[i % 20] ^= byte;
        }
        Ok(StorePath { digest, name: name.to_owned() })
    }

    /// The 32 nix32 characters before the name: what a binary cache's `.narinfo` is named by.
    pub(crate) fn hash_part(&self) -> String {
        nix32::encode(&self.digest)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}-{}", self.hash_part(), self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b);
    if name.is_empty() || name.len() > 211 {
        Err("a name is 1 to 211 characters")
    } else if name.starts_with('.') {
        Err("a name does not start with `.`")
    } else if !name.bytes().all(allowed) {
        Err("a name is made of A-Z a-z 0-9 + - . _ ? =")
    } else {
        Ok(())
    }
}

fn sha256(bytes: &[u8]) -> Hash {
    let mut hasher = HashAlgo::Sha256.hasher();
    hasher.update(bytes);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers from Nix 2.8 (`nix-store --print-fixed-path [--recursive] ALGO HASH NAME`).
    #[test]
    fn fixed_output_paths_are_the_ones_nix_prints() {
        for (mode, sri, name, expected) in KNOWN_PATHS {
            let hash = Hash::parse(sri, None).unwrap();
            let path = StorePath::fixed_output(name, &hash, *mode).unwrap();
            assert_eq!(path.to_string(), *expected, "{mode} {sri} {name}");
            assert_eq!(StorePath::parse(expected).unwrap(), path);
        }
    }

    // Made by `scripts/known-answers.sh store-paths`: the hashes of "hello".
    const KNOWN_PATHS: &[(HashMode, &str, &str, &str)] = &[
        (
            HashMode::Flat,
            "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
            "hello-2.12.1.tar.gz",
            "/nix/store/k225j6dh30kihnvbpjskb7fnv2xdwb56-hello-2.12.1.tar.gz",
        ),
        (
            HashMode::Recursive,
            "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
            "source",
            "/nix/store/zkhxzz513cccjis93q2xa1kwr3q4rq7l-source",
        ),
        (
            HashMode::Flat,
            "sha512-m3HSJL1i83hdltRq0+o9czGb+8KJDKra4t/3JRlnPKcjI8PZm6XBHXx6zG4UuMXaDEZjR1wuXDre9G9zvN7AQw==",
            "foo.patch",
            "/nix/store/1pgfbr39icmwnyv8hnxq5l91j801bbnj-foo.patch",
        ),
        (
            HashMode::Recursive,
            "sha1-qvTGHdzF6KLavt4PO0gs2a6pQ00=",
            "git-src",
            "/nix/store/wp1znzylxbzjkf1ypz379plkxa15f6c3-git-src",
        ),
        (HashMode::Flat, "md5-XUFAKrxLKna5cZ2REBfFkg==", "a.txt", "/nix/store/342dzaykcjd3rvij0c30hwxqcgbfwmmg-a.txt"),
    ];

    #[test]
    fn malformed_paths_and_names_say_why() {
        for (input, reason) in [
            ("/usr/bin/env", "not under /nix/store"),
            ("/nix/store/abc", "<hash>-<name>"),
            ("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x", "nix32"),
            ("/nix/store/00000000000000000000000000000000-.hidden", "start with"),
            ("/nix/store/00000000000000000000000000000000-a b", "made of"),
        ] {
            let err = StorePath::parse(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }
}
