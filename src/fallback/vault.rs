//! A directory from the vault's flat bundle: a few requests whatever the tree's size (cook, poll,
//! download), where walking it through the API costs one per directory and per file.
//!
//! Quirks of the bundle: a tar.gz holding the tree under one top folder named by its SWHID
//! (`swh:1:dir:<hex>`); modes 0644 and 0755, symlinks and empty directories kept; a file the
//! archive lacks becomes placeholder text, so what comes out is always verified. Bundles are
//! usually in NAR order, which lets the tree be NAR-hashed while it is unpacked; one that is not
//! is read again into memory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::FetchError;
use super::gunzip::GunzipReader;
use crate::archive::ArchiveClient;
use crate::archive::model::VaultBundle;
use crate::atomic::{rename_no_replace, staging_dir_beside};
use crate::hashing::nar::NarHasher;
use crate::hashing::tree::disk::Restorer;
use crate::hashing::tree::memory::Node;
use crate::hashing::tree::tarball::replay_in_nar_order;
use crate::hashing::tree::{ExecutableRule, Limits, Tee, TreeError};
use crate::hashing::{Hash, HashAlgo, Swhid};

/// Cooks `swhid`'s flat bundle, polling every `poll` (doubling up to a minute), and downloads it
/// into a staging directory beside `out`. Returns the staging directory and the bundle's path.
pub(super) async fn download_flat_bundle(
    archive: &ArchiveClient,
    swhid: &Swhid,
    poll: Duration,
    out: &Path,
) -> Result<(tempfile::TempDir, PathBuf), FetchError> {
    archive.vault_wait(VaultBundle::Flat, swhid, poll).await?;
    let mut response = archive.vault_download(VaultBundle::Flat, swhid).await?;
    let write_error = |source| FetchError::Write { path: out.to_owned(), source };
    let staging = staging_dir_beside(out).map_err(write_error)?;
    let bundle = staging.path().join("bundle.tar.gz");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&bundle).map_err(write_error)?);
    let origin = format!("the vault's flat bundle of {swhid}");
    while let Some(chunk) =
        response.chunk().await.map_err(|source| FetchError::Download { url: origin.clone(), source })?
    {
        file.write_all(&chunk).map_err(write_error)?;
    }
    file.flush().map_err(write_error)?;
    Ok((staging, bundle))
}

/// Unpacks a flat bundle to `staged`, NAR-hashing it on the way, and renames it to `out` if the
/// hash is `expected` (with no `expected`, unchecked: for a recipe, which checks what it builds).
pub(super) fn unpack_bundle(
    bundle: &Path,
    staged: &Path,
    swhid: &Swhid,
    expected: Option<&Hash>,
    out: &Path,
) -> Result<(), FetchError> {
    let algo = expected.map_or(HashAlgo::Sha256, Hash::algo);
    let tree_error = |source| FetchError::Tree { swhid: *swhid, source };
    let open = || {
        std::fs::File::open(bundle)
            .map(GunzipReader::new)
            .map_err(|source| FetchError::Write { path: bundle.to_owned(), source })
    };
    let top = swhid.to_string();
    let origin = format!("the vault's flat bundle of {swhid}");
    let mut sink = Tee::new(NarHasher::new(algo).map_err(tree_error)?, Restorer::new(staged));
    let actual = match replay_in_nar_order(open()?, top.as_bytes(), Limits::default(), ExecutableRule::Owner, &mut sink)
    {
        Ok(()) => sink.into_inner().0.finish().map_err(tree_error)?,
        Err(TreeError::NotInNarOrder { .. }) => {
            let root = Node::from_tar(open()?, Limits::default(), ExecutableRule::Owner).map_err(tree_error)?;
            let Node::Directory(mut entries) = root else { unreachable!("a tar stream reads into a directory") };
            let tree = match (entries.len(), entries.remove(top.as_bytes())) {
                (1, Some(tree @ Node::Directory(_))) => tree,
                _ => {
                    return Err(tree_error(TreeError::HostileMember {
                        path: top,
                        reason: "a flat bundle holds exactly one top directory, named by the SWHID".into(),
                    }));
                }
            };
            let actual = tree.nar_hash(algo);
            if expected.is_none_or(|expected| actual == *expected) {
                return super::fetch::write_tree(&tree, out);
            }
            actual
        }
        Err(err) => return Err(tree_error(err)),
    };
    if let Some(expected) = expected.filter(|expected| actual != **expected) {
        return Err(FetchError::HashMismatch { origin, expected: expected.clone(), actual });
    }
    rename_no_replace(staged, out).map_err(|source| FetchError::Write { path: out.to_owned(), source })
}
