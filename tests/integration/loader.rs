//! `swh-bridge load`: capturing recipes from a sources.json, served by a local upstream, with the
//! state kept across runs.

use std::fs;
use std::process::Command;

use crate::local_archive::local_archive;

use crate::reference_tools::{bridge, line, output, swh_program, tool};
use crate::trees::{TreeShape, make_tree, temp_dir};

fn sri(path: &std::path::Path) -> String {
    line(tool("nix").args(["hash", "file", "--type", "sha256"]).arg(path))
}

/// The per-source lines of `load --json`, in the sources' order (they come as they finish).
fn per_source(stdout: &[u8]) -> Vec<serde_json::Value> {
    let mut lines: Vec<serde_json::Value> = String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l.get("index").is_some())
        .collect();
    lines.sort_by_key(|l| l["index"].as_u64());
    lines
}

#[test]
fn load_captures_recipes_once_and_records_failures_for_the_next_run() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("loaded-5.0"), TreeShape { empty_dirs: true, non_utf8: false });
    fs::write(tmp.path().join("loaded-5.0/only-here"), b"the loader test\n").unwrap();
    let sh = |script: &str| output(Command::new("sh").arg("-c").arg(script).current_dir(tmp.path()));
    sh("tar -cf - loaded-5.0 | gzip -9 > loaded-5.0.tar.gz && zip -q -r -y loaded-5.0.zip loaded-5.0");
    let upstream = &local_archive().files_dir;
    let mut entries = Vec::new();
    for name in ["loaded-5.0.tar.gz", "loaded-5.0.zip"] {
        fs::copy(tmp.path().join(name), upstream.join(name)).unwrap();
        entries.push((format!("{}{name}", local_archive().files_url), sri(&tmp.path().join(name))));
    }
    // Served bytes that do not match the hash pinned for them.
    fs::write(upstream.join("loaded-wrong.tar.gz"), b"not what was pinned").unwrap();
    entries.push((format!("{}loaded-wrong.tar.gz", local_archive().files_url), entries[0].1.clone()));
    let mut sources: Vec<serde_json::Value> = entries
        .iter()
        .map(|(url, integrity)| {
            serde_json::json!({"type": "url", "urls": [url], "integrity": integrity,
                               "outputHashAlgo": "sha256", "outputHashMode": "flat"})
        })
        .collect();
    // The wrong one pins a hash of its own, so that it is a separate source.
    let wrong = line(tool("nix").args(["hash", "to-sri", "--type", "sha256", &"ab".repeat(32)]));
    sources[2]["integrity"] = wrong.clone().into();
    sources.push(serde_json::json!({"type": "git", "git_url": "https://example.org/x.git",
        "git_ref": "0123456789abcdef0123456789abcdef01234567", "integrity": entries[0].1,
        "outputHashAlgo": "sha256", "outputHashMode": "recursive"}));
    let sources_json = tmp.path().join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "revision": "t", "sources": sources}).to_string())
        .unwrap();

    let store = tmp.path().join("recipes");
    let state = tmp.path().join("state.sqlite");
    let run = || {
        let out = bridge()
            .args(["load", "--json", "--no-cache", "--no-nixos-mirrors", "--archive", &local_archive().api])
            .arg(&sources_json)
            .arg("--recipes")
            .arg(&store)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap();
        assert!(!out.status.success(), "a failed source makes the run fail");
        per_source(&out.stdout).iter().map(|l| l["status"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(run(), ["captured", "captured", "failed", "skipped"]);
    assert_eq!(run(), ["already captured", "already captured", "failed", "skipped"]);

    // The store holds each file's recipe and bridge index entry.
    for (name, (_, integrity)) in ["loaded-5.0.tar.gz", "loaded-5.0.zip"].iter().zip(&entries) {
        let entry: serde_json::Value =
            serde_json::from_slice(&output(bridge().args(["recipe", "lookup", integrity, "--recipes"]).arg(&store)))
                .unwrap();
        assert_eq!(entry["size"], fs::metadata(tmp.path().join(name)).unwrap().len(), "{name}");
    }
    // The state: one attempt each for the captures, two for the failure, with its reason.
    let db = rusqlite::Connection::open(&state).unwrap();
    let attempts = |integrity: &str| -> (String, u32, Option<String>) {
        db.query_row("SELECT status, attempts, last_error FROM captures WHERE integrity = ?1", [integrity], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap()
    };
    assert_eq!(attempts(&entries[0].1).1, 1);
    let (status, tries, error) = attempts(&wrong);
    assert_eq!((status.as_str(), tries), ("failed", 2));
    let error = error.unwrap();
    assert!(error.contains("loaded-wrong.tar.gz") && error.contains("it hashes to"), "{error}");
}

#[test]
fn a_load_killed_mid_run_resumes_and_a_stalled_upstream_times_out() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("resumed-6.0"), TreeShape { empty_dirs: false, non_utf8: false });
    fs::write(tmp.path().join("resumed-6.0/only-here"), b"the resume test\n").unwrap();
    let sh = |script: &str| output(Command::new("sh").arg("-c").arg(script).current_dir(tmp.path()));
    sh("tar -cf - resumed-6.0 | xz > resumed-6.0.tar.xz && zip -q -r resumed-6.0.zip resumed-6.0");
    // An upstream that accepts connections and never answers.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled_url = format!("http://{}/stalled-1.0.tar.gz", stalled.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = stalled.incoming().collect();
        drop(held);
    });
    let upstream = &local_archive().files_dir;
    let mut sources = Vec::new();
    for (name, url) in [
        ("resumed-6.0.tar.xz", format!("{}resumed-6.0.tar.xz", local_archive().files_url)),
        ("", stalled_url),
        ("resumed-6.0.zip", format!("{}resumed-6.0.zip", local_archive().files_url)),
    ] {
        let integrity = if name.is_empty() {
            line(tool("nix").args(["hash", "to-sri", "--type", "sha256", &"cd".repeat(32)]))
        } else {
            fs::copy(tmp.path().join(name), upstream.join(name)).unwrap();
            sri(&tmp.path().join(name))
        };
        sources.push(serde_json::json!({"type": "url", "urls": [url], "integrity": integrity,
                                        "outputHashAlgo": "sha256", "outputHashMode": "flat"}));
    }
    let integrity = |i: usize| sources[i]["integrity"].as_str().unwrap().to_owned();
    let sources_json = tmp.path().join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "sources": sources}).to_string()).unwrap();
    let (store, state) = (tmp.path().join("recipes"), tmp.path().join("state.sqlite"));
    let load = |timeout: &str| {
        let mut cmd = bridge();
        cmd.args(["load", "--json", "--no-cache", "--no-nixos-mirrors", "--archive", &local_archive().api])
            .args(["--upstream-timeout", timeout])
            .arg(&sources_json)
            .arg("--recipes")
            .arg(&store)
            .arg("--state")
            .arg(&state);
        cmd
    };
    let status_of = |integrity: &str| -> Option<String> {
        let db = rusqlite::Connection::open(&state).ok()?;
        db.query_row("SELECT status FROM captures WHERE integrity = ?1", [integrity], |r| r.get(0)).ok()
    };

    // Killed (SIGKILL) while the second source's upstream stalls; captures run side by side, so
    // the stall holds up neither the first source nor the third.
    let mut child = load("600").stdout(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while [0, 2].iter().any(|&i| status_of(&integrity(i)).as_deref() != Some("captured")) {
        assert!(std::time::Instant::now() < deadline, "the first and third sources were never captured");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(child.try_wait().unwrap(), None, "the run still waits for the stalled upstream");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status_of(&integrity(1)), None, "the stalled source has no outcome yet");

    // The rerun keeps the captures, gives up on the stalled upstream, and records that.
    let out = load("1").output().unwrap();
    let lines = per_source(&out.stdout);
    let statuses: Vec<&str> = lines.iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["already captured", "failed", "already captured"]);
    let detail = lines[1]["detail"].as_str().unwrap();
    assert!(detail.contains("stalled-1.0.tar.gz") && detail.contains("timed out"), "{detail}");
}

/// A small tree with what recipes and NAR hashes must keep: an executable, a symlink, a
/// subdirectory, and a file that makes it unlike any other test's.
fn small_tree(root: &std::path::Path, unique: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(root.join("src")).unwrap();
    fs::write(root.join("README"), format!("{unique}\n")).unwrap();
    fs::write(root.join("src/main.c"), b"int main(void) { return 0; }\n").unwrap();
    fs::write(root.join("configure"), b"#!/bin/sh\necho configured\n").unwrap();
    fs::set_permissions(root.join("configure"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/main.c", root.join("main.c")).unwrap();
}

#[test]
fn after_a_load_every_source_comes_back_through_fetch_once_upstream_is_gone() {
    let tmp = temp_dir();
    let dir = tmp.path();
    small_tree(&dir.join("e2e-1.0"), "end to end: a tarball pinned by its flat hash");
    small_tree(&dir.join("e2e-zip-2.0"), "end to end: a tarball pinned by its unpacked NAR hash");
    small_tree(&dir.join("e2e-cached-3.0"), "end to end: a tarball only the binary cache still has");
    fs::write(dir.join("e2e-fix.patch"), b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-end to end\n+a plain file\n").unwrap();
    let sh = |script: &str| output(Command::new("sh").arg("-c").arg(script).current_dir(dir));
    sh("tar -cf - e2e-1.0 | gzip -9 > e2e-1.0.tar.gz && tar -cf - e2e-zip-2.0 | gzip -1 > e2e-zip-2.0.tar.gz \
        && tar -cf - e2e-cached-3.0 | xz > e2e-cached-3.0.tar.xz");
    let hash = |algo: &str, path: &std::path::Path| line(tool("nix").args(["hash", "file", "--type", algo]).arg(path));
    let nar_sri = |path: &std::path::Path| {
        let base32 = line(tool("nix-hash").args(["--type", "sha256", "--base32"]).arg(path));
        line(tool("nix").args(["hash", "to-sri", "--type", "sha256", &base32]))
    };
    let hex = |path: &std::path::Path| line(tool("sha256sum").arg(path)).split_whitespace().next().unwrap().to_owned();

    // The binary cache: the NAR of the xz tarball, found by its store path's narinfo, compressed
    // with zstd as cache.nixos.org's newer NARs are.
    let cache = local_archive().files_dir.join("e2e-cache");
    fs::create_dir_all(cache.join("nar")).unwrap();
    let cached = dir.join("e2e-cached-3.0.tar.xz");
    let nar = output(tool("nix-store").arg("--dump").arg(&cached));
    fs::write(dir.join("cached.nar"), &nar).unwrap();
    sh("zstd -q -19 cached.nar -o cached.nar.zst");
    fs::copy(dir.join("cached.nar.zst"), cache.join("nar/cached.nar.zst")).unwrap();
    let nar_hash = line(tool("nix-hash").args(["--type", "sha256", "--flat", "--base32"]).arg(dir.join("cached.nar")));
    let store_hash = "0123456789abcdfghijklmnpqrsvwxyz";
    fs::write(
        cache.join(format!("{store_hash}.narinfo")),
        format!(
            "StorePath: /nix/store/{store_hash}-e2e-cached-3.0.tar.xz\nURL: nar/cached.nar.zst\nCompression: zstd\n\
             NarHash: sha256:{nar_hash}\nNarSize: {}\nReferences: \n",
            nar.len()
        ),
    )
    .unwrap();

    // An upstream that fails: a 500, and a body cut off half-way.
    let mut upstream = mockito::Server::new();
    let _failing = upstream.mock("GET", "/e2e-500.tar.gz").with_status(500).create();
    let whole: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    fs::write(dir.join("whole"), &whole).unwrap();
    let _cut = upstream
        .mock("GET", "/e2e-truncated.tar.gz")
        .with_chunked_body(move |w| {
            w.write_all(&whole[..50_000])?;
            Err(std::io::Error::other("the connection drops"))
        })
        .create();

    let files = &local_archive().files_url;
    let files_dir = &local_archive().files_dir;
    for name in ["e2e-1.0.tar.gz", "e2e-zip-2.0.tar.gz", "e2e-fix.patch"] {
        fs::copy(dir.join(name), files_dir.join(name)).unwrap();
    }
    let flat = |url: String, integrity: String| serde_json::json!({"type": "url", "urls": [url], "integrity": integrity, "outputHashMode": "flat"});
    let mut sources = vec![
        flat(format!("{files}e2e-1.0.tar.gz"), hash("sha256", &dir.join("e2e-1.0.tar.gz"))),
        serde_json::json!({"type": "url", "urls": [format!("{files}e2e-zip-2.0.tar.gz")],
                           "integrity": nar_sri(&dir.join("e2e-zip-2.0")), "outputHashMode": "recursive"}),
        flat(format!("{files}e2e-fix.patch"), hash("sha512", &dir.join("e2e-fix.patch"))),
        flat("http://127.0.0.1:1/e2e-cached-3.0.tar.xz".into(), hash("sha256", &cached)),
        flat(format!("{}/e2e-500.tar.gz", upstream.url()), hash("sha256", &dir.join("cached.nar"))),
        flat(format!("{}/e2e-truncated.tar.gz", upstream.url()), hash("sha256", &dir.join("whole"))),
    ];
    sources[3]["nixStorePath"] = format!("/nix/store/{store_hash}-e2e-cached-3.0.tar.xz").into();
    let sources_json = dir.join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "sources": sources}).to_string()).unwrap();

    let store = dir.join("recipes");
    let out = bridge()
        .args(["load", "--json", "--no-cache", "--no-nixos-mirrors", "--archive", &local_archive().api])
        .args(["--binary-cache", &format!("{files}e2e-cache")])
        .arg(&sources_json)
        .arg("--recipes")
        .arg(&store)
        .arg("--state")
        .arg(dir.join("state.sqlite"))
        .output()
        .unwrap();
    let lines = per_source(&out.stdout);
    let statuses: Vec<(&str, &str)> =
        lines.iter().map(|l| (l["kind"].as_str().unwrap(), l["status"].as_str().unwrap())).collect();
    assert_eq!(
        statuses,
        [
            ("archive", "captured"),
            ("recursive", "captured"),
            ("file", "captured"),
            ("archive", "captured"),
            ("archive", "failed"),
            ("archive", "failed")
        ],
        "{lines:#?}"
    );
    let detail = |i: usize| lines[i]["detail"].as_str().unwrap().to_owned();
    assert!(detail(4).contains("e2e-500.tar.gz") && detail(4).contains("500"), "{}", detail(4));
    assert!(detail(5).contains("e2e-truncated.tar.gz"), "{}", detail(5));
    for failed in [4, 5] {
        let integrity = sources[failed]["integrity"].as_str().unwrap();
        let lookup = bridge().args(["recipe", "lookup", integrity, "--recipes"]).arg(&store).output().unwrap();
        assert!(!lookup.status.success(), "a failed download left a bridge entry");
    }
    // The file's content SWHID is what `swh identify` gives it.
    let identified = line(Command::new(swh_program()).arg("identify").arg(dir.join("e2e-fix.patch")));
    assert!(identified.starts_with(&detail(2)), "{identified} vs {}", detail(2));

    // The store, published as a static site that the file server serves.
    let site = files_dir.join("e2e-site");
    let published = bridge()
        .args(["publish", "--json", "--recipes"])
        .arg(&store)
        .arg("--out")
        .arg(&site)
        .arg("--sources")
        .arg(&sources_json)
        .arg("--state")
        .arg(dir.join("state.sqlite"))
        .output()
        .unwrap();
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(stats["recipes"], 3, "{stats}");
    assert_eq!(stats["captures"], serde_json::json!({"captured": 4, "failed": 2}));
    let site_url = format!("{files}e2e-site/");

    // Software Heritage archives the URL sources as its nixguix lister has it do: tarballs
    // unpacked, by their flat hash only; the plain file as a content, by its sha256 only.
    for name in ["e2e-1.0.tar.gz", "e2e-zip-2.0.tar.gz", "e2e-cached-3.0.tar.xz"] {
        let bytes = fs::read(dir.join(name)).unwrap();
        local_archive().load("directory", name, &bytes, &[("sha256", &hex(&dir.join(name)))], None);
    }
    let patch = fs::read(dir.join("e2e-fix.patch")).unwrap();
    local_archive().load("content", "e2e-fix.patch", &patch, &[("sha256", &hex(&dir.join("e2e-fix.patch")))], None);
    // Then upstream goes away.
    for name in ["e2e-1.0.tar.gz", "e2e-zip-2.0.tar.gz", "e2e-fix.patch", "e2e-cached-3.0.tar.xz"] {
        fs::remove_file(files_dir.join(name)).unwrap();
    }
    fs::remove_dir_all(&cache).unwrap();

    let fetch = |index: usize, recursive: bool, recipes: bool| {
        let out = dir.join(format!("fetched-{index}-{recipes}"));
        let mut cmd = bridge();
        cmd.args(["fetch", sources[index]["integrity"].as_str().unwrap(), "--no-cache"])
            .args(["--archive", &local_archive().api, "-o"])
            .arg(&out);
        if recursive {
            cmd.args(["--mode", "recursive"]);
        }
        if recipes {
            cmd.args(["--recipes", &site_url]);
        }
        let result = cmd.output().unwrap();
        (result, out)
    };
    for (index, name) in [(0, "e2e-1.0.tar.gz"), (2, "e2e-fix.patch"), (3, "e2e-cached-3.0.tar.xz")] {
        let (result, out) = fetch(index, false, true);
        assert!(result.status.success(), "{name}: {}", String::from_utf8_lossy(&result.stderr));
        assert_eq!(fs::read(&out).unwrap(), fs::read(dir.join(name)).unwrap(), "{name}");
    }
    let (result, out) = fetch(1, true, true);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(nar_sri(&out), sources[1]["integrity"].as_str().unwrap());
    // Without the store, the sha512 of the plain file leads nowhere: no ExtID names it.
    let (result, _) = fetch(2, false, false);
    assert!(!result.status.success(), "the archive alone found the file by sha512");
}
