//! `scripts/daily.sh` end to end on the miniature Nixpkgs: list, diff, load, status, publish,
//! twice. Every download is sent to a dead proxy on loopback, so no byte leaves the machine and
//! every URL source fails as if upstream were gone; the archive is mockito, which (unlike the
//! local archive) takes Save Code Now requests.

use std::fs;
use std::path::Path;
use std::process::Command;

use mockito::Matcher;

use crate::reference_tools::{git_in, line, output, tool};
use crate::trees::temp_dir;

#[test]
fn the_daily_job_lists_loads_and_publishes_then_resumes_from_the_last_list() {
    let tmp = temp_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let nixpkgs = tmp.path().join("nixpkgs");
    output(tool("cp").arg("-r").arg(root.join("tests/lister/nixpkgs")).arg(&nixpkgs));
    let git = |args: &[&str]| git_in(&nixpkgs, args);
    output(&mut git(&["init", "-q"]));
    output(&mut git(&["add", "-A"]));
    output(&mut git(&["commit", "-q", "-m", "miniature nixpkgs"]));
    let (data, site) = (tmp.path().join("data"), tmp.path().join("site"));
    let mut archive = mockito::Server::new();
    let _known = archive
        .mock("POST", "/api/1/known/")
        .with_body_from_request(|req| {
            let swhids: Vec<String> = serde_json::from_slice(req.body().unwrap()).unwrap();
            let unknown: serde_json::Map<_, _> =
                swhids.into_iter().map(|s| (s, serde_json::json!({"known": false}))).collect();
            serde_json::to_vec(&unknown).unwrap()
        })
        .create();
    let next_id = std::sync::atomic::AtomicU64::new(1);
    let origins = archive
        .mock("POST", Matcher::Regex("^/api/1/origin/save/".into()))
        .with_body_from_request(move |_| {
            let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let request =
                serde_json::json!({"id": id, "save_request_status": "accepted", "save_task_status": "pending"});
            request.to_string().into_bytes()
        })
        .expect(4)
        .create();
    let _polled = archive
        .mock("GET", Matcher::Regex("^/api/1/origin/save/[0-9]+/$".into()))
        .with_body_from_request(|req| {
            let id: u64 = req.path().trim_end_matches('/').rsplit('/').next().unwrap().parse().unwrap();
            let request =
                serde_json::json!({"id": id, "save_request_status": "accepted", "save_task_status": "running"});
            request.to_string().into_bytes()
        })
        .create();
    let _missing = archive.mock("GET", Matcher::Regex("^/api/1/(content|extid)/".into())).with_status(404).create();
    let api = format!("{}/api/1/", archive.url());
    let daily = || {
        Command::new(root.join("scripts/daily.sh"))
            .env("NIXPKGS", &nixpkgs)
            .env("SWH_BRIDGE_SITE", &site)
            .env("SWH_BRIDGE_DATA", &data)
            .env("SWH_BRIDGE", env!("CARGO_BIN_EXE_swh-bridge"))
            .env("SWH_BRIDGE_JOBS", "2")
            .env("SWH_BRIDGE_LIST_ARGS", "--no-narinfo")
            .env("SWH_BRIDGE_LOAD_ARGS", format!("--no-cache --archive {api}"))
            .env("NIX_CONFIG", "substituters =")
            .env("http_proxy", "http://127.0.0.1:9")
            .env("https_proxy", "http://127.0.0.1:9")
            .env("no_proxy", "127.0.0.1")
            .output()
            .unwrap()
    };
    let runs = |data: &Path| {
        let mut runs: Vec<_> = fs::read_dir(data.join("daily")).unwrap().map(|e| e.unwrap().path()).collect();
        runs.sort();
        runs
    };
    let summary = |run: &Path| -> serde_json::Value {
        let load = fs::read_to_string(run.join("load.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(load.lines().last().unwrap()).unwrap()["summary"].clone()
    };

    // First run: every source is new; the URL sources fail (upstream is unreachable), and the
    // job says so, but still publishes.
    let first = daily();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success(), "{stderr}");
    let run = runs(&data).pop().unwrap();
    assert!(run.join("sources.json").exists(), "{stderr}");
    let listed: serde_json::Value = serde_json::from_slice(&fs::read(run.join("sources.json")).unwrap()).unwrap();
    assert_eq!(listed["revision"], line(&mut git(&["rev-parse", "HEAD"])).as_str());
    let loaded = summary(&run);
    assert_eq!(loaded["sources"], 24);
    assert!(loaded["captures"]["failed"].as_u64().unwrap() > 0, "{loaded}");
    assert!(run.join("status.json").exists());
    assert_eq!(fs::read_link(data.join("latest.json")).unwrap(), run.join("sources.json"));
    for published in ["index.html", "stats.json", "sources.json"] {
        assert!(site.join(published).exists(), "{published}");
    }
    let stats: serde_json::Value = serde_json::from_slice(&fs::read(site.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["captures"]["failed"], loaded["captures"]["failed"]);

    // Second run, nothing new upstream: the diff is empty, and only what failed is tried again
    // (no VCS source: their saves are in the state, covered by the first run's requests).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = daily();
    assert!(!second.status.success(), "the sources still fail");
    let run = runs(&data).pop().unwrap();
    assert_eq!(summary(&run)["sources"], loaded["captures"]["failed"], "{}", summary(&run));
    let diff: serde_json::Value = serde_json::from_slice(&fs::read(run.join("diff.json")).unwrap()).unwrap();
    assert_eq!(diff["added"].as_array().map(Vec::len), Some(0), "{diff}");
    // One request for each VCS origin of the miniature Nixpkgs, in the first run only.
    origins.assert();
}
