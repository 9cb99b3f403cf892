//! `swh-bridge prefetch` with real Nix 2.8: derivations whose upstream URLs are dead build
//! once their sources are fetched from the local archive and added to a chroot store.

use std::fs;
use std::path::Path;
use std::process::Command;

use swh_bridge::store::{Derivation, NixStore};

use crate::local_archive::local_archive;
use crate::reference_tools::{bridge, line, output, tool};
use crate::trees::{sha256_hex, temp_dir, write_file};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/prefetch/default.nix");

/// A Nix command on the chroot store `store`, whose sandbox can run the host's /bin/sh.
fn nix(program: &str, store: &Path, hashes: &[(&str, &str)]) -> Command {
    let mut cmd = tool(program);
    cmd.arg("--store").arg(store).arg(FIXTURE);
    for (name, hash) in hashes {
        cmd.args(["--argstr", name, hash]);
    }
    if program == "nix-build" {
        cmd.args(["--no-out-link", "--option", "extra-sandbox-paths", "/bin /usr /lib /lib64"]);
    }
    cmd
}

#[test]
fn prefetched_sources_let_nix_build_with_every_url_dead() {
    let archive = local_archive();
    let tmp = temp_dir();

    let greeting = b"hello from the archive\n".to_vec();
    let flat_hex = sha256_hex(&greeting);
    archive.load("content", "greeting.txt", &greeting, &[("sha256", &flat_hex)], None);

    let top = tmp.path().join("tree-1.0");
    fs::create_dir_all(top.join("bin")).unwrap();
    write_file(&top.join("hello.txt"), b"and a tree too\n", 0o644);
    write_file(&top.join("bin/run"), b"#!/bin/sh\necho run\n", 0o755);
    let tarball = output(tool("tar").arg("-C").arg(tmp.path()).args(["-czf", "-", "tree-1.0"]));
    let tree_hex = line(tool("nix-hash").args(["--type", "sha256"]).arg(&top));
    archive.load("directory", "tree-1.0.tar.gz", &tarball, &[("sha256", &tree_hex)], Some("nar"));

    let lost_hex = sha256_hex(b"never archived anywhere");
    let hashes = [("flatSha256", flat_hex.as_str()), ("treeSha256", tree_hex.as_str()), ("lostSha256", &lost_hex)];
    let store = tmp.path().join("store");
    let package = line(nix("nix-instantiate", &store, &hashes).args(["-A", "package"]));

    // Every URL is dead: Nix alone cannot build it.
    let before = nix("nix-build", &store, &hashes).args(["-A", "package"]).output().unwrap();
    assert!(!before.status.success(), "the build should fail while the sources are missing");
    assert!(String::from_utf8_lossy(&before.stderr).contains("127.0.0.1:1/"), "it fails on the dead URLs");

    let data_dir = tmp.path().join("data");
    let prefetch = |drvs: &[&str], json: bool| {
        let mut cmd = bridge();
        cmd.arg("prefetch").args(drvs).arg("--store").arg(&store);
        cmd.arg("--archive").arg(&archive.api).arg("--data-dir").arg(&data_dir);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let result = prefetch(&[&package], false);
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("added /nix/store/")).count(), 2, "{stdout}");
    assert!(stderr.contains("2 missing sources: 2 added, 0 failed"), "{stderr}");

    let built = line(nix("nix-build", &store, &hashes).args(["-A", "package"]));
    let built = fs::read(store.join(built.trim_start_matches('/'))).unwrap();
    assert_eq!(built, b"hello from the archive\nand a tree too\n");

    // Nothing is missing any more: the package itself is built.
    let result = prefetch(&[&package], false);
    assert!(String::from_utf8_lossy(&result.stderr).contains("0 missing sources"));

    // What the archive does not have fails, says why, and sets the exit code.
    let lost = line(nix("nix-instantiate", &store, &hashes).args(["-A", "lost"]));
    let result = prefetch(&[&lost], true);
    assert!(!result.status.success());
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["drv"], lost.as_str());
    assert_eq!(report["status"], "failed");
    assert!(report["error"].as_str().unwrap().contains("is not in the archive"), "{report}");
}

#[test]
fn derivations_read_like_nix_show_derivation() {
    let tmp = temp_dir();
    let store = tmp.path().join("store");
    let zeros = "0".repeat(64);
    let hashes = [("flatSha256", zeros.as_str()), ("treeSha256", zeros.as_str()), ("lostSha256", zeros.as_str())];
    let package = line(nix("nix-instantiate", &store, &hashes).args(["-A", "package"]));
    let shown: serde_json::Value = serde_json::from_slice(&output(
        tool("nix").args(["show-derivation", "-r", "--store"]).arg(&store).arg(&package),
    ))
    .unwrap();
    let nix_store = NixStore::new(Some(store.to_string_lossy().into_owned()));
    let shown = shown.as_object().unwrap();
    assert_eq!(shown.len(), 3, "the package and its two sources");
    for (drv, expected) in shown {
        let ours: Derivation = nix_store.read_derivation(drv).unwrap();
        let outputs: serde_json::Value = ours
            .outputs
            .iter()
            .map(|(name, o)| {
                let mut shown = serde_json::json!({"path": o.path});
                if !o.hash_algo.is_empty() {
                    shown["hashAlgo"] = o.hash_algo.clone().into();
                    shown["hash"] = o.hash.clone().into();
                }
                (name.clone(), shown)
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        assert_eq!(outputs, expected["outputs"], "{drv}");
        assert_eq!(serde_json::to_value(&ours.env).unwrap(), expected["env"], "{drv}");
        assert_eq!(serde_json::to_value(&ours.args).unwrap(), expected["args"], "{drv}");
        assert_eq!(serde_json::to_value(&ours.input_sources).unwrap(), expected["inputSrcs"], "{drv}");
        assert_eq!(serde_json::to_value(&ours.input_derivations).unwrap(), expected["inputDrvs"], "{drv}");
        assert_eq!(
            (ours.system.as_str(), ours.builder.as_str()),
            (expected["system"].as_str().unwrap(), expected["builder"].as_str().unwrap())
        );
        assert_eq!(ours.fixed_output().is_some(), expected["outputs"]["out"].get("hash").is_some(), "{drv}");
    }
}
