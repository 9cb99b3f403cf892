//! `swh-bridge list` on the miniature package set under tests/lister, with real Nix, and the
//! `sources` commands; the output is also fed to Software Heritage's own nixguix lister.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::reference_tools::{add_to_binary_cache, bridge, failure, git_in, line, output, tool};
use crate::trees::temp_dir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lister").join(name)
}

/// `swh-bridge list ARGS -o OUT`, which must succeed; no binary cache is asked unless ARGS name
/// one. Returns its standard error.
fn list(args: &[&str], out: &Path) -> String {
    let mut cmd = bridge();
    cmd.arg("list").args(args).arg("-o").arg(out).env("NIX_CONFIG", "substituters =");
    if !args.contains(&"--binary-cache") {
        cmd.arg("--no-narinfo");
    }
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
            ("missingarg", "called without required argument 'patches' (at pkgs/top-level/default.nix:"),
        ] {
            assert!(stderr.contains(&format!("{attribute}: ")) && stderr.contains(reason), "{attribute}:\n{stderr}");
        }
        assert!(stderr.contains("6 attributes failed"), "null is no failure:\n{stderr}");
        assert!(stderr.contains("kept as they are:\n    mirror://nowhere/um-1.0.tar.gz"), "{stderr}");
        assert!(stderr.contains("1 fixed outputs have no URL") && stderr.contains("-gopkg-vendor "), "{stderr}");
    }
    assert!(fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("sources.json.example")).unwrap() == expected);
}

/// The derivations of a package set's root attributes, as `nix-instantiate` makes them: each
/// top-level attribute on its own (one that fails is skipped), and the attributes of a set that
/// asks to be recursed into.
fn instantiate_roots(nixpkgs: &Path, store: &Path) -> Vec<String> {
    // What Nix makes of `expr`; null if it fails.
    let nix_eval = |expr: String| -> Value {
        let mut cmd = tool("nix-instantiate");
        cmd.arg("--store").arg(store).args(["--eval", "--strict", "--json", "-E", &expr]);
        let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let set = format!("(import {} {{ }})", nixpkgs.display());
    let mut pending: Vec<String> = serde_json::from_value(nix_eval(format!("builtins.attrNames {set}"))).unwrap();
    let mut drvs = Vec::new();
    while let Some(path) = pending.pop() {
        let mut instantiate = tool("nix-instantiate");
        instantiate.arg("--store").arg(store).arg(nixpkgs).args(["-A", &path]);
        let out = instantiate.stdin(std::process::Stdio::null()).output().unwrap();
        if out.status.success() {
            drvs.extend(String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned));
            continue;
        }
        let recurse =
            format!("let v = {set}.{path}; in (builtins.tryEval (v.recurseForDerivations or false)).value == true");
        if nix_eval(recurse) == Value::Bool(true) {
            let names: Vec<String> =
                serde_json::from_value(nix_eval(format!("builtins.attrNames {set}.{path}"))).unwrap();
            pending.extend(names.into_iter().filter(|n| n != "recurseForDerivations").map(|n| format!("{path}.{n}")));
        }
    }
    drvs
}

/// The fixed-output derivations with a `url` or `urls` in the closure of `drvs`, by Nix's own
/// tools (`nix-store -qR`, `nix show-derivation`): store path → SRI hash.
fn fixed_outputs_with_urls(store: &Path, drvs: &[String]) -> BTreeMap<String, String> {
    let mut query = tool("nix-store");
    query.arg("--store").arg(store).args(["--query", "--requisites"]).args(drvs);
    let closure: Vec<String> = String::from_utf8(output(&mut query))
        .unwrap()
        .lines()
        .filter(|p| p.ends_with(".drv"))
        .map(str::to_owned)
        .collect();
    let mut show = tool("nix");
    show.args(["show-derivation", "--store"]).arg(store).args(&closure);
    let shown: BTreeMap<String, Value> = serde_json::from_slice(&output(&mut show)).unwrap();
    let mut fixed = BTreeMap::new();
    for derivation in shown.values() {
        let out = &derivation["outputs"]["out"];
        let (Some(hash), Some(algo)) = (out["hash"].as_str(), out["hashAlgo"].as_str()) else { continue };
        let env = &derivation["env"];
        if env.get("url").is_none() && env.get("urls").is_none() {
            continue;
        }
        let algo = algo.trim_start_matches("r:");
        let sri = line(tool("nix").args(["hash", "to-sri", "--type", algo, hash]));
        fixed.insert(out["path"].as_str().unwrap().to_owned(), sri);
    }
    fixed
}

/// What `list` wrote: store path → SRI hash.
fn listed(path: &Path) -> BTreeMap<String, String> {
    let file: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    file["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["nixStorePath"].as_str().unwrap().to_owned(), s["integrity"].as_str().unwrap().to_owned()))
        .collect()
}

/// Exactly the sources the builds need, as Nix's own tools find them: also those reached only
/// through strings (buildEnv's JSON, a linkFarm, a configure flag), none reached only through
/// passthru or meta.
#[test]
fn the_listed_sources_are_the_fixed_outputs_of_the_build_closure() {
    let tmp = temp_dir();
    let store = tmp.path().join("store");
    let truth = fixed_outputs_with_urls(&store, &instantiate_roots(&fixture("nixpkgs"), &store));
    let out = tmp.path().join("sources.json");
    list(&[fixture("nixpkgs").to_str().unwrap(), "--jobs", "2"], &out);
    assert_eq!(listed(&out), truth);
    for blind_spot in ["-Foo-1.0.tar.gz", "-alpha-1.0.crate", "-tzdata-2024a.tar.gz"] {
        assert!(truth.keys().any(|path| path.ends_with(blind_spot)), "{blind_spot} is in the closure");
    }
    assert!(!truth.keys().any(|path| path.ends_with("not-an-input.tar.gz")), "passthru is no input");
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
fn an_unreachable_binary_cache_is_given_up_not_asked_for_every_source() {
    let tmp = temp_dir();
    let mut cache = mockito::Server::new();
    // At most the failures in a row that give a cache up, and the lookups already under way.
    let asked = cache
        .mock("GET", mockito::Matcher::Regex(r"^/[0-9a-z]{32}\.narinfo$".into()))
        .with_status(503)
        .expect_at_most(40)
        .create();
    let sources: Vec<Value> = (0..300)
        .map(|i| {
            serde_json::json!({
                "storePath": format!("/nix/store/{:0>32}-source-{i}", i.to_string().replace('0', "a")),
                "urls": [format!("https://example.org/source-{i}.tar.gz")],
                "outputHash": format!("{:0>64x}", i),
                "outputHashAlgo": "sha256",
                "outputHashMode": "flat",
            })
        })
        .collect();
    let raw = tmp.path().join("raw.json");
    fs::write(&raw, serde_json::json!({ "sources": sources }).to_string()).unwrap();
    let out = tmp.path().join("sources.json");
    let result = bridge()
        .args(["list", "--json", "--from-raw", raw.to_str().unwrap(), "--binary-cache", &cache.url(), "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(result.status.success(), "narinfos are extra: {}", String::from_utf8_lossy(&result.stderr));
    let summary: Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["sources"], 300);
    assert_eq!(summary["narinfo"]["failures"], 300, "{summary}");
    assert_eq!(summary["narinfo"]["given_up"], serde_json::json!([format!("{}/", cache.url())]));
    asked.assert();
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
    assert_eq!(listed["sources"].as_array().unwrap().len(), 24);

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

/// The origins Software Heritage's own nixguix lister makes of the sources.json at `path` (with
/// `nix_cache` as its binary cache, if given): URL → visit types, and their checksum layouts.
fn nixguix_origins(path: &Path, nix_cache: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let venv_python = {
        let swh = line(tool("sh").args(["-c", "command -v swh || echo $HOME/.cache/swh-bridge/venv/bin/swh"]));
        Path::new(&swh).with_file_name("python")
    };
    let mut python = tool(venv_python.to_str().unwrap());
    python.arg(fixture("nixguix_origins.py")).arg(path).args(nix_cache);
    let printed = String::from_utf8(output(&mut python)).unwrap();
    let mut origins: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in printed.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()) {
        assert!(record.get("dropped").is_none(), "the lister dropped an entry: {record}");
        let mut visit = record["visit_type"].as_str().unwrap().to_owned();
        if let Some(layout) = record["extra"]["checksum_layout"].as_str() {
            visit = format!("{visit} ({layout})");
        }
        origins.entry(record["url"].as_str().unwrap().to_owned()).or_default().insert(visit);
    }
    origins
}

fn origins(expected: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    expected.iter().map(|(url, visits)| (url.to_string(), visits.iter().map(|v| v.to_string()).collect())).collect()
}

/// What each entry of expected-sources.json must become: flat archives and recursive sources are
/// unpacked into directories, other flat files are contents, VCS sources are both a repository
/// and a checkout; the first URL is the origin.
const EXPECTED_ORIGINS: &[(&str, &[&str])] = &[
    ("https://github.com/NixOS/nixpkgs", &["git"]),
    ("https://ftpmirror.gnu.org/hello/hello-2.12.1.tar.gz", &["tarball-directory (standard)"]),
    ("https://example.org/hexpkg/hexpkg-1.0.tar.xz", &["tarball-directory (standard)"]),
    ("https://example.org/hexpkg/fix-build.patch", &["content (standard)"]),
    ("https://example.org/sripkg-2.0.tar.bz2", &["tarball-directory (standard)"]),
    ("https://downloads.sourceforge.net/sha512pkg/sha512pkg-3.1.zip", &["tarball-directory (standard)"]),
    ("https://example.org/sha1pkg-0.9.tgz", &["tarball-directory (standard)"]),
    ("https://primary.example.org/urlspkg-1.2.tar.gz", &["tarball-directory (standard)"]),
    ("https://example.org/zippkg-4.0.zip", &["tarball-directory (nar)"]),
    ("https://github.com/example/ghpkg/archive/v5.2.tar.gz", &["tarball-directory (nar)"]),
    ("https://github.com/example/gitsubpkg.git", &["git", "git-checkout (nar)"]),
    ("https://git.example.org/gitsparsepkg.git", &["git", "git-checkout (nar)"]),
    ("svn://svn.example.org/svnpkg/trunk", &["svn", "svn-export (nar)"]),
    ("https://hg.example.org/hgpkg", &["hg", "hg-checkout (nar)"]),
    ("https://example.org/shared/shared-1.0.tar.gz", &["tarball-directory (standard)"]),
    ("https://example.org/libdep-0.1.tar.gz", &["tarball-directory (standard)"]),
    ("https://example.org/nested-1.0.tar.gz", &["tarball-directory (standard)"]),
    ("https://example.org/dup-1.0.tar.gz", &["tarball-directory (standard)"]),
    // An unknown mirror is kept as it is, after the URL that can be downloaded.
    ("https://example.org/um-1.0.tar.gz", &["tarball-directory (standard)"]),
    ("https://cpan.example.org/Foo-1.0.tar.gz", &["tarball-directory (standard)"]),
    ("https://cpan.example.org/Bar-1.0.tar.gz", &["tarball-directory (standard)"]),
    ("https://static.crates.example.org/crates/alpha/alpha-1.0.crate", &["tarball-directory (standard)"]),
    ("https://static.crates.example.org/crates/beta/beta-1.0.crate", &["tarball-directory (standard)"]),
    ("https://example.org/tzdata-2024a.tar.gz", &["tarball-directory (standard)"]),
    ("https://example.org/cachedpkg-1.0.tar.gz", &["tarball-directory (standard)"]),
];

#[test]
fn swh_nixguix_lister_reads_every_entry() {
    assert_eq!(nixguix_origins(&fixture("expected-sources.json"), None), origins(EXPECTED_ORIGINS));
}

/// With a binary cache that has some of the sources (made by `nix copy`, served on loopback),
/// those get its narinfo and `Last-Modified`, the URL-less vendored output becomes a source by its
/// NAR, and SWH's lister makes the cache's NARs their origins.
#[test]
fn narinfos_from_a_binary_cache_make_the_lister_archive_its_nars() {
    let tmp = temp_dir();
    let archive = crate::local_archive::local_archive();
    let site = format!("lister-cache-{}", std::process::id());
    let (cache_dir, cache_url) = (archive.files_dir.join(&site), format!("{}{site}", archive.files_url));
    let chroot = tmp.path().join("chroot");
    // The same name and hash as the package set's fixed outputs: the same store paths.
    let source = tmp.path().join("cachedpkg-1.0.tar.gz");
    fs::write(&source, b"a source a binary cache keeps\n").unwrap();
    let vendor = tmp.path().join("gopkg-vendor");
    fs::create_dir(&vendor).unwrap();
    fs::write(vendor.join("modules.txt"), b"example.org/mod v1.0.0\n").unwrap();
    let source_path = add_to_binary_cache(&chroot, &cache_dir, &source, false);
    let vendor_path = add_to_binary_cache(&chroot, &cache_dir, &vendor, true);

    let out = tmp.path().join("sources.json");
    let stderr = list(&[fixture("nixpkgs").to_str().unwrap(), "--binary-cache", &cache_url], &out);
    assert!(stderr.contains("narinfos: 2 of 25 store paths in a binary cache (1 URL-less outputs listed"), "{stderr}");
    let file: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    let entry =
        |path: &str| file["sources"].as_array().unwrap().iter().find(|s| s["nixStorePath"] == path).cloned().unwrap();
    let cached = entry(&source_path);
    assert!(cached["narinfo"].as_str().unwrap().contains(&format!("StorePath: {source_path}")), "{cached}");
    assert!(cached["last_modified"].as_str().is_some_and(|t| t.ends_with(" GMT")), "{cached}");
    let vendored = entry(&vendor_path);
    let nar_url = vendored["urls"][0].as_str().unwrap().to_owned();
    assert!(nar_url.starts_with(&format!("{cache_url}/nar/")) && nar_url.ends_with(".nar.xz"), "{vendored}");
    assert_eq!(vendored["outputHashMode"], "recursive");

    let mut expected: Vec<(String, Vec<String>)> = EXPECTED_ORIGINS
        .iter()
        .filter(|(url, _)| *url != "https://example.org/cachedpkg-1.0.tar.gz")
        .map(|(url, visits)| (url.to_string(), visits.iter().map(|v| v.to_string()).collect()))
        .collect();
    let nar_of = |path: &str| {
        let narinfo = entry(path)["narinfo"].as_str().unwrap().to_owned();
        let url = narinfo.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap().to_owned();
        format!("{cache_url}/{url}")
    };
    expected.push((nar_of(&source_path), vec!["tarball-directory (standard)".into()]));
    expected.push((nar_of(&vendor_path), vec!["tarball-directory (nar)".into()]));
    let expected: BTreeMap<String, BTreeSet<String>> =
        expected.into_iter().map(|(url, visits)| (url, visits.into_iter().collect())).collect();
    assert_eq!(nixguix_origins(&out, Some(&cache_url)), expected);
}

/// A package set whose function takes no `overlays` (Nixpkgs before 17.03, some forks) and
/// whose all-tarballs.nix does not evaluate: listed from its top-level set, with a warning that
/// says where Nix failed.
#[test]
fn an_old_package_set_and_a_broken_all_tarballs_nix_are_still_listed() {
    let tmp = temp_dir();
    let out = tmp.path().join("sources.json");
    let stderr = list(&[fixture("oldpkgs").to_str().unwrap()], &out);
    assert!(
        stderr.contains("warning: maintainers/scripts/all-tarballs.nix does not evaluate")
            && stderr.contains("called with unexpected argument 'overlays'")
            && stderr.contains("(at maintainers/scripts/all-tarballs.nix:2:1)"),
        "{stderr}"
    );
    let file: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(file["sources"][0]["urls"][0], "https://ftpmirror.gnu.org/hello/hello-2.1.1.tar.gz");
}

/// `--system`, repeated: the union, each system's count, and failures per system.
#[test]
fn several_systems_are_listed_together() {
    let tmp = temp_dir();
    let out = tmp.path().join("sources.json");
    let summary = bridge()
        .args(["list", "--no-narinfo", "--json", "--system", "x86_64-linux", "--system", "aarch64-linux"])
        .arg(fixture("nixpkgs"))
        .arg("-o")
        .arg(&out)
        .env("NIX_CONFIG", "substituters =")
        .output()
        .unwrap();
    assert!(summary.status.success(), "{}", String::from_utf8_lossy(&summary.stderr));
    let summary: Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!(summary["by_system"], serde_json::json!({"aarch64-linux": 25, "x86_64-linux": 24}));
    assert_eq!(summary["sources"], 25);
    let arm_failures = summary["failed"].as_array().unwrap().iter().filter(|f| f["system"] == "aarch64-linux").count();
    assert_eq!(arm_failures, 6);
    assert!(listed(&out).keys().any(|path| path.ends_with("-armonly-1.0.tar.gz")));
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
    assert_eq!(json["sources"], 24);
    assert_eq!(json["by_type"], serde_json::json!({ "git": 2, "hg": 1, "svn": 1, "url": 20 }));
    assert_eq!(json["by_hash_mode"], serde_json::json!({ "flat": 18, "recursive": 6 }));
    assert_eq!(json["by_hash_algo"], serde_json::json!({ "sha1": 1, "sha256": 22, "sha512": 1 }));
    assert_eq!(json["by_file_type"], serde_json::json!({ "archive": 17, "crate": 2, "patch": 1 }));
    assert_eq!(json["top_hosts"][0], serde_json::json!(["example.org", 12]));

    let guix: Value = serde_json::from_slice(&output(
        bridge().args(["sources", "stats", "--json"]).arg(fixture("guix-sources.json")),
    ))
    .unwrap();
    assert_eq!(guix["sources"], 4);
    assert_eq!(guix["without_origin"], 2);
    assert_eq!(guix["by_type"], serde_json::json!({ "git": 1, "hg": 1, "svn": 1, "url": 1 }));
}
