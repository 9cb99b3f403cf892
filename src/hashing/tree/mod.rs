//! Trees as a stream of events, so that one walk can feed several consumers.
//!
//! A tree is a file, a symlink or a directory of named trees: exactly what both NAR and git trees
//! can hold (no owners, times, or modes beyond the executable bit). Sources produce the events
//! ([`disk::walk`] for an on-disk tree, [`memory::Node::visit`] for an in-memory one,
//! [`crate::hashing::nar::parse`] for a NAR stream); sinks consume them
//! ([`crate::hashing::nar::NarWriter`], [`crate::hashing::swhid_hasher::SwhidHasher`],
//! [`disk::Restorer`], [`memory::NodeBuilder`]); [`Tee`] feeds two sinks at once.
//!
//! The events of one node, as a grammar:
//!
//! ```text
//! node  = file_start file_data* file_end
//!       | symlink
//!       | directory_start (entry_start node entry_end)* directory_end
//! ```
//!
//! Sources emit directory entries in NAR order (ascending raw name bytes); a sink that needs
//! another order (git) sorts for itself.

pub mod disk;
pub mod memory;
pub mod tarball;
pub(crate) mod zip_archive;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Hash;

/// A consumer of tree events (see the module docs for their order).
pub trait TreeSink {
    /// A regular file of exactly `size` bytes starts; its bytes follow in `file_data` calls.
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError>;
    /// Offers the open file whose `size` bytes are due next, so that the sink can read them
    /// itself (on another thread, say). Returning `true` takes them: the source then goes straight
    /// to `file_end`. The default declines, and the bytes come through `file_data`.
    fn file_handle(&mut self, file: &Arc<File>, path: &Path, size: u64) -> Result<bool, TreeError> {
        let _ = (file, path, size);
        Ok(false)
    }
    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError>;
    fn file_end(&mut self) -> Result<(), TreeError>;
    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError>;
    fn directory_start(&mut self) -> Result<(), TreeError>;
    /// The next node is the directory entry called `name`.
    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError>;
    fn entry_end(&mut self) -> Result<(), TreeError>;
    fn directory_end(&mut self) -> Result<(), TreeError>;
}

impl<S: TreeSink + ?Sized> TreeSink for &mut S {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        (**self).file_start(executable, size)
    }
    fn file_handle(&mut self, file: &Arc<File>, path: &Path, size: u64) -> Result<bool, TreeError> {
        (**self).file_handle(file, path, size)
    }
    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        (**self).file_data(data)
    }
    fn file_end(&mut self) -> Result<(), TreeError> {
        (**self).file_end()
    }
    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        (**self).symlink(target)
    }
    fn directory_start(&mut self) -> Result<(), TreeError> {
        (**self).directory_start()
    }
    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError> {
        (**self).entry_start(name)
    }
    fn entry_end(&mut self) -> Result<(), TreeError> {
        (**self).entry_end()
    }
    fn directory_end(&mut self) -> Result<(), TreeError> {
        (**self).directory_end()
    }
}

/// Feeds every event to two sinks, first `A`, then `B`.
pub struct Tee<A, B> {
    first: A,
    second: B,
    /// For reading a file that one sink takes by handle and the other does not.
    buf: Vec<u8>,
}

impl<A, B> Tee<A, B> {
    pub fn new(first: A, second: B) -> Tee<A, B> {
        Tee { first, second, buf: Vec::new() }
    }

    pub fn into_inner(self) -> (A, B) {
        (self.first, self.second)
    }
}

impl<A: TreeSink, B: TreeSink> TreeSink for Tee<A, B> {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        self.first.file_start(executable, size)?;
        self.second.file_start(executable, size)
    }
    fn file_handle(&mut self, file: &Arc<File>, path: &Path, size: u64) -> Result<bool, TreeError> {
        let first = self.first.file_handle(file, path, size)?;
        let second = self.second.file_handle(file, path, size)?;
        if first == second {
            return Ok(first);
        }
        // One sink took the file and the other did not: read it here for the other, with
        // positioned reads, so that the taker's reads are unaffected.
        let declined: &mut dyn TreeSink = if first { &mut self.second } else { &mut self.first };
        self.buf.resize(256 * 1024, 0);
        disk::read_exactly_at(file, path, size, &mut self.buf, |chunk| declined.file_data(chunk))?;
        Ok(true)
    }
    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        self.first.file_data(data)?;
        self.second.file_data(data)
    }
    fn file_end(&mut self) -> Result<(), TreeError> {
        self.first.file_end()?;
        self.second.file_end()
    }
    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        self.first.symlink(target)?;
        self.second.symlink(target)
    }
    fn directory_start(&mut self) -> Result<(), TreeError> {
        self.first.directory_start()?;
        self.second.directory_start()
    }
    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError> {
        self.first.entry_start(name)?;
        self.second.entry_start(name)
    }
    fn entry_end(&mut self) -> Result<(), TreeError> {
        self.first.entry_end()?;
        self.second.entry_end()
    }
    fn directory_end(&mut self) -> Result<(), TreeError> {
        self.first.directory_end()?;
        self.second.directory_end()
    }
}

/// Which mode bits make a regular file executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutableRule {
    /// The owner's execute bit (`0o100`): Nix's NAR and git's trees.
    Owner,
    /// Any execute bit (`0o111`): `swh-model`'s `from_disk`, hence `swh identify` and SWH's loaders.
    Any,
}

impl ExecutableRule {
    pub(crate) fn is_executable(self, mode: u32) -> bool {
        match self {
            ExecutableRule::Owner => mode & 0o100 != 0,
            ExecutableRule::Any => mode & 0o111 != 0,
        }
    }
}

/// Everything that can go wrong reading, writing or checking a tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot represent {}: it is a {kind}, and NAR and git trees hold only files, directories and symlinks", path.display())]
    UnsupportedType { path: PathBuf, kind: &'static str },
    #[error("failed to read {}: it changed while being read (expected {expected} bytes, found {found})", path.display())]
    ChangedWhileReading { path: PathBuf, expected: u64, found: u64 },
    #[error("failed to write the NAR stream")]
    NarOutput(#[source] io::Error),
    #[error("failed to read the NAR stream")]
    NarInput(#[source] io::Error),
    #[error("malformed NAR at byte {offset}: {reason}")]
    MalformedNar { offset: u64, reason: String },
    #[error("malformed zip file at byte {offset}: {reason}")]
    MalformedZip { offset: u64, reason: String },
    #[error("refusing archive member `{path}`: {reason}")]
    HostileMember { path: String, reason: String },
    #[error("failed to read the archive")]
    Archive(#[source] io::Error),
    #[error("refusing the tree: it exceeds the limit of {limit} {what}")]
    LimitExceeded { what: &'static str, limit: u64 },
    #[error("failed to restore to {}: it already exists", path.display())]
    DestinationExists { path: PathBuf },
    #[error("refusing {event} at {}: it does not fit where the tree is", path.display())]
    EventOutOfOrder { path: PathBuf, event: &'static str },
    #[error("archive member `{path}` is out of NAR order, so the archive cannot be replayed as it is read")]
    NotInNarOrder { path: String },
    #[error("the tree ended before it was complete")]
    Incomplete,
    #[error("failed to start a hashing thread")]
    Thread(#[source] io::Error),
    #[error("hashing was cancelled")]
    Cancelled,
    #[error("hash mismatch: expected {expected}, got {actual}")]
    HashMismatch { expected: Hash, actual: Hash },
}

/// Bounds on what a tree read from untrusted input may hold, so that a decompression bomb or a
/// hostile stream is refused before it fills memory or disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of file contents.
    pub max_bytes: u64,
    /// Number of files, symlinks and directories.
    pub max_nodes: u64,
    /// Directories nested in one another.
    pub max_depth: u64,
}

impl Limits {
    /// No bound: for trees the user already has on disk.
    pub const UNLIMITED: Limits = Limits { max_bytes: u64::MAX, max_nodes: u64::MAX, max_depth: u64::MAX };
}

impl Default for Limits {
    /// Generous for real sources (the largest Nixpkgs tarballs unpack to a few GiB, and no real
    /// tree nests a few hundred levels deep), and small enough that recursion over an in-memory
    /// tree stays far from the stack's end.
    fn default() -> Self {
        Limits { max_bytes: 64 << 30, max_nodes: 10_000_000, max_depth: 512 }
    }
}

/// Counts what a stream has produced so far against [`Limits`].
#[derive(Debug, Default)]
pub(crate) struct Budget {
    limits: Option<Limits>,
    bytes: u64,
    nodes: u64,
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Budget {
        Budget { limits: Some(limits), bytes: 0, nodes: 0 }
    }

    pub(crate) fn node(&mut self) -> Result<(), TreeError> {
        self.nodes += 1;
        match self.limits {
            Some(l) if self.nodes > l.max_nodes => {
                Err(TreeError::LimitExceeded { what: "files and directories", limit: l.max_nodes })
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn depth(&self, depth: usize) -> Result<(), TreeError> {
        match self.limits {
            Some(l) if depth as u64 > l.max_depth => {
                Err(TreeError::LimitExceeded { what: "nested directories", limit: l.max_depth })
            }
            _ => Ok(()),
        }
    }

    /// How many bytes of archive input can hold what the limits allow: contents, plus a
    /// generous 2 KiB of headers, names and padding per node.
    pub(crate) fn input_cap(&self) -> u64 {
        self.limits.map_or(u64::MAX, |l| l.max_bytes.saturating_add(l.max_nodes.saturating_mul(2048)))
    }

    pub(crate) fn bytes(&mut self, n: u64) -> Result<(), TreeError> {
        self.bytes = self.bytes.saturating_add(n);
        match self.limits {
            Some(l) if self.bytes > l.max_bytes => {
                Err(TreeError::LimitExceeded { what: "bytes of file contents", limit: l.max_bytes })
            }
            _ => Ok(()),
        }
    }
}

/// Why a directory entry name cannot stand in a NAR or on disk, if it cannot.
pub(crate) fn invalid_name_reason(name: &[u8]) -> Option<&'static str> {
    match name {
        b"" => Some("the name is empty"),
        b"." | b".." => Some("the name is `.` or `..`"),
        _ if name.contains(&b'/') => Some("the name contains `/`"),
        _ if name.contains(&0) => Some("the name contains a NUL byte"),
        _ => None,
    }
}

/// The components of a relative path (an archive member's, say), with `.` and empty ones dropped; refuses absolute paths,
/// `..` and names no tree can hold.
pub(crate) fn path_components(path: &[u8]) -> Result<Vec<&[u8]>, TreeError> {
    let hostile = |reason: &str| TreeError::HostileMember {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.to_owned(),
    };
    if path.first() == Some(&b'/') {
        return Err(hostile("the path is absolute"));
    }
    let components: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    if components.contains(&&b".."[..]) {
        return Err(hostile("the path contains `..`"));
    }
    if let Some(bad) = components.iter().find_map(|c| invalid_name_reason(c)) {
        return Err(hostile(bad));
    }
    Ok(components)
}
