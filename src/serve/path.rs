//! The request paths hashed-mirror clients send, read into the hash they ask for.
//!
//! Quirks of the clients:
//! - Nix's builtin fetchurl asks `/<algo>/<hex>`, always lowercase hex;
//! - nixpkgs' stdenv builder (`builder.sh`) asks `/<outputHashAlgo>/<outputHash>` with the hash
//!   as the expression wrote it: hex, Nix base32, base64, or, for an SRI `hash`, an empty algo
//!   and the SRI string, `//sha256-<base64>`;
//! - base64 may hold `/` and `+`, sent unescaped: everything after the algo is the hash;
//! - Guix asks `/file/<name>/<algo>/<nix32>`: the hash is what counts; the name, with the hash,
//!   also makes the store path a Nix binary cache may keep the file under.

use crate::hashing::{Hash, HashAlgo};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requested {
    pub hash: Hash,
    /// The file's name, where the path gives one (Guix's form).
    pub name: Option<String>,
}

/// Why a path names no hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} names no hash: {why}")]
pub(crate) struct PathError {
    pub path: String,
    pub why: String,
}

/// What a request path (percent-decoded, without the leading `/`) asks for.
pub(crate) fn requested(path: &str) -> Result<Requested, PathError> {
    let error = |why: &str| PathError { path: format!("/{path}"), why: why.to_owned() };
    let (name, algo, rest) = if let Some(guix) = path.strip_prefix("file/") {
        let mut parts = guix.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(name), Some(algo), Some(hash)) if !hash.contains('/') => (Some(name.to_owned()), algo, hash),
            _ => return Err(error("a Guix path is /file/<name>/<algo>/<nix32>")),
        }
    } else {
        let (algo, rest) = path.split_once('/').ok_or_else(|| error("expected /<algo>/<hash>"))?;
        (None, algo, rest)
    };
    let hash = if algo.is_empty() {
        // `//sha256-<base64>`: the hash says its own algorithm.
        Hash::parse(rest, None).map_err(|e| error(&e.to_string()))?
    } else {
        let algo: HashAlgo = algo.parse().map_err(|_| error(&format!("unknown hash algorithm {algo:?}")))?;
        Hash::parse(rest, Some(algo)).map_err(|e| error(&e.to_string()))?
    };
    Ok(Requested { hash, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_spelling_gives_the_same_hash() {
        // `nix hash to-base32` and `nix hash to-sri` of the sha256 of "hello\n".
        let hex = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        let nix32 = "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq";
        let sri = "sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=";
        let expected = Hash::parse(hex, Some(HashAlgo::Sha256)).unwrap();
        for path in [
            format!("sha256/{hex}"),
            format!("sha256/{nix32}"),
            format!("sha256/{}", &sri["sha256-".len()..]),
            format!("/{sri}"),
            format!("file/hello.txt/sha256/{nix32}"),
        ] {
            let named = path.starts_with("file/").then(|| "hello.txt".to_owned());
            assert_eq!(requested(&path).unwrap().name, named, "{path}");
            assert_eq!(requested(&path).map(|r| r.hash), Ok(expected.clone()), "{path}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_path_is_read_or_refused_without_panicking(path in "\\PC{0,200}") {
            let _ = requested(&path);
        }
    }

    #[test]
    fn paths_without_a_hash_say_why() {
        for (path, why) in [
            ("favicon.ico", "expected /<algo>/<hash>"),
            ("sha3/abcd", "unknown hash algorithm"),
            ("sha256/abcd", "sha256"),
            ("file/x/sha256", "a Guix path"),
        ] {
            let err = requested(path).unwrap_err();
            assert!(err.to_string().contains(why), "{path}: {err}");
        }
    }
}
