//! The fetcher's vault path: real flat bundles, cooked by SWH's own cooker from the local
//! archive, served through mockito with the vault's asynchronous states (the local setup has no
//! vault service); and the walk the fetcher falls back to when the vault cannot help.

use std::fs;
use std::path::Path;
use std::time::Duration;

use swh_bridge::archive::{ArchiveClient, ClientConfig, ExtIdKind};
use swh_bridge::fallback::{Cache, Fetcher};
use swh_bridge::hashing::{Hash, HashAlgo, HashMode};
use swh_bridge::plan::SourceRequest;

use crate::local_archive::local_archive;
use crate::reference_tools::{line, output, tool};
use crate::trees::{TreeShape, make_tree, temp_dir};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn client_for(api: &str) -> ArchiveClient {
    let mut config = ClientConfig::for_api(api.parse().unwrap());
    config.token = None;
    config.backoff = Duration::from_millis(10);
    ArchiveClient::new(config)
}

/// A tree archived by the directory loader with its NAR hash: its top folder, NAR hash (hex)
/// and the directory the archive keeps it as.
struct ArchivedTree {
    top: std::path::PathBuf,
    nar_hex: String,
    swhid: String,
}

fn archive_tree(dir: &Path, name: &str) -> ArchivedTree {
    let top = dir.join(name);
    make_tree(&top, TreeShape { empty_dirs: true, non_utf8: false });
    fs::remove_file(top.join("big.bin")).unwrap();
    let tarball = output(tool("tar").arg("-C").arg(dir).args(["-czf", "-", name]));
    let nar_hex = line(tool("nix-hash").args(["--type", "sha256"]).arg(&top));
    local_archive().load("directory", &format!("{name}.tar.gz"), &tarball, &[("sha256", &nar_hex)], Some("nar"));
    let hash = Hash::parse(&nar_hex, Some(HashAlgo::Sha256)).unwrap();
    let extid = runtime().block_on(client_for(&local_archive().api).extid(ExtIdKind::Nar, &hash)).unwrap();
    ArchivedTree { top, nar_hex, swhid: extid.target.to_string() }
}

/// A mock vault that answers `new`, then `pending`, then `done`, and serves `bundle`; and the
/// ExtID that leads to it.
fn mock_vault(server: &mut mockito::Server, tree: &ArchivedTree, bundle: Vec<u8>) {
    server
        .mock("GET", format!("/api/1/extid/nar-sha256/hex:{}/", tree.nar_hex).as_str())
        .match_query(mockito::Matcher::UrlEncoded("extid_version".into(), "1".into()))
        .with_body(format!(
            r#"{{"extid_type": "nar-sha256", "extid_version": 1, "extid": "{}", "target": "{}"}}"#,
            tree.nar_hex, tree.swhid
        ))
        .create();
    let path = format!("/api/1/vault/flat/{}/", tree.swhid);
    server.mock("POST", path.as_str()).with_body(r#"{"status": "new"}"#).create();
    server
        .mock("GET", path.as_str())
        .with_body(r#"{"status": "pending", "progress_message": "cooking"}"#)
        .expect(1)
        .create();
    server.mock("GET", path.as_str()).with_body(r#"{"status": "done"}"#).create();
    server.mock("GET", format!("{path}raw/").as_str()).with_body(bundle).create();
}

fn recursive_request(hash: &Hash) -> SourceRequest {
    SourceRequest::of_hash(hash.clone(), HashMode::Recursive)
}

#[test]
fn a_tree_comes_from_its_cooked_bundle_with_the_top_folder_stripped() {
    let tmp = temp_dir();
    let tree = archive_tree(tmp.path(), "vaulted-1.0");
    let bundle = local_archive().cook_flat(&tree.swhid);
    let mut server = mockito::Server::new();
    mock_vault(&mut server, &tree, bundle);

    let data_dir = tmp.path().join("data");
    let fetcher = Fetcher::new(client_for(&format!("{}/api/1/", server.url())))
        .with_walk_limit(0)
        .with_vault_poll(Duration::from_millis(10))
        .with_cache(Cache::new(&data_dir));
    let hash = Hash::parse(&tree.nar_hex, Some(HashAlgo::Sha256)).unwrap();
    let out = tmp.path().join("out");
    let report = runtime().block_on(fetcher.fetch(&recursive_request(&hash), &out)).unwrap();
    assert_eq!(report.origin, format!("archive {}", tree.swhid));
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    // The ExtID, the cooking request, two polls and the download.
    assert_eq!(report.archive_requests, 5);
    assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&out)), tree.nar_hex);
    assert_eq!(
        output(tool("nix-store").arg("--dump").arg(&out)),
        output(tool("nix-store").arg("--dump").arg(&tree.top)),
        "the same tree, byte for byte"
    );

    // The tree was cached as it was unpacked: the second fetch asks nobody.
    let again = tmp.path().join("again");
    let report = runtime().block_on(fetcher.fetch(&recursive_request(&hash), &again)).unwrap();
    assert_eq!((report.origin.as_str(), report.archive_requests), ("cache", 0));
    assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&again)), tree.nar_hex);
}

/// A bundle made by GNU tar from the files of `tree`, under the top folder the vault uses, with
/// `order` applied to the member list first.
fn bundle_by_gnu_tar(tmp: &Path, tree: &ArchivedTree, order: impl FnOnce(&Path, &mut Vec<String>)) -> Vec<u8> {
    let stage = tmp.join(format!("stage-{}", stage_number()));
    fs::create_dir(&stage).unwrap();
    output(tool("cp").arg("-a").arg(&tree.top).arg(stage.join(&tree.swhid)));
    let listing = output(tool("find").arg(&tree.swhid).current_dir(&stage));
    let mut members: Vec<String> = String::from_utf8(listing).unwrap().lines().map(str::to_owned).collect();
    order(&stage, &mut members);
    fs::write(stage.join("members"), members.join("\n") + "\n").unwrap();
    output(tool("tar").arg("-C").arg(&stage).args(["--no-recursion", "-czf", "-", "-T"]).arg(stage.join("members")))
}

fn stage_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn bundles_out_of_nar_order_are_read_again_and_wrong_ones_refused() {
    let tmp = temp_dir();
    let tree = archive_tree(tmp.path(), "unordered-1.0");
    let hash = Hash::parse(&tree.nar_hex, Some(HashAlgo::Sha256)).unwrap();
    let fetch = |bundle: Vec<u8>, out: &Path| {
        let mut server = mockito::Server::new();
        mock_vault(&mut server, &tree, bundle);
        let fetcher = Fetcher::new(client_for(&format!("{}/api/1/", server.url())))
            .with_walk_limit(0)
            .with_vault_poll(Duration::from_millis(10));
        runtime().block_on(fetcher.fetch(&recursive_request(&hash), out))
    };

    // Directories first, everything else in reverse: not NAR order, so read into memory.
    let unordered = bundle_by_gnu_tar(tmp.path(), &tree, |stage, members| {
        members.sort();
        members.reverse();
        members.sort_by_key(|m| !stage.join(m).symlink_metadata().unwrap().is_dir());
    });
    let out = tmp.path().join("unordered");
    fetch(unordered, &out).unwrap();
    assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&out)), tree.nar_hex);

    // A bundle of another tree: refused, and nothing is left beside the destination.
    let before: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let wrong = bundle_by_gnu_tar(tmp.path(), &tree, |_, members| members.retain(|m| !m.ends_with("/a-b")));
    let out = tmp.path().join("wrong");
    let err = fetch(wrong, &out).unwrap_err();
    assert!(err.to_string().starts_with(&format!("refusing what the vault's flat bundle of {}", tree.swhid)), "{err}");
    let mut after: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    after.retain(|name| !name.to_string_lossy().starts_with("stage-"));
    let mut before = before;
    before.retain(|name| !name.to_string_lossy().starts_with("stage-"));
    assert_eq!(after, before, "nothing is written for a wrong bundle");

    // A bundle cut short is an error, never a partial tree.
    let mut truncated = local_archive().cook_flat(&tree.swhid);
    truncated.truncate(truncated.len() / 2);
    let out = tmp.path().join("truncated");
    assert!(fetch(truncated, &out).is_err());
    assert!(!out.exists());
}

#[test]
fn without_a_vault_the_directory_is_walked_and_that_is_noted() {
    let tmp = temp_dir();
    let tree = archive_tree(tmp.path(), "walked-1.0");
    // The local archive has no vault endpoints: asking it for a bundle fails.
    let fetcher = Fetcher::new(client_for(&local_archive().api)).with_walk_limit(0);
    let hash = Hash::parse(&tree.nar_hex, Some(HashAlgo::Sha256)).unwrap();
    let out = tmp.path().join("out");
    let report = runtime().block_on(fetcher.fetch(&recursive_request(&hash), &out)).unwrap();
    assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&out)), tree.nar_hex);
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    assert!(report.notes[0].starts_with(&format!("the vault could not give {}", tree.swhid)), "{:?}", report.notes);
}
