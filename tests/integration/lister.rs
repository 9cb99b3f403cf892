//! `swh-bridge list` on the miniature package set under tests/lister, with real Nix, and the
//! `sources` commands; the output is also fed to Software Heritage's own nixguix lister.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::reference_tools::{bridge, failure, git_in, line, output, tool};
use crate::trees::temp_dir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lister").join(name)
}

fn list(args: &[&str], out: &Path) -> String {
    let mut cmd = bridge();
    cmd.arg("list").args(args).arg("-o").arg(out).env("NIX_CONFIG", "substituters =");
    let result = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "swh-bridge list failed:\n{stderr}");
    stderr
}

#[test]
fn list_matches_the_hand_checked_sources_json() {
    let tmp = temp_dir();
    let expected = fs::read(fixture("expected-sources.json")).unwrap();
    for jobs in ["1", "3"] {
        let out = tmp.path().join(format!("sources-{jobs}.json"));
        let stderr = list(&[fixture("nixpkgs").to_str().unwrap(), "--jobs", jobs], &out);
        assert!(fs::read(&out).unwrap() == expected, "--jobs {jobs}: output differs from expected-sources.json");
        for (attribute, reason) in [
            ("abortdep", "abortdep's dependency aborts"),
            ("broken-abort", "broken-abort cannot be evaluated"),
            ("broken-assert", "assertion"),
            ("broken-throw", "broken-throw has been removed"),
            ("extraPackages.broken", "extraPackages.broken is gone"),
        ] {
            assert!(stderr.contains(&format!("{attribute}: ")) && stderr.contains(reason), "{attribute}:\n{stderr}");
        }
        assert!(stderr.contains("5 attributes failed"), "null is no failure:\n{stderr}");
        assert!(stderr.contains("mirror://nowhere/um-1.0.tar.gz"), "{stderr}");
    }
    assert!(fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("sources.json.example")).unwrap() == expected);
}

/// The store paths and hashes of the expected file, as Nix itself computes and converts them for
/// each package's source.
#[test]
fn expected_store_paths_and_hashes_are_nixs() {
    let expr = format!(
        "let p = import {} {{ }}; in map (d: {{ path = d.outPath; hash = d.outputHash; algo = d.outputHashAlgo; }}) [
            p.hello.src p.hexpkg.src (builtins.head p.hexpkg.patches) p.sripkg.src p.sha512pkg.src
            p.sha1pkg.src p.urlspkg.src p.zippkg.src p.ghpkg.src p.gitsubpkg.src p.gitsparsepkg.src
            p.svnpkg.src p.hgpkg.src p.shared-a.src (builtins.head p.withdep.buildInputs).src
            p.extraPackages.nested.src p.dup-a.src p.unknownmirror.src ]",
        fixture("nixpkgs").display()
    );
    let mut nix = tool("nix-instantiate");
    nix.args(["--eval", "--strict", "--json", "--readonly-mode", "-E", &expr]);
    let derivations: Vec<Value> = serde_json::from_slice(&output(&mut nix)).unwrap();
    let mut reference = BTreeMap::new();
    for d in derivations {
        let hash = d["hash"].as_str().unwrap();
        let sri = match d["algo"].as_str() {
            Some(algo) => line(tool("nix").args(["hash", "to-sri", "--type", algo, hash])),
            None => line(tool("nix").args(["hash", "to-sri", hash])),
        };
        reference.insert(d["path"].as_str().unwrap().to_owned(), sri);
    }
    let expected: Value = serde_json::from_slice(&fs::read(fixture("expected-sources.json")).unwrap()).unwrap();
    let listed: BTreeMap<String, String> = expected["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["nixStorePath"].as_str().unwrap().to_owned(), s["integrity"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(listed, reference);
}

#[test]
fn a_saved_raw_evaluation_gives_the_same_file_again() {
    let tmp = temp_dir();
    let (out, raw, again) = (tmp.path().join("a.json"), tmp.path().join("raw.json"), tmp.path().join("b.json"));
    list(&[fixture("nixpkgs").to_str().unwrap(), "--jobs", "2", "--save-raw", raw.to_str().unwrap()], &out);
    let stderr = list(&["--from-raw", raw.to_str().unwrap()], &again);
    assert!(fs::read(&out).unwrap() == fs::read(&again).unwrap());
    assert!(stderr.contains("abortdep: evaluation aborted"), "failures are kept with their reasons:\n{stderr}");
}

#[test]
fn a_failing_attribute_path_is_explained() {
    let tmp = temp_dir();
    let out = tmp.path().join("sources.json");
    let stderr =
        list(&[fixture("nixpkgs").to_str().unwrap(), "--attr", "extraPackages.broken", "--attr", "hello"], &out);
    assert!(stderr.contains("extraPackages.broken: extraPackages.broken is gone"), "{stderr}");
}

#[test]
fn list_checks_out_a_revision_and_records_it() {
    let tmp = temp_dir();
    let repo = tmp.path().join("nixpkgs");
    output(tool("cp").arg("-r").arg(fixture("nixpkgs")).arg(&repo));
    let git = |args: &[&str]| git_in(&repo, args);
    output(&mut git(&["init", "-q"]));
    output(&mut git(&["add", "-A"]));
    output(&mut git(&["commit", "-q", "-m", "miniature nixpkgs"]));
    let commit = line(&mut git(&["rev-parse", "HEAD"]));
    let time = line(&mut git(&["show", "-s", "--format=%ct", "HEAD"]));
    // The working tree loses every package; the revision still has them.
    fs::write(repo.join("pkgs/top-level/default.nix"), "{ config ? { } }: { }").unwrap();

    let out = tmp.path().join("sources.json");
    list(&[repo.to_str().unwrap(), "--rev", "HEAD"], &out);
    let listed: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(listed["revision"], commit);
    assert_eq!(listed["timestamp"], time);
    assert_eq!(listed["sources"].as_array().unwrap().len(), 18);

    let stderr = failure(bridge().args(["list"]).arg(&repo).args(["--rev", "no-such-rev", "-o"]).arg(&out));
    assert!(stderr.contains("failed to check out revision no-such-rev"), "{stderr}");
}

#[test]
fn list_starts_from_all_tarballs_nix_when_the_revision_has_it() {
    let tmp = temp_dir();
    let nixpkgs = tmp.path().join("nixpkgs");
    output(tool("cp").arg("-r").arg(fixture("nixpkgs")).arg(&nixpkgs));
    fs::create_dir_all(nixpkgs.join("maintainers/scripts")).unwrap();
    // Like Nixpkgs' (release.nix jobs): nested sets without recurseForDerivations.
    fs::write(
        nixpkgs.join("maintainers/scripts/all-tarballs.nix"),
        "let p = import ../../. { }; in { hello = p.hello; sripkg.x86_64-linux = p.sripkg; }",
    )
    .unwrap();
    let out = tmp.path().join("sources.json");
    list(&[nixpkgs.to_str().unwrap()], &out);
    let listed: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    let mut urls: Vec<&str> =
        listed["sources"].as_array().unwrap().iter().map(|s| s["urls"][0].as_str().unwrap()).collect();
    urls.sort();
    assert_eq!(urls, ["https://example.org/sripkg-2.0.tar.bz2", "https://ftpmirror.gnu.org/hello/hello-2.12.1.tar.gz"]);
}

#[test]
fn list_starts_from_the_attributes_given() {
    let tmp = temp_dir();
    let out = tmp.path().join("sources.json");
    list(&[fixture("nixpkgs").to_str().unwrap(), "--attr", "hello", "--attr", "extraPackages.nested"], &out);
    let listed: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    let urls: Vec<&str> =
        listed["sources"].as_array().unwrap().iter().map(|s| s["urls"][0].as_str().unwrap()).collect();
    assert_eq!(urls, ["https://example.org/nested-1.0.tar.gz", "https://ftpmirror.gnu.org/hello/hello-2.12.1.tar.gz"]);
}

#[test]
fn swh_nixguix_lister_reads_every_entry() {
    let venv_python = {
        let swh = line(tool("sh").args(["-c", "command -v swh || echo $HOME/.cache/swh-bridge/venv/bin/swh"]));
        Path::new(&swh).with_file_name("python")
    };
    let mut python = tool(venv_python.to_str().unwrap());
    python.arg(fixture("nixguix_origins.py")).arg(fixture("expected-sources.json"));
    let printed = String::from_utf8(output(&mut python)).unwrap();
    let mut origins: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in printed.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()) {
        assert!(record.get("dropped").is_none(), "the lister dropped an entry: {record}");
        origins
            .entry(record["url"].as_str().unwrap().to_owned())
            .or_default()
            .insert(record["visit_type"].as_str().unwrap().to_owned());
    }
    // What each entry must become: flat archives and recursive sources are unpacked into
    // directories, other flat files are contents, VCS sources are both a repository and a checkout.
    let expected: BTreeMap<&str, &[&str]> = [
        ("https://github.com/NixOS/nixpkgs", &["git"][..]),
        ("https://ftpmirror.gnu.org/hello/hello-2.12.1.tar.gz", &["tarball-directory"][..]),
        ("https://example.org/hexpkg/hexpkg-1.0.tar.xz", &["tarball-directory"][..]),
        ("https://example.org/hexpkg/fix-build.patch", &["content"][..]),
        ("https://example.org/sripkg-2.0.tar.bz2", &["tarball-directory"][..]),
        ("https://downloads.sourceforge.net/sha512pkg/sha512pkg-3.1.zip", &["tarball-directory"][..]),
        ("https://example.org/sha1pkg-0.9.tgz", &["tarball-directory"][..]),
        ("https://primary.example.org/urlspkg-1.2.tar.gz", &["tarball-directory"][..]),
        ("https://example.org/zippkg-4.0.zip", &["tarball-directory"][..]),
        ("https://github.com/example/ghpkg/archive/v5.2.tar.gz", &["tarball-directory"][..]),
        ("https://github.com/example/gitsubpkg.git", &["git", "git-checkout"][..]),
        ("https://git.example.org/gitsparsepkg.git", &["git", "git-checkout"][..]),
        ("svn://svn.example.org/svnpkg/trunk", &["svn", "svn-export"][..]),
        ("https://hg.example.org/hgpkg", &["hg", "hg-checkout"][..]),
        ("https://example.org/shared/shared-1.0.tar.gz", &["tarball-directory"][..]),
        ("https://example.org/libdep-0.1.tar.gz", &["tarball-directory"][..]),
        ("https://example.org/nested-1.0.tar.gz", &["tarball-directory"][..]),
        ("https://example.org/dup-1.0.tar.gz", &["tarball-directory"][..]),
        ("https://example.org/um-1.0.tar.gz", &["tarball-directory"][..]),
    ]
    .into_iter()
    .collect();
    let expected: BTreeMap<String, BTreeSet<String>> = expected
        .into_iter()
        .map(|(url, types)| (url.to_owned(), types.iter().map(|t| t.to_string()).collect()))
        .collect();
    assert_eq!(origins, expected);
}

#[test]
fn validate_reports_every_problem_with_index_and_field() {
    let out = bridge().args(["sources", "validate"]).arg(fixture("malformed-sources.json")).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "sources[1].integrity: missing",
        "sources[2].integrity: invalid hash `sha256-notbase64!!`",
        "sources[3].type: expected url, git, hg or svn, found \"cvs\"",
        "sources[4].git_url: missing",
        "sources[5].urls: expected a list, found a string",
        "sources[6].svn_revision: expected a number or a string, found a list",
        "sources[6].integrity: expected a string, found a number",
        "sources[6].submodule: expected a boolean, found a string",
        "sources[7].urls: empty",
        "sources[7].integrity: invalid hash",
        "sources[7].outputHashMode: expected flat or recursive, found `sideways`",
        "sources[8]: expected an object, found a string",
        "sources[9].urls[0]: `not a url` is not a URL",
        "sources[9].integrity: invalid hash `sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=`: it is sha256, but sha512 was expected",
        "sources[9].colour: unknown field",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
    assert!(!stdout.contains("sources[0]"), "the valid entry was reported:\n{stdout}");

    for valid in ["expected-sources.json", "guix-sources.json"] {
        let out = bridge().args(["sources", "validate"]).arg(fixture(valid)).output().unwrap();
        assert!(out.status.success(), "{valid}: {}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn diff_names_added_removed_and_changed_sources() {
    let tmp = temp_dir();
    let old: Value = serde_json::from_slice(&fs::read(fixture("expected-sources.json")).unwrap()).unwrap();
    let mut new = old.clone();
    let sources = new["sources"].as_array_mut().unwrap();
    let removed = sources.remove(0)["nixStorePath"].as_str().unwrap().to_owned();
    sources[0]["urls"] = serde_json::json!(["https://mirror.example.com/hexpkg-1.0.tar.xz"]);
    let changed = sources[0]["nixStorePath"].as_str().unwrap().to_owned();
    sources[1]["last_modified"] = serde_json::json!("Tue, 01 Oct 2024 00:00:00 GMT");
    sources.push(serde_json::json!({
        "type": "url", "urls": ["https://example.org/new-1.0.tar.gz"],
        "integrity": "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "outputHashMode": "flat"
    }));
    let (old_path, new_path) = (tmp.path().join("old.json"), tmp.path().join("new.json"));
    fs::write(&old_path, serde_json::to_vec(&old).unwrap()).unwrap();
    fs::write(&new_path, serde_json::to_vec(&new).unwrap()).unwrap();

    let human = String::from_utf8(output(bridge().args(["sources", "diff"]).arg(&old_path).arg(&new_path))).unwrap();
    assert!(human.contains(&format!("- {removed} ")), "{human}");
    assert!(human.contains(&format!("~ {changed} (urls)")), "{human}");
    assert!(
        human.contains("+ url:sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ= https://example.org/new-1.0.tar.gz"),
        "{human}"
    );
    assert_eq!(human.lines().count(), 3, "last_modified alone is no change:\n{human}");

    let json: Value =
        serde_json::from_slice(&output(bridge().args(["sources", "diff", "--json"]).arg(&old_path).arg(&new_path)))
            .unwrap();
    assert_eq!(json["added"].as_array().unwrap().len(), 1);
    assert_eq!(json["removed"][0]["nixStorePath"], removed.as_str());
    assert_eq!(json["changed"][0]["fields"], serde_json::json!(["urls"]));
}

#[test]
fn stats_count_nixpkgs_and_guix_files() {
    let json: Value = serde_json::from_slice(&output(
        bridge().args(["sources", "stats", "--json"]).arg(fixture("expected-sources.json")),
    ))
    .unwrap();
    assert_eq!(json["sources"], 18);
    assert_eq!(json["by_type"], serde_json::json!({ "git": 2, "hg": 1, "svn": 1, "url": 14 }));
    assert_eq!(json["by_hash_mode"], serde_json::json!({ "flat": 12, "recursive": 6 }));
    assert_eq!(json["by_hash_algo"], serde_json::json!({ "sha1": 1, "sha256": 16, "sha512": 1 }));
    assert_eq!(json["by_file_type"], serde_json::json!({ "archive": 13, "patch": 1 }));
    assert_eq!(json["top_hosts"][0], serde_json::json!(["example.org", 10]));

    let guix: Value = serde_json::from_slice(&output(
        bridge().args(["sources", "stats", "--json"]).arg(fixture("guix-sources.json")),
    ))
    .unwrap();
    assert_eq!(guix["sources"], 4);
    assert_eq!(guix["without_origin"], 2);
    assert_eq!(guix["by_type"], serde_json::json!({ "git": 1, "hg": 1, "svn": 1, "url": 1 }));
}
