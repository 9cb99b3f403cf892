//! In-memory trees: built from paths and contents (as an archive's members arrive, in any
//! order), from a tar stream, or from tree events; replayed as events in NAR order.
//!
//! Quirks of reading tar archives:
//! - member paths may start with `./` and may repeat; a later member replaces an earlier one,
//!   as `tar -x` does, except that a directory met again keeps its contents;
//! - absolute paths, `..` components and paths that pass through a symlink are refused, never
//!   resolved;
//! - hard links become copies of their target, which must be an earlier regular file;
//! - pax global headers (`git archive` writes one) carry no member and are skipped; devices and
//!   FIFOs are refused.

use std::collections::BTreeMap;
use std::io::Read;

use super::tarball::{CappedReader, Member, classify};
use super::{Budget, ExecutableRule, Limits, TreeError, TreeSink, path_components};
use crate::hashing::nar::NarWriter;
use crate::hashing::swhid_hasher::SwhidHasher;
use crate::hashing::{Hash, HashAlgo, Swhid};

/// A tree held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File { executable: bool, contents: Vec<u8> },
    Symlink { target: Vec<u8> },
    Directory(Entries),
}

/// A directory's entries by name, hence in NAR order (raw name bytes).
pub(crate) type Entries = BTreeMap<Vec<u8>, Node>;

impl Node {
    pub fn empty_directory() -> Node {
        Node::Directory(BTreeMap::new())
    }

    /// Replays the tree into `sink`.
    pub fn visit(&self, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        match self {
            Node::File { executable, contents } => {
                sink.file_start(*executable, contents.len() as u64)?;
                sink.file_data(contents)?;
                sink.file_end()
            }
            Node::Symlink { target } => sink.symlink(target),
            Node::Directory(entries) => {
                sink.directory_start()?;
                for (name, node) in entries {
                    sink.entry_start(name)?;
                    node.visit(sink)?;
                    sink.entry_end()?;
                }
                sink.directory_end()
            }
        }
    }

    /// The NAR hash of this tree.
    pub fn nar_hash(&self, algo: HashAlgo) -> Hash {
        let mut writer = NarWriter::new(algo.hasher()).expect("hashing cannot fail to write");
        self.visit(&mut writer).expect("hashing cannot fail to write");
        writer.into_inner().finish()
    }

    /// The SWHID of this tree (`swh:1:dir:` for a directory, `swh:1:cnt:` otherwise).
    pub fn swhid(&self) -> Swhid {
        let mut hasher = SwhidHasher::new();
        self.visit(&mut hasher).expect("hashing an in-memory tree cannot fail");
        hasher.finish().expect("an in-memory tree is complete").0
    }

    /// Puts `node` at the `/`-separated relative `path` below this directory, creating
    /// intermediate directories, and returns how many it created. A leading `./` and repeated or
    /// trailing `/` are ignored.
    pub fn insert(&mut self, path: &[u8], node: Node) -> Result<usize, TreeError> {
        let hostile = |reason: &str| TreeError::HostileMember {
            path: String::from_utf8_lossy(path).into_owned(),
            reason: reason.to_owned(),
        };
        let components = path_components(path)?;
        let Some((last, parents)) = components.split_last() else {
            // The archive's root itself: only a directory can stand there.
            return match node {
                Node::Directory(_) => Ok(0),
                _ => Err(hostile("a file cannot replace the root directory")),
            };
        };
        let mut dir = self;
        let mut created = 0;
        for component in parents {
            let Node::Directory(entries) = dir else {
                return Err(hostile("the path passes through a file or symlink"));
            };
            dir = entries.entry(component.to_vec()).or_insert_with(|| {
                created += 1;
                Node::empty_directory()
            });
        }
        let Node::Directory(entries) = dir else {
            return Err(hostile("the path passes through a file or symlink"));
        };
        match (entries.get_mut(*last), node) {
            (Some(Node::Directory(_)), Node::Directory(_)) => {}
            (_, node) => {
                entries.insert(last.to_vec(), node);
            }
        }
        Ok(created)
    }

    /// The node at a `/`-separated relative path, if there is one.
    pub(crate) fn get(&self, path: &[u8]) -> Option<&Node> {
        path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").try_fold(
            self,
            |node, component| match node {
                Node::Directory(entries) => entries.get(component),
                _ => None,
            },
        )
    }

    /// Reads every member of a tar stream into a directory node (see the module docs), refusing
    /// archives past `limits`; `executable` says which mode bits count.
    pub fn from_tar(reader: impl Read, limits: Limits, executable: ExecutableRule) -> Result<Node, TreeError> {
        let mut budget = Budget::new(limits);
        // The tar crate reads long names and pax headers whole: cap the input, so that a hostile
        // header cannot take more memory than the limits allow for contents.
        let mut archive = tar::Archive::new(CappedReader { inner: reader, remaining: budget.input_cap() });
        let mut root = Node::empty_directory();
        for member in archive.entries().map_err(TreeError::Archive)? {
            let mut member = member.map_err(TreeError::Archive)?;
            let Some((path, member_node)) = classify(&member, executable)? else { continue };
            budget.depth(path_components(&path)?.len())?;
            let node = match member_node {
                Member::File { executable, size } => {
                    budget.bytes(size)?;
                    let mut contents = Vec::with_capacity(size.min(1 << 24) as usize);
                    member.read_to_end(&mut contents).map_err(TreeError::Archive)?;
                    Node::File { executable, contents }
                }
                Member::Directory => Node::empty_directory(),
                Member::Symlink { target } => Node::Symlink { target },
                Member::HardLink { target } => match root.get(&target) {
                    Some(file @ Node::File { contents, .. }) => {
                        budget.bytes(contents.len() as u64)?;
                        file.clone()
                    }
                    _ => {
                        return Err(TreeError::HostileMember {
                            path: String::from_utf8_lossy(&path).into_owned(),
                            reason: format!(
                                "a hard link to `{}`, which is not an earlier regular file",
                                String::from_utf8_lossy(&target)
                            ),
                        });
                    }
                },
            };
            budget.node()?;
            for _ in 0..root.insert(&path, node)? {
                budget.node()?;
            }
        }
        Ok(root)
    }
}

/// Builds a [`Node`] from tree events (for instance from a NAR).
#[derive(Default)]
pub struct NodeBuilder {
    /// Open directories with the name each will have in its parent, innermost last.
    open: Vec<(Option<Vec<u8>>, Entries)>,
    name: Option<Vec<u8>>,
    file: Option<(bool, Vec<u8>)>,
    root: Option<Node>,
}

impl NodeBuilder {
    pub fn new() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// The tree, once complete.
    pub fn finish(self) -> Option<Node> {
        self.root
    }

    fn place(&mut self, name: Option<Vec<u8>>, node: Node) {
        match (self.open.last_mut(), name) {
            (Some((_, entries)), Some(name)) => {
                entries.insert(name, node);
            }
            _ => self.root = Some(node),
        }
    }
}

impl TreeSink for NodeBuilder {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        self.file = Some((executable, Vec::with_capacity(size.min(1 << 24) as usize)));
        Ok(())
    }

    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        self.file.as_mut().expect("file_data comes between file_start and file_end").1.extend_from_slice(data);
        Ok(())
    }

    fn file_end(&mut self) -> Result<(), TreeError> {
        let (executable, contents) = self.file.take().expect("file_end follows file_start");
        let name = self.name.take();
        self.place(name, Node::File { executable, contents });
        Ok(())
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        let name = self.name.take();
        self.place(name, Node::Symlink { target: target.to_vec() });
        Ok(())
    }

    fn directory_start(&mut self) -> Result<(), TreeError> {
        let name = self.name.take();
        self.open.push((name, BTreeMap::new()));
        Ok(())
    }

    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError> {
        self.name = Some(name.to_vec());
        Ok(())
    }

    fn entry_end(&mut self) -> Result<(), TreeError> {
        Ok(())
    }

    fn directory_end(&mut self) -> Result<(), TreeError> {
        let (name, entries) = self.open.pop().expect("directory_end follows directory_start");
        self.place(name, Node::Directory(entries));
        Ok(())
    }
}
