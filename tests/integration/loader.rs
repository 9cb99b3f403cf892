//! `swh-bridge load`: capturing recipes from a sources.json, served by a local upstream, with the
//! state kept across runs.

use std::fs;
use std::process::Command;

use crate::local_archive::local_archive;
use crate::reference_tools::{bridge, line, output, tool};
use crate::trees::{TreeShape, make_tree, temp_dir};

fn sri(path: &std::path::Path) -> String {
    line(tool("nix").args(["hash", "file", "--type", "sha256"]).arg(path))
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
            .args(["load", "--json", "--no-cache", "--archive", &local_archive().api])
            .arg(&sources_json)
            .arg("--recipes")
            .arg(&store)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap();
        assert!(!out.status.success(), "a failed source makes the run fail");
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        lines.iter().map(|l| l["status"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
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
        cmd.args(["load", "--json", "--no-cache", "--archive", &local_archive().api, "--upstream-timeout", timeout])
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

    // Killed (SIGKILL) while the second source's upstream stalls, after the first was captured.
    let mut child = load("600").stdout(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status_of(&integrity(0)).as_deref() != Some("captured") {
        assert!(std::time::Instant::now() < deadline, "the first source was never captured");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status_of(&integrity(2)), None, "the third source was not reached");

    // The rerun keeps the capture, gives up on the stalled upstream, and goes on.
    let out = load("1").output().unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let statuses: Vec<&str> = lines.iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["already captured", "failed", "captured"]);
    let detail = lines[1]["detail"].as_str().unwrap();
    assert!(detail.contains("stalled-1.0.tar.gz") && detail.contains("timed out"), "{detail}");
}
