//! `serve` as a Nix substituter. Real Nix 2.8 with `require-sigs = true`, no trusted key, no
//! hashed mirror and every URL dead builds four kinds of fixed output from the real local
//! archive: a fetchzip-style tree (directory loader, NAR layout), a fetchgit-style tree (git
//! loader, the commit's tree), a flat tarball (recipe plus the archived directory) and a flat
//! patch (a content). NARs and narinfos are checked against `nix-store --dump` and `nix-hash`.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::local_archive::local_archive;
use crate::reference_tools::{bridge, line, output, sri, tool};
use crate::serve::{Served, lying_archive};
use crate::trees::{git_repo, sha256_hex, tarball, temp_dir};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/substituter/default.nix");
const DEAD: &str = "http://127.0.0.1:1";

/// `nix-store --print-fixed-path`: the store path Nix gives a fixed output.
fn fixed_path(recursive: bool, hex: &str, name: &str) -> String {
    let mut cmd = tool("nix-store");
    cmd.arg("--print-fixed-path");
    if recursive {
        cmd.arg("--recursive");
    }
    line(cmd.args(["sha256", hex, name]))
}

fn hash_part(store_path: &str) -> &str {
    &store_path["/nix/store/".len().."/nix/store/".len() + 32]
}

/// `nix-build` of one attribute, with the server as the only substituter.
fn nix_build(served: &Served, store: &Path, hashes: &[(&str, String)], attr: &str) -> Output {
    let mut cmd = tool("nix-build");
    cmd.arg(FIXTURE).arg("--store").arg(store).args(["-A", attr, "--no-out-link"]);
    for (name, hex) in hashes {
        cmd.args(["--argstr", name, hex]);
    }
    cmd.args(["--option", "substituters", &served.url]);
    cmd.args(["--option", "require-sigs", "true", "--option", "trusted-public-keys", ""]);
    cmd.args(["--option", "hashed-mirrors", ""]);
    cmd.output().unwrap()
}

fn narinfo_field<'a>(narinfo: &'a str, field: &str) -> &'a str {
    narinfo.lines().find_map(|l| l.strip_prefix(&format!("{field}: "))).unwrap_or_else(|| panic!("{narinfo}"))
}

/// What the archive holds, and the sources.json entries that name it.
struct Archived {
    tree_hex: String,
    git_hex: String,
    tarball: Vec<u8>,
    patch: Vec<u8>,
    /// By attribute of the fixture: the sources.json entry.
    entries: Vec<(&'static str, serde_json::Value)>,
}

fn archive_four_sources(dir: &Path, recipes: &Path) -> Archived {
    let archive = local_archive();
    let entry = |url: &str, integrity: String, mode: &str| {
        serde_json::json!({"type": "url", "urls": [format!("{DEAD}/{url}")], "integrity": integrity,
                           "outputHashMode": mode})
    };
    let with_path = |mut entry: serde_json::Value, path: String| {
        entry["nixStorePath"] = serde_json::Value::String(path);
        entry
    };

    let (tree_bytes, tree_hex) = tarball(dir, "sub-tree-1.0", "substituter");
    archive.load("directory", "sub-tree-1.0.tar.gz", &tree_bytes, &[("sha256", &tree_hex)], Some("nar"));
    let tree = with_path(
        entry("sub-tree-1.0.tar.gz", sri("sha256", &tree_hex), "recursive"),
        fixed_path(true, &tree_hex, "source"),
    );

    let (repo, commit, git_hex) = git_repo(dir, "sub-repo", "substituter");
    archive.load_git(&repo);
    let git = serde_json::json!({"type": "git", "git_url": format!("{DEAD}/sub-repo.git"), "git_ref": commit,
                                 "integrity": sri("sha256", &git_hex), "outputHashMode": "recursive",
                                 "nixStorePath": fixed_path(true, &git_hex, "source")});

    let (tarball_bytes, _) = tarball(dir, "sub-tarball-1.0", "substituter");
    let tarball_hex = sha256_hex(&tarball_bytes);
    archive.load("directory", "sub-tarball-1.0.tar.gz", &tarball_bytes, &[("sha256", &tarball_hex)], None);
    output(bridge().args(["recipe", "create"]).arg(dir.join("sub-tarball-1.0.tar.gz")).arg("--store").arg(recipes));
    let flat_tarball = with_path(
        entry("sub-tarball-1.0.tar.gz", sri("sha256", &tarball_hex), "flat"),
        fixed_path(false, &tarball_hex, "sub-tarball-1.0.tar.gz"),
    );

    // No nixStorePath: the server computes it, as for Guix's and older files.
    let patch = b"--- a/Makefile\n+++ b/Makefile\n@@ -1 +1 @@\n-CC=gcc\n+CC=cc\n".to_vec();
    archive.load("content", "fix-build.patch", &patch, &[("sha256", &sha256_hex(&patch))], None);
    let flat_patch = entry("fix-build.patch", sri("sha256", &sha256_hex(&patch)), "flat");

    Archived {
        tree_hex,
        git_hex,
        tarball: tarball_bytes,
        patch,
        entries: vec![("tree", tree), ("git", git), ("tarball", flat_tarball), ("patch", flat_patch)],
    }
}

fn write_sources(path: &Path, entries: &[&serde_json::Value]) {
    let file = serde_json::json!({"version": 1, "revision": "test", "sources": entries});
    let temp = path.with_extension("tmp");
    fs::write(&temp, serde_json::to_vec(&file).unwrap()).unwrap();
    fs::rename(temp, path).unwrap();
}

#[test]
fn unmodified_nix_substitutes_every_kind_of_fixed_output_from_the_archive() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let recipes = dir.join("recipes");
    let archived = archive_four_sources(dir, &recipes);
    let lost_hex = sha256_hex(b"substituter: archived nowhere");
    let hashes = [
        ("treeSha256", archived.tree_hex.clone()),
        ("gitSha256", archived.git_hex.clone()),
        ("tarballSha256", sha256_hex(&archived.tarball)),
        ("patchSha256", sha256_hex(&archived.patch)),
        ("lostSha256", lost_hex.clone()),
    ];
    let entry = |attr: &str| &archived.entries.iter().find(|(a, _)| *a == attr).unwrap().1;
    // The patch comes later, to see the index follow its file.
    let sources = dir.join("sources.json");
    write_sources(&sources, &[entry("tree"), entry("git"), entry("tarball")]);
    let served = Served::start(
        &local_archive().api,
        &dir.join("data"),
        &["--recipes", recipes.to_str().unwrap(), "--sources", sources.to_str().unwrap()],
    );

    let (code, info) = served.get("nix-cache-info");
    assert_eq!(code, 200);
    let info = String::from_utf8(info).unwrap();
    assert!(info.contains("StoreDir: /nix/store\n") && info.contains("Priority: 50\n"), "{info}");

    // 40 clients at once, on a recursive and a flat source: one resolution each, every NAR the
    // narinfo's, and that NAR the one Nix makes of the source.
    let tree_path = entry("tree")["nixStorePath"].as_str().unwrap().to_owned();
    let tarball_path = entry("tarball")["nixStorePath"].as_str().unwrap().to_owned();
    let tarball_file = dir.join("sub-tarball-1.0.tar.gz");
    let expected_nar_hash = |recursive_hex: Option<&str>| match recursive_hex {
        Some(hex) => line(tool("nix").args(["hash", "to-base32", "--type", "sha256", hex])),
        None => line(tool("nix-hash").args(["--type", "sha256", "--base32"]).arg(&tarball_file)),
    };
    let expected = [
        (tree_path.clone(), expected_nar_hash(Some(&archived.tree_hex))),
        (tarball_path.clone(), expected_nar_hash(None)),
    ];
    std::thread::scope(|scope| {
        for i in 0..40 {
            let (path, nar_hash) = &expected[i % 2];
            let served = &served;
            scope.spawn(move || {
                let (code, body) = served.get(&format!("{}.narinfo", hash_part(path)));
                let narinfo = String::from_utf8(body).unwrap();
                assert_eq!(code, 200, "{narinfo}");
                assert_eq!(narinfo_field(&narinfo, "StorePath"), path);
                assert_eq!(narinfo_field(&narinfo, "NarHash"), format!("sha256:{nar_hash}"));
                let (code, nar) = served.get(narinfo_field(&narinfo, "URL"));
                assert_eq!(code, 200);
                assert_eq!(nar.len().to_string(), narinfo_field(&narinfo, "NarSize"));
                let hex = sha256_hex(&nar);
                assert_eq!(line(tool("nix").args(["hash", "to-base32", "--type", "sha256", &hex])), *nar_hash);
            });
        }
    });
    assert_eq!(served.metric("resolutions_total"), 2.0);
    let tarball_narinfo = String::from_utf8(served.get(&format!("{}.narinfo", hash_part(&tarball_path))).1).unwrap();
    let tarball_nix32 =
        line(tool("nix").args(["hash", "to-base32", "--type", "sha256", &sha256_hex(&archived.tarball)]));
    assert_eq!(narinfo_field(&tarball_narinfo, "CA"), format!("fixed:sha256:{tarball_nix32}"));
    assert_eq!(narinfo_field(&tarball_narinfo, "Compression"), "none");
    let (_, nar) = served.get(&format!("nar/{}.nar", hash_part(&tarball_path)));
    assert_eq!(nar, output(tool("nix-store").arg("--dump").arg(&tarball_file)), "a flat file's NAR is Nix's");

    // The index follows its file.
    write_sources(&sources, &[entry("tree"), entry("git"), entry("tarball"), entry("patch")]);
    let patch_path = fixed_path(false, &sha256_hex(&archived.patch), "fix-build.patch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while served.get(&format!("{}.narinfo", hash_part(&patch_path))).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the new entry never showed up:\n{}", served.log.lock().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Real Nix builds every one of them with every URL dead.
    let store = dir.join("store");
    for attr in ["tree", "git", "tarball", "patch"] {
        let built = nix_build(&served, &store, &hashes, attr);
        assert!(built.status.success(), "{attr}: {}", String::from_utf8_lossy(&built.stderr));
        let path = String::from_utf8(built.stdout).unwrap().trim().to_owned();
        let on_disk = store.join(path.trim_start_matches('/'));
        match attr {
            "tree" => assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&on_disk)), archived.tree_hex),
            "git" => assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&on_disk)), archived.git_hex),
            "tarball" => assert_eq!(fs::read(&on_disk).unwrap(), archived.tarball),
            _ => assert_eq!(fs::read(&on_disk).unwrap(), archived.patch),
        }
    }
    assert_eq!(served.metric("resolutions_total"), 4.0);
    let log = served.log.lock().unwrap().clone();
    assert!(log.contains("+ recipe") && log.contains("resolved from archive swh:1:cnt:"), "{log}");

    // Not in the index: a 404, and Nix builds it itself, failing on its dead URL.
    let started = std::time::Instant::now();
    let lost = nix_build(&served, &store, &hashes, "lost");
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert!(!lost.status.success() && stderr.contains("127.0.0.1:1/sub-lost.tar.gz"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the miss was slow");
    let lost_path = fixed_path(false, &lost_hex, "sub-lost.tar.gz");
    let log = served.log.lock().unwrap().clone();
    assert!(log.contains(&format!("\"GET /{}.narinfo\" 404", hash_part(&lost_path))), "{log}");
}

#[test]
fn wrong_bytes_from_the_archive_never_make_a_narinfo() {
    let tmp = temp_dir();
    let (archive, hex) = lying_archive();
    let api = format!("{}/api/1/", archive.url());
    let sources = tmp.path().join("sources.json");
    let entry = serde_json::json!({"type": "url", "urls": [format!("{DEAD}/promised.txt")],
                                   "integrity": sri("sha256", &hex), "outputHashMode": "flat"});
    write_sources(&sources, &[&entry]);
    let data = tmp.path().join("data");
    let served = Served::start(&api, &data, &["--sources", sources.to_str().unwrap()]);
    let path = fixed_path(false, &hex, "promised.txt");

    for _ in 0..2 {
        let (code, body) = served.get(&format!("{}.narinfo", hash_part(&path)));
        assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("it hashes to"), "{}", String::from_utf8_lossy(&body));
        assert_eq!(served.get(&format!("nar/{}.nar", hash_part(&path))).0, 404);
    }
    assert!(!data.join(format!("cache/sha256/{hex}")).exists(), "wrong bytes were cached");
    // The second narinfo was answered from memory, not by a new search.
    assert_eq!(served.metric("resolutions_total"), 1.0);
}
