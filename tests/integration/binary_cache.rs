//! `fetch --binary-cache`: sources a Nix binary cache holds, made by `nix copy --to file://…`
//! and served on loopback, come back verified by their hash; a cache that lies is refused.

use std::fs;

use crate::local_archive::local_archive;
use crate::reference_tools::{add_to_binary_cache, bridge, line, output, tool};
use crate::trees::{temp_dir, write_file};

#[test]
fn a_binary_cache_gives_back_files_and_trees_by_their_store_path_and_a_lying_one_is_refused() {
    let tmp = temp_dir();
    let archive = local_archive();
    let chroot = tmp.path().join("chroot");
    let site = format!("binary-cache-{}", std::process::id());
    let (cache_dir, cache_url) = (archive.files_dir.join(&site), format!("{}{site}/", archive.files_url));
    let file = tmp.path().join("cached-2.0.tar.gz");
    fs::write(&file, b"a source only a binary cache has\n").unwrap();
    let tree = tmp.path().join("cached-tree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    write_file(&tree.join("bin/tool"), b"#!/bin/sh\necho tool\n", 0o755);
    write_file(&tree.join("README"), b"read me\n", 0o644);
    add_to_binary_cache(&chroot, &cache_dir, &file, false);
    add_to_binary_cache(&chroot, &cache_dir, &tree, true);
    let file_hash = line(tool("nix").args(["hash", "file", "--sri", "--type", "sha256"]).arg(&file));
    let tree_hash = line(tool("nix").args(["hash", "path", "--sri", "--type", "sha256"]).arg(&tree));

    let fetch = |hash: &str, mode: &str, name: &str, cache: &str, out: &std::path::Path| {
        bridge()
            .args(["fetch", hash, "--mode", mode, "--name", name, "--no-cache", "--archive", &archive.api])
            .args(["--binary-cache", cache, "--json", "-o"])
            .arg(out)
            .output()
            .unwrap()
    };
    // The store path comes from the name and the hash, as Nix computes it.
    let out = tmp.path().join("file");
    let fetched = fetch(&file_hash, "flat", "cached-2.0.tar.gz", &cache_url, &out);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    let report: serde_json::Value = serde_json::from_slice(&fetched.stdout).unwrap();
    assert_eq!(report["way"], "binary_cache", "{report}");
    assert_eq!(fs::read(&out).unwrap(), fs::read(&file).unwrap());

    let out = tmp.path().join("tree");
    let fetched = fetch(&tree_hash, "recursive", "cached-tree", &cache_url, &out);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert_eq!(line(tool("nix").args(["hash", "path", "--sri", "--type", "sha256"]).arg(&out)), tree_hash);
    assert_eq!(output(tool("nix-store").arg("--dump").arg(&out)), output(tool("nix-store").arg("--dump").arg(&tree)));

    // Another name is another store path, which the cache does not have.
    let fetched = fetch(&file_hash, "flat", "renamed.tar.gz", &cache_url, &tmp.path().join("renamed"));
    assert!(!fetched.status.success());

    // A cache whose narinfo promises another NAR: refused, nothing written.
    let liar = archive.files_dir.join(format!("{site}-liar"));
    output(tool("cp").arg("-r").arg(&cache_dir).arg(&liar));
    for entry in fs::read_dir(&liar).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "narinfo") {
            let text = fs::read_to_string(&path).unwrap();
            let lie = text
                .lines()
                .map(|l| {
                    if l.starts_with("NarHash:") {
                        "NarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            fs::write(&path, lie + "\n").unwrap();
        }
    }
    let out = tmp.path().join("lied");
    let fetched = fetch(&file_hash, "flat", "cached-2.0.tar.gz", &format!("{}{site}-liar/", archive.files_url), &out);
    let stderr = String::from_utf8_lossy(&fetched.stderr);
    assert!(!fetched.status.success());
    assert!(stderr.contains("refusing the NAR") && stderr.contains("the narinfo says"), "{stderr}");
    assert!(!out.exists());
}
