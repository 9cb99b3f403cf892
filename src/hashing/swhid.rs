//! Software Heritage persistent identifiers (SWHIDs), core form `swh:1:<type>:<40 hex>`.
//!
//! Quirks:
//! - the object ids are git's: `cnt` is the sha1 of a git blob (`blob <len>\0<bytes>`; for a
//!   symlink, the bytes are its target), `dir` the sha1 of a git tree, `rev` a commit, `rel` a tag;
//!   `snp` (snapshot) has no git counterpart;
//! - the hex is lowercase; SWH rejects uppercase, so parsing does too;
//! - qualifiers (`;origin=…`) are not part of the core identifier and are refused here.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// The kind of object a SWHID names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    Content,
    Directory,
    Revision,
    Release,
    Snapshot,
}

impl ObjectType {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            ObjectType::Content => "cnt",
            ObjectType::Directory => "dir",
            ObjectType::Revision => "rev",
            ObjectType::Release => "rel",
            ObjectType::Snapshot => "snp",
        }
    }
}

/// A core SWHID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Swhid {
    pub object_type: ObjectType,
    pub id: [u8; 20],
}

/// Why a string is not a core SWHID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SWHID `{input}`: {reason}")]
pub struct SwhidParseError {
    pub input: String,
    pub reason: &'static str,
}

impl Swhid {
    pub fn new(object_type: ObjectType, id: [u8; 20]) -> Swhid {
        Swhid { object_type, id }
    }

    /// The object of this type whose id is `hex` (40 lowercase hex digits, as the API and git
    /// write object ids).
    pub fn from_hex(object_type: ObjectType, hex: &str) -> Result<Swhid, SwhidParseError> {
        format!("swh:1:{}:{hex}", object_type.tag()).parse()
    }

    /// The id as 40 lowercase hex characters (also the git object id).
    pub fn hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.id)
    }
}

impl fmt::Display for Swhid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "swh:1:{}:{}", self.object_type.tag(), self.hex())
    }
}

impl fmt::Debug for Swhid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Swhid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read from its text form, so that whatever is read (an API answer, a recipe, a bridge entry) is
/// a well-formed core SWHID before it goes anywhere, into an API URL say.
impl<'de> serde::Deserialize<'de> for Swhid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Swhid, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Swhid {
    type Err = SwhidParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| SwhidParseError { input: input.to_owned(), reason };
        if input.contains(';') {
            return Err(fail("qualifiers are not accepted here; give the core identifier"));
        }
        let mut parts = input.split(':');
        let (Some(scheme), Some(version), Some(tag), Some(hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("expected swh:1:<type>:<40 hex digits>"));
        };
        if scheme != "swh" {
            return Err(fail("it does not start with `swh:`"));
        }
        if version != "1" {
            return Err(fail("only scheme version 1 exists"));
        }
        let object_type = match tag {
            "cnt" => ObjectType::Content,
            "dir" => ObjectType::Directory,
            "rev" => ObjectType::Revision,
            "rel" => ObjectType::Release,
            "snp" => ObjectType::Snapshot,
            _ => return Err(fail("the object type must be cnt, dir, rev, rel or snp")),
        };
        if hex.len() != 40 {
            return Err(fail("the id must be 40 hex digits"));
        }
        let bytes = data_encoding::HEXLOWER.decode(hex.as_bytes()).map_err(|_| fail("the id must be lowercase hex"))?;
        let mut id = [0u8; 20];
        id.copy_from_slice(&bytes);
        Ok(Swhid { object_type, id })
    }
}

/// Incremental git blob hasher: the content SWHID of bytes whose length is known up front.
pub(crate) struct BlobHasher {
    sha1: Sha1,
    announced: u64,
    fed: u64,
}

impl BlobHasher {
    pub(crate) fn new(len: u64) -> BlobHasher {
        let mut sha1 = Sha1::new();
        sha1.update(format!("blob {len}\0").as_bytes());
        BlobHasher { sha1, announced: len, fed: 0 }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.fed += data.len() as u64;
        self.sha1.update(data);
    }

    /// The content id, or `None` if the bytes fed were not exactly the announced length (the
    /// header already hashed would make any id wrong).
    pub(crate) fn finish(self) -> Option<Swhid> {
        (self.fed == self.announced).then(|| Swhid::new(ObjectType::Content, self.sha1.finalize().into()))
    }
}

/// The content SWHID of `bytes`.
pub fn content_id(bytes: &[u8]) -> Swhid {
    let mut hasher = BlobHasher::new(bytes.len() as u64);
    hasher.update(bytes);
    hasher.finish().expect("length announced is the length fed")
}

/// The content SWHID of everything `reader` yields, which must be exactly `len` bytes.
pub fn content_id_of_reader(mut reader: impl Read, len: u64) -> io::Result<Swhid> {
    let mut hasher = BlobHasher::new(len);
    let mut buf = vec![0u8; 256 * 1024];
    let mut seen = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        seen += n as u64;
        hasher.update(&buf[..n]);
    }
    hasher
        .finish()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("expected {len} bytes, read {seen}")))
}

/// A git tree entry's kind, which fixes its mode string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitMode {
    File,
    Executable,
    Symlink,
    Directory,
}

impl GitMode {
    pub(crate) fn octal(self) -> &'static [u8] {
        match self {
            GitMode::File => b"100644",
            GitMode::Executable => b"100755",
            GitMode::Symlink => b"120000",
            GitMode::Directory => b"40000",
        }
    }
}

/// Computes a git tree id from its entries, in any order: git sorts entries by name bytes with `/`
/// appended to directory names (so `a.b` < `a/` < `a0` for a directory `a`).
pub(crate) fn directory_id(entries: &mut [(Vec<u8>, GitMode, [u8; 20])]) -> Swhid {
    entries.sort_by_cached_key(|(name, mode, _)| git_sort_key(name, *mode));
    let body_len: usize = entries.iter().map(|(name, mode, _)| mode.octal().len() + name.len() + 22).sum();
    let mut sha1 = Sha1::new();
    sha1.update(format!("tree {body_len}\0").as_bytes());
    for (name, mode, id) in entries.iter() {
        sha1.update(mode.octal());
        sha1.update(b" ");
        sha1.update(name);
        sha1.update(b"\0");
        sha1.update(id);
    }
    Swhid::new(ObjectType::Directory, sha1.finalize().into())
}

fn git_sort_key(name: &[u8], mode: GitMode) -> Vec<u8> {
    let mut key = name.to_vec();
    if mode == GitMode::Directory {
        key.push(b'/');
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn print_parse_round_trip(id in any::<[u8; 20]>(), t in 0usize..5) {
            let types = [ObjectType::Content, ObjectType::Directory, ObjectType::Revision, ObjectType::Release, ObjectType::Snapshot];
            let swhid = Swhid::new(types[t], id);
            prop_assert_eq!(swhid.to_string().parse::<Swhid>().unwrap(), swhid);
        }
    }

    #[test]
    fn content_of_another_length_than_announced_has_no_id() {
        for data in [&b"1234"[..], b"123456"] {
            let err = content_id_of_reader(data, 5).unwrap_err();
            assert!(err.to_string().contains(&format!("expected 5 bytes, read {}", data.len())), "{err}");
        }
        assert_eq!(content_id_of_reader(&b"12345"[..], 5).unwrap(), content_id(b"12345"));
    }

    #[test]
    fn malformed_swhids_say_why() {
        for (input, reason) in [
            ("swh:2:cnt:0000000000000000000000000000000000000000", "version 1"),
            ("swh:1:foo:0000000000000000000000000000000000000000", "cnt, dir"),
            ("swh:1:cnt:00", "40 hex"),
            ("swh:1:cnt:ABCDEF0000000000000000000000000000000000", "lowercase"),
            ("swh:1:cnt:0000000000000000000000000000000000000000;origin=x", "qualifiers"),
            ("sha1:1:cnt:0000000000000000000000000000000000000000", "swh:"),
            ("swh:1:cnt", "expected swh:1"),
        ] {
            let err = input.parse::<Swhid>().unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }
}
