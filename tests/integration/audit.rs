//! `swh-bridge audit`: verdicts against the real local archive, checked against what `fetch`
//! achieves for every source; request economy, the cache and a rate limit against mockito; the
//! HTML report in headless Chromium.

use std::fs;
use std::path::Path;

use crate::local_archive::local_archive;
use crate::reference_tools::{bridge, output, sri, tool};
use crate::trees::tarball;
use crate::trees::{sha256_hex, temp_dir};

fn audit(sources: &Path, state: &Path, args: &[&str]) -> (bool, serde_json::Value) {
    let out = bridge().arg("audit").arg(sources).arg("--state").arg(state).args(args).output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), report)
}

#[test]
fn audit_verdicts_agree_with_what_fetch_achieves() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let archive = local_archive();
    let store = dir.join("recipes");
    let files = &archive.files_url;

    let plain = b"the audit test: a plain file\n".to_vec();
    archive.load("content", "audit-plain.txt", &plain, &[("sha256", &sha256_hex(&plain))], None);
    let (with_recipe, _) = tarball(dir, "audit-recipe-1.0", "the audit test");
    archive.load("directory", "audit-recipe-1.0.tar.gz", &with_recipe, &[("sha256", &sha256_hex(&with_recipe))], None);
    output(bridge().args(["recipe", "create"]).arg(dir.join("audit-recipe-1.0.tar.gz")).arg("--store").arg(&store));
    let (without_recipe, _) = tarball(dir, "audit-norecipe-1.0", "the audit test");
    archive.load(
        "directory",
        "audit-norecipe-1.0.tar.gz",
        &without_recipe,
        &[("sha256", &sha256_hex(&without_recipe))],
        None,
    );
    let (nar_loaded, nar_hex) = tarball(dir, "audit-nar-1.0", "the audit test");
    archive.load("directory", "audit-nar-1.0.tar.gz", &nar_loaded, &[("sha256", &nar_hex)], Some("nar"));
    let (bridged, bridged_nar) = tarball(dir, "audit-bridged-1.0", "the audit test");
    archive.load("directory", "audit-bridged-1.0.tar.gz", &bridged, &[("sha256", &sha256_hex(&bridged))], None);
    output(bridge().args(["recipe", "create"]).arg(dir.join("audit-bridged-1.0.tar.gz")).arg("--store").arg(&store));

    let url = |name: &str| format!("{files}{name}");
    let flat = |name: &str, hex: &str| serde_json::json!({"type": "url", "urls": [url(name)], "integrity": sri("sha256", hex), "outputHashMode": "flat"});
    let recursive = |name: &str, hex: &str| serde_json::json!({"type": "url", "urls": [url(name)], "integrity": sri("sha256", hex), "outputHashMode": "recursive"});
    let sources = serde_json::json!({"version": 1, "revision": "audit-test", "sources": [
        flat("audit-plain.txt", &sha256_hex(&plain)),
        flat("audit-recipe-1.0.tar.gz", &sha256_hex(&with_recipe)),
        flat("audit-norecipe-1.0.tar.gz", &sha256_hex(&without_recipe)),
        recursive("audit-nar-1.0.tar.gz", &nar_hex),
        recursive("audit-bridged-1.0.tar.gz", &bridged_nar),
        flat("audit-lost-1.0.tar.gz", &sha256_hex(b"archived nowhere")),
        {"type": "url", "urls": [url("audit-nohash.tar.gz")]},
    ]});
    let sources_json = dir.join("sources.json");
    fs::write(&sources_json, sources.to_string()).unwrap();
    let state = dir.join("state.sqlite");
    let common = ["--no-cache", "--archive", &archive.api, "--recipes", store.to_str().unwrap()];

    let (ok, report) = audit(&sources_json, &state, &[&common[..], &["--verify-sample", "10", "--seed", "7"]].concat());
    assert!(ok, "{report:#}");
    let verdicts: Vec<(String, String)> = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_owned(),
                s.get("how").or(s.get("why")).and_then(|d| d.as_str()).unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected = [
        ("recoverable", "raw_content"),
        ("recoverable", "recipe_and_directory"),
        ("archived_not_recoverable", "tarball archived unpacked, and no recipe"),
        ("recoverable", "nar_extid"),
        ("recoverable", "bridge_index"),
        ("not_archived", ""),
        ("cannot_tell", "no hash"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(verdicts, expected);
    // The sample fetched every recoverable source, and each came back.
    let checked = report["verified"].as_array().unwrap();
    assert_eq!(checked.len(), 4);
    assert!(checked.iter().all(|c| c["ok"] == true), "{checked:#?}");

    // And fetch agrees on every source with a hash: recoverable ones come back, others do not.
    for (index, source) in sources["sources"].as_array().unwrap().iter().enumerate() {
        let Some(integrity) = source["integrity"].as_str() else { continue };
        let out = dir.join(format!("fetched-{index}"));
        let mut cmd = bridge();
        cmd.args(["fetch", integrity]).args(common).arg("-o").arg(&out);
        if source["outputHashMode"] == "recursive" {
            cmd.args(["--mode", "recursive"]);
        }
        let fetched = cmd.output().unwrap();
        assert_eq!(
            fetched.status.success(),
            verdicts[index].0 == "recoverable",
            "source {index}: {}",
            String::from_utf8_lossy(&fetched.stderr)
        );
    }

    // Again: every verdict comes from the cache, without a request, and the change is shown.
    let (ok, again) = audit(&sources_json, &state, &common);
    assert!(ok);
    assert_eq!((again["archive_requests"].as_u64(), again["summary"]["cached"].as_u64()), (Some(0), Some(6)));
    assert_eq!(again["change"]["by_status"]["recoverable"], serde_json::json!([4, 4]));

    // The HTML report shows the JSON's numbers, and Chromium renders it.
    let html = dir.join("report.html");
    let out = bridge()
        .arg("audit")
        .arg(&sources_json)
        .arg("--state")
        .arg(&state)
        .args(common)
        .args(["--format", "html", "-o"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = fs::read_to_string(&html).unwrap();
    for (status, n) in again["summary"]["by_status"].as_object().unwrap() {
        assert!(page.contains(&format!("data-status=\"{status}\">{n}<")), "{status}: {n}");
    }
    let markdown = bridge()
        .arg("audit")
        .arg(&sources_json)
        .arg("--state")
        .arg(&state)
        .args(common)
        .args(["--format", "md"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&markdown.stdout).contains("| recoverable bit for bit | 4 | 57.1 % | +0 |"));
    let screenshot = dir.join("report.png");
    let shot = tool("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1400"])
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let png = fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
}

#[test]
fn audit_asks_in_bulk_honours_its_cache_and_stops_at_a_rate_limit() {
    let tmp = temp_dir();
    let mut server = mockito::Server::new();
    let api = format!("{}/api/1/", server.url());
    let commits: Vec<String> = (1..=2500).map(|i| format!("{i:040x}")).collect();
    let unknown: Vec<String> = commits[..5].iter().map(|c| format!("swh:1:rev:{c}")).collect();
    let sources: Vec<serde_json::Value> = commits
        .iter()
        .enumerate()
        .map(|(i, commit)| {
            // Input, not an expected value: 2,500 `nix hash to-sri` would take a minute.
            let digest = data_encoding::HEXLOWER.decode(format!("{:064x}", i + 1).as_bytes()).unwrap();
            let integrity = format!("sha256-{}", data_encoding::BASE64.encode(&digest));
            serde_json::json!({"type": "git", "git_url": format!("https://git.example.org/{}.git", i % 7),
                               "git_ref": commit, "outputHashMode": "recursive", "integrity": integrity})
        })
        .collect();
    // A duplicate of an unknown one (two packages, one source): asked about once.
    let mut sources = sources;
    sources.push(sources[0].clone());
    let sources_json = tmp.path().join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "sources": sources}).to_string()).unwrap();
    let batches = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let seen = batches.clone();
    let _known = server
        .mock("POST", "/api/1/known/")
        .with_body_from_request(move |req| {
            let swhids: Vec<String> = serde_json::from_slice(req.body().unwrap()).unwrap();
            seen.lock().unwrap().push(swhids.len());
            let answer: serde_json::Map<_, _> =
                swhids.iter().map(|s| (s.clone(), serde_json::json!({"known": !unknown.contains(s)}))).collect();
            serde_json::to_vec(&answer).unwrap()
        })
        .create();
    let extids = server
        .mock("GET", mockito::Matcher::Regex("^/api/1/extid/nar-sha256/".into()))
        .with_status(404)
        .expect(10)
        .create();
    let state = tmp.path().join("state.sqlite");
    let args = ["--no-cache", "--archive", api.as_str()];

    // 2,501 sources: three /known/ batches, then one ExtID lookup for each of the 5 unknown.
    let (ok, report) = audit(&sources_json, &state, &args);
    assert!(ok);
    assert_eq!(report["archive_requests"], 8);
    assert_eq!(report["summary"]["by_status"], serde_json::json!({"not_archived": 6, "recoverable": 2495}));
    assert_eq!(report["summary"]["by_detail"]["recoverable"]["git_revision"], 2495);
    assert_eq!(*batches.lock().unwrap(), [1000, 1000, 500]);

    // Again: nothing is asked. With --max-age 0, only the 5 not archived are asked again.
    assert_eq!(audit(&sources_json, &state, &args).1["archive_requests"], 0);
    let (_, again) = audit(&sources_json, &state, &[&args[..], &["--max-age", "0"]].concat());
    assert_eq!(again["archive_requests"], 6);
    extids.assert();

    // A rate limit that cannot be waited out: those sources cannot be told, and the run fails.
    let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let _limited = server
        .mock("GET", mockito::Matcher::Regex("^/api/1/extid/nar-sha256/".into()))
        .with_status(429)
        .with_header("X-RateLimit-Remaining", "0")
        .with_header("X-RateLimit-Reset", &reset.to_string())
        .create();
    let (ok, limited) = audit(&sources_json, &state, &[&args[..], &["--max-age", "0"]].concat());
    assert!(!ok);
    assert_eq!(limited["summary"]["by_status"]["cannot_tell"], 6);
    let why = limited["summary"]["by_detail"]["cannot_tell"].as_object().unwrap().keys().next().unwrap().clone();
    assert!(why.contains("rate-limits"), "{why}");
}

#[test]
fn with_a_populated_bridge_index_a_thousand_sources_take_one_request() {
    let tmp = temp_dir();
    let mut server = mockito::Server::new();
    let api = format!("{}/api/1/", server.url());
    // 1,000 plain files, each with the bridge entry `load` would have written for it.
    let store = tmp.path().join("recipes");
    fs::create_dir_all(store.join("bridge/sha256")).unwrap();
    let mut sources = Vec::new();
    for i in 0..1000 {
        let bytes = format!("plain file {i}\n").into_bytes();
        let hex = sha256_hex(&bytes);
        // Input, not an expected value: a thousand `nix hash to-sri` would take half a minute.
        let integrity = {
            use sha2::Digest;
            format!("sha256-{}", data_encoding::BASE64.encode(&sha2::Sha256::digest(&bytes)))
        };
        let entry = serde_json::json!({"size": bytes.len(), "flat": {"sha256": hex}, "tree": format!("swh:1:cnt:{:040x}", i + 1)});
        fs::write(store.join("bridge/sha256").join(&hex), entry.to_string()).unwrap();
        sources.push(serde_json::json!({"type": "url", "urls": [format!("https://example.org/{i}.patch")],
                                        "integrity": integrity, "outputHashMode": "flat"}));
    }
    let sources_json = tmp.path().join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "sources": sources}).to_string()).unwrap();
    let known = server
        .mock("POST", "/api/1/known/")
        .with_body_from_request(|req| {
            let swhids: Vec<String> = serde_json::from_slice(req.body().unwrap()).unwrap();
            let answer: serde_json::Map<_, _> =
                swhids.into_iter().map(|s| (s, serde_json::json!({"known": true}))).collect();
            serde_json::to_vec(&answer).unwrap()
        })
        .expect(1)
        .create();
    let args = ["--no-cache", "--archive", api.as_str(), "--recipes", store.to_str().unwrap()];
    let (ok, report) = audit(&sources_json, &tmp.path().join("state.sqlite"), &args);
    assert!(ok);
    assert_eq!(report["archive_requests"], 1);
    assert_eq!(report["summary"]["by_detail"]["recoverable"]["bridge_index"], 1000);
    known.assert();
}

#[test]
fn only_an_archive_that_could_not_be_asked_fails_the_audit_and_it_is_no_baseline() {
    let tmp = temp_dir();
    let mut server = mockito::Server::new();
    let api = format!("{}/api/1/", server.url());
    let state = tmp.path().join("state.sqlite");
    let args = ["--no-cache", "--archive", api.as_str()];
    // Sources that cannot be told because of themselves: no hash, an unknown hash mode, a VCS
    // source with a flat hash. Nothing is asked, and the audit is finished.
    let untellable = serde_json::json!([
        {"type": "url", "urls": ["https://example.org/a.tar.gz"]},
        {"type": "url", "urls": ["https://example.org/b.tar.gz"], "integrity": "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "outputHashMode": "sideways"},
        {"type": "git", "git_url": "https://example.org/c.git", "integrity": "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "outputHashMode": "flat"},
    ]);
    let first = tmp.path().join("first.json");
    fs::write(&first, serde_json::json!({"version": 1, "sources": untellable}).to_string()).unwrap();
    let (ok, report) = audit(&first, &state, &args);
    assert!(ok, "{report:#}");
    assert_eq!(report["summary"]["by_status"], serde_json::json!({"cannot_tell": 3}));
    assert_eq!(report["archive_requests"], 0);

    // One more source, which the archive refuses to answer about (a rate limit far off): the
    // audit is unfinished, fails, and is not recorded.
    let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let _limited = server
        .mock("GET", mockito::Matcher::Regex("^/api/1/".into()))
        .with_status(429)
        .with_header("X-RateLimit-Remaining", "0")
        .with_header("X-RateLimit-Reset", &reset.to_string())
        .create();
    let mut sources = untellable.as_array().unwrap().clone();
    let asked = serde_json::json!({"type": "url", "urls": ["https://example.org/d.patch"],
                                   "integrity": "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", "outputHashMode": "flat"});
    sources.push(asked);
    let second = tmp.path().join("second.json");
    fs::write(&second, serde_json::json!({"version": 1, "sources": sources}).to_string()).unwrap();
    let (ok, report) = audit(&second, &state, &args);
    assert!(!ok);
    assert_eq!(report["summary"]["by_status"]["cannot_tell"], 4);
    assert_eq!(report["sources"][3]["because"], "archive");
    assert_eq!(report["sources"][0]["because"], "input");
    assert!(report.get("change").is_none(), "an unfinished audit shows no change: {report:#}");

    // The first audit is still the baseline the next finished one compares with.
    let (ok, again) = audit(&first, &state, &args);
    assert!(ok);
    assert_eq!(again["change"]["by_status"]["cannot_tell"], serde_json::json!([3, 3]));
}
