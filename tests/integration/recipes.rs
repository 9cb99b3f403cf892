//! Recipes on tarballs made by the real tools (GNU tar in each format; gzip, xz and bzip2 at
//! several settings; `git archive`; Python's tarfile), rebuilt from what GNU tar extracts,
//! compared byte for byte.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::local_archive::local_archive;
use crate::reference_tools::{bridge, failure, line, output, swh_program, tool};
use crate::trees::{TreeShape, make_tree, temp_dir};

/// Makes a recipe for `file`, extracts `file` with GNU tar, rebuilds it from the extraction, and
/// checks the bytes; returns the recipe's path.
fn round_trip(file: &Path, work: &Path) -> PathBuf {
    let recipe = work.join(format!("{}.recipe", file.file_name().unwrap().to_string_lossy()));
    let created = bridge().args(["recipe", "create"]).arg(file).arg("-o").arg(&recipe).output().unwrap();
    assert!(created.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&created.stderr));
    let extracted = work.join(format!("{}.x", file.file_name().unwrap().to_string_lossy()));
    fs::create_dir(&extracted).unwrap();
    output(tool("tar").arg("-xf").arg(file).arg("-C").arg(&extracted));
    let rebuilt = work.join(format!("{}.rebuilt", file.file_name().unwrap().to_string_lossy()));
    let mut apply = bridge();
    apply.args(["recipe", "apply"]).arg(&recipe).arg("--tree").arg(&extracted).arg("-o").arg(&rebuilt);
    let applied = apply.output().unwrap();
    assert!(applied.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&applied.stderr));
    assert!(fs::read(&rebuilt).unwrap() == fs::read(file).unwrap(), "{} differs when rebuilt", file.display());
    recipe
}

fn sh(script: &str, dir: &Path) {
    output(Command::new("sh").arg("-c").arg(script).current_dir(dir));
}

#[test]
fn gnu_tar_gzip_xz_and_bzip2_tarballs_round_trip_in_every_format_and_level() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-1.0"), TreeShape { empty_dirs: true, non_utf8: true });
    // A name over 100 bytes: GNU's long-name member, pax's path record, ustar's prefix field.
    let long = tmp.path().join("pkg-1.0").join("l".repeat(60)).join("m".repeat(60));
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join("file"), b"deep").unwrap();
    let mut made = Vec::new();
    for format in ["gnu", "oldgnu", "pax", "ustar"] {
        for level in ["-1", "-6", "-9"] {
            let name = format!("pkg-{format}{level}.tar.gz");
            sh(&format!("tar --format={format} -cf - pkg-1.0 | gzip {level} > {name}"), tmp.path());
            made.push(name);
        }
    }
    // gzip keeping the file name and mtime in its header, and a tarball in two gzip members.
    sh("tar -cf pkg.tar pkg-1.0 && gzip -k -9 pkg.tar && mv pkg.tar.gz named.tar.gz", tmp.path());
    sh("head -c 20480 pkg.tar | gzip > two.tar.gz && tail -c +20481 pkg.tar | gzip >> two.tar.gz", tmp.path());
    made.extend(["named.tar.gz".into(), "two.tar.gz".into(), "pkg.tar".into()]);
    // xz: presets, -e, the multithreaded encoder's blocks, another check; bzip2: block sizes, and
    // two streams.
    for (name, command) in [
        ("xz0.tar.xz", "xz -0"),
        ("xz6.tar.xz", "xz -6"),
        ("xz9e.tar.xz", "xz -9e"),
        ("xzmt.tar.xz", "xz -T2 --block-size=1MiB"),
        ("xzsha.tar.xz", "xz -C sha256"),
        ("bz1.tar.bz2", "bzip2 -1"),
        ("bz9.tar.bz2", "bzip2 -9"),
    ] {
        sh(&format!("{command} -c pkg.tar > {name}"), tmp.path());
        made.push(name.into());
    }
    sh("head -c 20480 pkg.tar | bzip2 > two.tar.bz2 && tail -c +20481 pkg.tar | bzip2 >> two.tar.bz2", tmp.path());
    made.push("two.tar.bz2".into());
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for name in made {
        round_trip(&tmp.path().join(name), &work);
    }
}

#[test]
fn git_archive_and_python_tarballs_round_trip() {
    let tmp = temp_dir();
    let repo = tmp.path().join("repo");
    make_tree(&repo, TreeShape { empty_dirs: false, non_utf8: false });
    sh(
        "git init -q . && git add -A && git -c user.name=t -c user.email=t@e -c commit.gpgsign=false commit -qm x \
         && git archive --format=tar.gz --prefix=repo-1.0/ -o ../git.tar.gz HEAD",
        &repo,
    );
    let python = swh_program().parent().unwrap().join("python");
    let script = "import sys, tarfile\nwith tarfile.open(sys.argv[1], 'w:gz') as t: t.add(sys.argv[2], arcname='pkg')";
    output(Command::new(python).arg("-c").arg(script).arg(tmp.path().join("python.tar.gz")).arg(&repo));
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for name in ["git.tar.gz", "python.tar.gz"] {
        round_trip(&tmp.path().join(name), &work);
    }
}

#[test]
fn the_recipe_names_the_tree_the_directory_loader_archives() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-2.0"), TreeShape { empty_dirs: true, non_utf8: false });
    fs::remove_file(tmp.path().join("pkg-2.0/big.bin")).unwrap();
    sh("tar -cf - pkg-2.0 | gzip -9 > pkg-2.0.tar.gz", tmp.path());
    let tarball = tmp.path().join("pkg-2.0.tar.gz");
    let recipe = round_trip(&tarball, tmp.path());
    let shown: serde_json::Value =
        serde_json::from_slice(&output(bridge().args(["recipe", "show", "--json"]).arg(&recipe))).unwrap();

    let bytes = fs::read(&tarball).unwrap();
    let hex = line(tool("sha256sum").arg(&tarball)).split_whitespace().next().unwrap().to_owned();
    local_archive().load("directory", "recipe-pkg-2.0.tar.gz", &bytes, &[("sha256", &hex)], None);
    let client = swh_bridge::archive::ArchiveClient::new(swh_bridge::archive::ClientConfig::for_api(
        local_archive().api.parse().unwrap(),
    ));
    let digest = data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let extid = runtime.block_on(client.extid("checksum-sha256", &digest)).unwrap();
    assert_eq!(shown["tree"], extid.target.as_str());
}

#[test]
fn damaged_recipes_and_wrong_trees_are_refused_with_the_reason() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg"), TreeShape { empty_dirs: false, non_utf8: false });
    sh("tar -czf pkg.tar.gz pkg", tmp.path());
    let recipe = round_trip(&tmp.path().join("pkg.tar.gz"), tmp.path());

    let mut damaged = fs::read(&recipe).unwrap();
    let last = damaged.len() - 10;
    damaged[last] ^= 0xff;
    fs::write(tmp.path().join("damaged.recipe"), &damaged).unwrap();
    let stderr = failure(bridge().args(["recipe", "show"]).arg(tmp.path().join("damaged.recipe")));
    assert!(stderr.contains("the recipe is damaged"), "{stderr}");

    fs::write(tmp.path().join("pkg.tar.gz.x/pkg/x755"), b"changed").unwrap();
    let stderr = failure(
        bridge()
            .args(["recipe", "apply"])
            .arg(&recipe)
            .arg("--tree")
            .arg(tmp.path().join("pkg.tar.gz.x"))
            .arg("-o")
            .arg(tmp.path().join("out")),
    );
    assert!(stderr.contains("but the recipe needs swh:1:dir:"), "{stderr}");
    assert!(!tmp.path().join("out").exists());

    let stderr = failure(bridge().args(["recipe", "create"]).arg(&recipe).arg("-o").arg(tmp.path().join("r")));
    assert!(stderr.contains("not a tar archive"), "{stderr}");
    // Formats that are recognised but not modelled say so.
    fs::write(tmp.path().join("pkg.tar.zst"), b"\x28\xb5\x2f\xfd rest of a zstd frame").unwrap();
    let stderr = failure(
        bridge().args(["recipe", "create"]).arg(tmp.path().join("pkg.tar.zst")).arg("-o").arg(tmp.path().join("r")),
    );
    assert!(stderr.contains("unsupported: zstd"), "{stderr}");
}

#[test]
fn fetch_rebuilds_a_tarball_the_archive_keeps_unpacked_from_its_recipe() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("rebuilt-3.0"), TreeShape { empty_dirs: true, non_utf8: false });
    fs::remove_file(tmp.path().join("rebuilt-3.0/big.bin")).unwrap();
    sh("tar -cf - rebuilt-3.0 | gzip -9 > rebuilt-3.0.tar.gz", tmp.path());
    let tarball = tmp.path().join("rebuilt-3.0.tar.gz");
    let bytes = fs::read(&tarball).unwrap();
    let hex = line(tool("sha256sum").arg(&tarball)).split_whitespace().next().unwrap().to_owned();
    local_archive().load("directory", "rebuilt-3.0.tar.gz", &bytes, &[("sha256", &hex)], None);
    // Upstream is gone.
    fs::remove_file(local_archive().files_dir.join("rebuilt-3.0.tar.gz")).unwrap();

    let store = tmp.path().join("recipes");
    output(bridge().args(["recipe", "create"]).arg(&tarball).arg("--store").arg(&store));
    let fetch = |hash: &str, out: &Path, recipes: bool| {
        let mut cmd = bridge();
        cmd.args(["fetch", hash, "--no-cache", "--archive", &local_archive().api]).arg("-o").arg(out);
        cmd.arg("--url").arg(format!("{}rebuilt-3.0.tar.gz", local_archive().files_url));
        if recipes {
            cmd.arg("--recipes").arg(&store);
        }
        cmd.output().unwrap()
    };

    let without = fetch(&format!("sha256:{hex}"), &tmp.path().join("without.tar.gz"), false);
    assert!(String::from_utf8_lossy(&without.stderr).contains("recipe"));

    let out = tmp.path().join("fetched.tar.gz");
    let result = fetch(&format!("sha256:{hex}"), &out, true);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("+ recipe"), "{stderr}");
    assert!(fs::read(&out).unwrap() == bytes, "the rebuilt tarball differs");

    // By its sha512 too: no ExtID has it, the store's alias leads to the same tree.
    let sha512 = line(tool("nix").args(["hash", "file", "--type", "sha512"]).arg(&tarball));
    let out = tmp.path().join("by-sha512.tar.gz");
    let result = fetch(&sha512, &out, true);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(fs::read(&out).unwrap() == bytes);
}

#[test]
fn hostile_tarballs_get_no_recipe() {
    let tmp = temp_dir();
    fs::create_dir(tmp.path().join("a")).unwrap();
    fs::write(tmp.path().join("a/f"), b"x").unwrap();
    // A member that climbs out of the extraction root.
    sh("tar -cf evil.tar --transform 's,^a/f,../evil,' a/f && gzip -9 evil.tar", tmp.path());
    let stderr = failure(
        bridge().args(["recipe", "create"]).arg(tmp.path().join("evil.tar.gz")).arg("-o").arg(tmp.path().join("r")),
    );
    assert!(stderr.contains("contains `..`"), "{stderr}");
    assert!(!tmp.path().join("r").exists());
}
