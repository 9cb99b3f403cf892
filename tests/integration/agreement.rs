//! The audit and the fetcher answer the same plan: over every kind of source the local archive
//! can show, the audit's verdict (and the way it names) and what `fetch` achieves agree. The
//! archive is filled by SWH's real loaders (content, directory, git), a skipped content is
//! recorded as the archive records one, and a Nix binary cache is made by `nix copy` and served
//! on loopback.

use std::fs;
use std::path::Path;

use crate::local_archive::local_archive;
use crate::reference_tools::{add_to_binary_cache, bridge, line, output, sri, tool};
use crate::trees::{git_repo, sha256_hex, tarball, temp_dir, write_file};

fn digest_hex(algo: &str, path: &Path) -> String {
    line(tool(&format!("{algo}sum")).arg(path)).split_whitespace().next().unwrap().to_owned()
}

/// One source and what it must come to.
struct Case {
    what: &'static str,
    source: serde_json::Value,
    /// The audit's status, and for recoverable sources the way it names.
    status: &'static str,
    way: Option<&'static str>,
}

fn case(what: &'static str, source: serde_json::Value, status: &'static str, way: Option<&'static str>) -> Case {
    Case { what, source, status, way }
}

#[test]
fn the_audit_and_the_fetcher_agree_on_every_kind_of_source() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let archive = local_archive();
    let store = dir.join("recipes");
    let dead = |name: &str| format!("http://127.0.0.1:1/{name}");
    let flat = |name: &str, integrity: &str| serde_json::json!({"type": "url", "urls": [dead(name)], "integrity": integrity, "outputHashMode": "flat"});
    let recursive = |name: &str, integrity: &str| serde_json::json!({"type": "url", "urls": [dead(name)], "integrity": integrity, "outputHashMode": "recursive"});
    let mut cases = Vec::new();

    // A plain file, archived as a content by the content loader, found by its sha256.
    let plain = b"agreement: a plain file\n".to_vec();
    archive.load("content", "agree-plain.txt", &plain, &[("sha256", &sha256_hex(&plain))], None);
    cases.push(case(
        "content",
        flat("agree-plain.txt", &sri("sha256", &sha256_hex(&plain))),
        "recoverable",
        Some("content_by_hash"),
    ));

    // A file known by its sha512 alone: the archive indexes contents by sha1 and sha256 only,
    // but the content loader recorded a checksum-sha512 ExtID.
    fs::write(dir.join("agree-512.txt"), b"agreement: known by its sha512\n").unwrap();
    let hex512 = digest_hex("sha512", &dir.join("agree-512.txt"));
    archive.load(
        "content",
        "agree-512.txt",
        &fs::read(dir.join("agree-512.txt")).unwrap(),
        &[("sha512", &hex512)],
        None,
    );
    cases.push(case(
        "checksum ExtID to a content",
        flat("agree-512.txt", &sri("sha512", &hex512)),
        "recoverable",
        Some("checksum_ext_id"),
    ));

    // Tarballs archived unpacked (directory loader, flat hash): with a recipe, and without.
    let (with_recipe, _) = tarball(dir, "agree-recipe-1.0", "agreement");
    archive.load("directory", "agree-recipe-1.0.tar.gz", &with_recipe, &[("sha256", &sha256_hex(&with_recipe))], None);
    output(bridge().args(["recipe", "create"]).arg(dir.join("agree-recipe-1.0.tar.gz")).arg("--store").arg(&store));
    cases.push(case(
        "tarball with a recipe",
        flat("agree-recipe-1.0.tar.gz", &sri("sha256", &sha256_hex(&with_recipe))),
        "recoverable",
        Some("recipe_tree"),
    ));
    let (without_recipe, _) = tarball(dir, "agree-norecipe-1.0", "agreement");
    archive.load(
        "directory",
        "agree-norecipe-1.0.tar.gz",
        &without_recipe,
        &[("sha256", &sha256_hex(&without_recipe))],
        None,
    );
    cases.push(case(
        "tarball without a recipe",
        flat("agree-norecipe-1.0.tar.gz", &sri("sha256", &sha256_hex(&without_recipe))),
        "archived_not_recoverable",
        None,
    ));

    // A fetchzip-style tree: the directory loader's nar-sha256 ExtID.
    let (nar_loaded, nar_hex) = tarball(dir, "agree-nar-1.0", "agreement");
    archive.load("directory", "agree-nar-1.0.tar.gz", &nar_loaded, &[("sha256", &nar_hex)], Some("nar"));
    cases.push(case(
        "NAR ExtID",
        recursive("agree-nar-1.0.tar.gz", &sri("sha256", &nar_hex)),
        "recoverable",
        Some("nar_ext_id"),
    ));

    // A tree no ExtID names, which the bridge index leads to (the tarball was loaded flat).
    let (bridged, bridged_nar) = tarball(dir, "agree-bridged-1.0", "agreement");
    archive.load("directory", "agree-bridged-1.0.tar.gz", &bridged, &[("sha256", &sha256_hex(&bridged))], None);
    output(bridge().args(["recipe", "create"]).arg(dir.join("agree-bridged-1.0.tar.gz")).arg("--store").arg(&store));
    cases.push(case(
        "bridge-only NAR hash",
        recursive("agree-bridged-1.0.tar.gz", &sri("sha256", &bridged_nar)),
        "recoverable",
        Some("bridged_tree"),
    ));

    // A git repository archived by the git loader: the commit's tree is the source only when
    // taken as committed.
    let (repo, commit, checkout_hex) = git_repo(dir, "agree-repo", "agreement");
    archive.load_git(&repo);
    let checkout_nar = sri("sha256", &checkout_hex);
    let git = |extra: serde_json::Value| {
        let mut source = serde_json::json!({"type": "git", "git_url": format!("file://{}", repo.display()),
                                            "git_ref": commit, "integrity": checkout_nar, "outputHashMode": "recursive"});
        source.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        source
    };
    cases.push(case("git commit, as committed", git(serde_json::json!({})), "recoverable", Some("git_commit")));
    cases.push(case("git commit with submodules", git(serde_json::json!({"submodule": true})), "not_archived", None));
    cases.push(case("git commit, sparse", git(serde_json::json!({"sparseCheckout": "src"})), "not_archived", None));
    cases.push(case("git commit, postFetch", git(serde_json::json!({"postFetch": "rm README"})), "not_archived", None));

    // A file the archive skipped (listed, no bytes), named by a checksum ExtID.
    let skipped = b"agreement: pretend this is over 100 MiB\n";
    fs::write(dir.join("agree-skipped.bin"), skipped).unwrap();
    let skipped_hex = digest_hex("sha512", &dir.join("agree-skipped.bin"));
    archive.add_skipped_content(skipped, "sha512", &skipped_hex);
    cases.push(case(
        "skipped content",
        flat("agree-skipped.bin", &sri("sha512", &skipped_hex)),
        "archived_not_recoverable",
        None,
    ));

    // Nothing anywhere; no hash; a VCS source with a flat hash.
    cases.push(case(
        "unknown",
        flat("agree-lost.tar.gz", &sri("sha256", &sha256_hex(b"archived nowhere"))),
        "not_archived",
        None,
    ));
    cases.push(case(
        "no hash",
        serde_json::json!({"type": "url", "urls": [dead("agree-nohash.tar.gz")]}),
        "cannot_tell",
        None,
    ));
    let flat_git = serde_json::json!({"type": "git", "git_url": "https://example.org/x.git", "git_ref": commit,
                                      "integrity": sri("sha256", &sha256_hex(b"flat git")), "outputHashMode": "flat"});
    cases.push(case("VCS source with a flat hash", flat_git, "cannot_tell", None));

    // Sources only a Nix binary cache has: a file and a tree, added to a store and copied into
    // a binary cache with `nix copy`, served by the local archive's file server.
    let chroot = dir.join("chroot");
    let cache_dir = archive.files_dir.join(format!("agree-cache-{}", std::process::id()));
    let cache_url = format!("{}agree-cache-{}/", archive.files_url, std::process::id());
    let only_file = dir.join("agree-cache-only.txt");
    fs::write(&only_file, b"agreement: only a binary cache has this\n").unwrap();
    let only_tree = dir.join("agree-cache-tree");
    fs::create_dir(&only_tree).unwrap();
    write_file(&only_tree.join("run"), b"#!/bin/sh\n", 0o755);
    for (path, recursive_flag) in [(&only_file, false), (&only_tree, true)] {
        let store_path = add_to_binary_cache(&chroot, &cache_dir, path, recursive_flag);
        let (integrity, mode) = match recursive_flag {
            false => (sri("sha256", &digest_hex("sha256", path)), "flat"),
            true => (sri("sha256", &line(tool("nix-hash").args(["--type", "sha256"]).arg(path))), "recursive"),
        };
        let source = serde_json::json!({"type": "url", "urls": [dead("cached")], "integrity": integrity,
                                        "outputHashMode": mode, "nixStorePath": store_path});
        cases.push(case(
            if recursive_flag { "binary cache only, a tree" } else { "binary cache only, a file" },
            source,
            "binary_cache_only",
            None,
        ));
    }

    let sources: Vec<_> = cases.iter().map(|c| c.source.clone()).collect();
    let sources_json = dir.join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "sources": sources}).to_string()).unwrap();
    let common =
        ["--no-cache", "--archive", &archive.api, "--recipes", store.to_str().unwrap(), "--binary-cache", &cache_url];
    let audited = bridge()
        .arg("audit")
        .arg(&sources_json)
        .arg("--state")
        .arg(dir.join("state.sqlite"))
        .args(common)
        .output()
        .unwrap();
    // Only the input leaves sources untold: the audit is finished, and succeeds.
    assert!(audited.status.success(), "{}", String::from_utf8_lossy(&audited.stderr));
    let report: serde_json::Value = serde_json::from_slice(&audited.stdout).unwrap();
    let verdicts = report["sources"].as_array().unwrap();

    for (index, case) in cases.iter().enumerate() {
        let verdict = &verdicts[index];
        assert_eq!(verdict["status"], case.status, "{}: {verdict}", case.what);
        if let Some(way) = case.way {
            assert_eq!(verdict["way"], way, "{}: {verdict}", case.what);
        }
        let Some(integrity) = case.source["integrity"].as_str() else { continue };
        // Each source alone in a file, so that fetch finds exactly its entry.
        let alone = dir.join(format!("source-{index}.json"));
        fs::write(&alone, serde_json::json!({"version": 1, "sources": [case.source]}).to_string()).unwrap();
        let out = dir.join(format!("fetched-{index}"));
        let fetched = bridge()
            .args(["fetch", integrity, "--json", "--sources"])
            .arg(&alone)
            .args(common)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let gives_it_back = matches!(case.status, "recoverable" | "binary_cache_only");
        assert_eq!(
            fetched.status.success(),
            gives_it_back,
            "{}: the audit says {}, fetch says {}",
            case.what,
            case.status,
            String::from_utf8_lossy(&fetched.stderr)
        );
        if !gives_it_back {
            assert!(!out.exists(), "{}: a failed fetch left {}", case.what, out.display());
            continue;
        }
        let report: serde_json::Value = serde_json::from_slice(&fetched.stdout).unwrap();
        let expected_way = if case.status == "binary_cache_only" { "binary_cache" } else { case.way.unwrap() };
        assert_eq!(report["way"], expected_way, "{}: {report}", case.what);
        // What came back has the source's hash, by the reference tools.
        let (algo, _) = integrity.split_once('-').unwrap();
        let actual = match case.source["outputHashMode"].as_str() {
            Some("recursive") => line(tool("nix-hash").args(["--type", algo]).arg(&out)),
            _ => digest_hex(algo, &out),
        };
        assert_eq!(sri(algo, &actual), integrity, "{}", case.what);
    }
}
