//! Tar streams as trees: the checks every member goes through, and a replay of a stream as tree
//! events while it is read, for streams whose members already come in NAR order.
//!
//! Quirks:
//! - NAR order is depth-first with every directory's entries in ascending raw name bytes; the
//!   vault's bundles have it (Python's `tarfile` adds a directory's entries sorted), GNU tar's
//!   archives generally do not (it follows the order of `readdir`). [`replay_in_nar_order`]
//!   stops with [`TreeError::NotInNarOrder`] at the first member out of place, and the caller
//!   reads the stream again into memory ([`super::memory::Node::from_tar`]), which takes any order;
//! - a hard link needs the bytes of an earlier member, which a replay no longer has: it counts
//!   as out of order too;
//! - every member name is checked as in [`super::memory`]: no absolute paths, no `..`, no empty
//!   or NUL-holding names, no over-long paths or link targets, no devices or FIFOs.

use std::io::Read;

use super::{Budget, ExecutableRule, Limits, TreeError, TreeSink, path_components};
use crate::hashing::nar::MAX_NAME_LEN;

/// What a tar member holds, once checked.
pub(super) enum Member {
    File {
        executable: bool,
        size: u64,
    },
    Directory,
    Symlink {
        target: Vec<u8>,
    },
    /// A hard link to the earlier member at this path.
    HardLink {
        target: Vec<u8>,
    },
}

/// Reads a member's header: its raw path and what it is, or `None` for a member that holds no
/// node (a pax global header). Refuses what no tree can hold.
pub(super) fn classify<R: Read>(
    member: &tar::Entry<'_, R>,
    executable: ExecutableRule,
) -> Result<Option<(Vec<u8>, Member)>, TreeError> {
    let path = member.path_bytes().into_owned();
    let shown = || String::from_utf8_lossy(&path).into_owned();
    let link = member.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
    if path.len() as u64 > MAX_NAME_LEN || link.len() as u64 > MAX_NAME_LEN {
        return Err(TreeError::HostileMember {
            path: shown().chars().take(100).collect::<String>() + "…",
            reason: format!("its path or link target is longer than {MAX_NAME_LEN} bytes"),
        });
    }
    let header = member.header();
    let kind = header.entry_type();
    let node = match kind {
        tar::EntryType::XGlobalHeader => return Ok(None),
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let mode = header.mode().map_err(TreeError::Archive)?;
            Member::File { executable: executable.is_executable(mode), size: member.size() }
        }
        tar::EntryType::Directory => Member::Directory,
        tar::EntryType::Symlink => {
            if link.is_empty() || link.contains(&0) {
                return Err(TreeError::HostileMember {
                    path: shown(),
                    reason: "a symlink target is empty or contains a NUL byte".into(),
                });
            }
            Member::Symlink { target: link }
        }
        tar::EntryType::Link => Member::HardLink { target: link },
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            return Err(TreeError::HostileMember {
                path: shown(),
                reason: format!("it is a {kind:?}: devices and FIFOs cannot be archived"),
            });
        }
        other => {
            return Err(TreeError::HostileMember {
                path: shown(),
                reason: format!("unsupported member type {other:?} (only files, directories, symlinks and hard links)"),
            });
        }
    };
    Ok(Some((path, node)))
}

/// A reader that fails once more than `remaining` bytes have been asked of it: the tar crate
/// reads long names and pax headers whole, so a hostile header must not get past the limits.
pub(super) struct CappedReader<R> {
    pub(super) inner: R,
    pub(super) remaining: u64,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Err(std::io::Error::other("the archive is larger than the limits allow"));
        }
        let want = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A directory open in the replay.
struct OpenDirectory {
    name: Vec<u8>,
    /// The last entry replayed in it, which the next must sort after.
    last_entry: Option<Vec<u8>>,
}

/// Replays the tree that a tar stream holds under the top directory `root` (a single path
/// component, such as the vault's `swh:1:dir:…`) as events to `sink`, reading each member once.
/// Members outside `root` are refused; members out of NAR order stop the replay with
/// [`TreeError::NotInNarOrder`], after which `sink` has seen only part of the tree.
pub fn replay_in_nar_order(
    reader: impl Read,
    root: &[u8],
    limits: Limits,
    executable: ExecutableRule,
    sink: &mut impl TreeSink,
) -> Result<(), TreeError> {
    let mut budget = Budget::new(limits);
    let mut archive = tar::Archive::new(CappedReader { inner: reader, remaining: budget.input_cap() });
    // The open directories: the root first, innermost last.
    let mut open: Vec<OpenDirectory> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    for member in archive.entries().map_err(TreeError::Archive)? {
        let mut member = member.map_err(TreeError::Archive)?;
        let Some((path, node)) = classify(&member, executable)? else { continue };
        let out_of_order = || TreeError::NotInNarOrder { path: String::from_utf8_lossy(&path).into_owned() };
        let all = path_components(&path)?;
        let Some((top, below)) = all.split_first() else { return Err(out_of_order()) };
        if *top != root {
            return Err(TreeError::HostileMember {
                path: String::from_utf8_lossy(&path).into_owned(),
                reason: format!("it lies outside the top directory `{}`", String::from_utf8_lossy(root)),
            });
        }
        budget.depth(below.len())?;
        budget.node()?;
        let Some((name, parents)) = below.split_last() else {
            // The top directory itself: it must come first, and only once.
            if !open.is_empty() || !matches!(node, Member::Directory) {
                return Err(out_of_order());
            }
            sink.directory_start()?;
            open.push(OpenDirectory { name: root.to_vec(), last_entry: None });
            continue;
        };
        if open.is_empty() {
            return Err(out_of_order());
        }
        // Close the directories this member is not in; its parent must then be the innermost
        // one still open (a directory's member comes before its entries).
        let shared = open[1..].iter().zip(parents.iter()).take_while(|(dir, name)| dir.name == **name).count();
        while open.len() > shared + 1 {
            open.pop();
            sink.directory_end()?;
            sink.entry_end()?;
        }
        if shared != parents.len() {
            return Err(out_of_order());
        }
        let parent = open.last_mut().expect("the top directory stays open");
        if parent.last_entry.as_deref().is_some_and(|last| last >= *name) {
            return Err(out_of_order());
        }
        parent.last_entry = Some(name.to_vec());
        match node {
            Member::HardLink { .. } => return Err(out_of_order()),
            Member::Directory => {
                sink.entry_start(name)?;
                sink.directory_start()?;
                open.push(OpenDirectory { name: name.to_vec(), last_entry: None });
            }
            Member::Symlink { target } => {
                sink.entry_start(name)?;
                sink.symlink(&target)?;
                sink.entry_end()?;
            }
            Member::File { executable, size } => {
                budget.bytes(size)?;
                sink.entry_start(name)?;
                sink.file_start(executable, size)?;
                let mut left = size;
                while left > 0 {
                    let want = buf.len().min(left.min(usize::MAX as u64) as usize);
                    let n = member.read(&mut buf[..want]).map_err(TreeError::Archive)?;
                    if n == 0 {
                        return Err(TreeError::Archive(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    sink.file_data(&buf[..n])?;
                    left -= n as u64;
                }
                sink.file_end()?;
                sink.entry_end()?;
            }
        }
    }
    if open.is_empty() {
        return Err(TreeError::Incomplete);
    }
    while let Some(_dir) = open.pop() {
        sink.directory_end()?;
        if !open.is_empty() {
            sink.entry_end()?;
        }
    }
    Ok(())
}
