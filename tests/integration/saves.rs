//! `swh-bridge load` for VCS sources: `/known/` in batches, Save Code Now within the quota, and
//! `load status`, against mockito. The local archive cannot show these: its web app runs without
//! a scheduler, so it has no Save Code Now (a POST there is a 404), and loopback is never rate
//! limited.

use std::fs;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mockito::Matcher;

use crate::reference_tools::bridge;
use crate::trees::temp_dir;

const B: &str = "https://git.example.org/b.git";
const C: &str = "https://git.example.org/c.git";
const D: &str = "https://hg.example.org/d";

fn git(url: &str, reference: &str) -> serde_json::Value {
    serde_json::json!({"type": "git", "git_url": url, "git_ref": reference, "outputHashMode": "recursive",
                       "integrity": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="})
}

fn save_mock(server: &mut mockito::Server, visit_type: &str, url: &str) -> mockito::Mock {
    server.mock("POST", "/api/1/origin/save/").match_query(Matcher::AllOf(vec![
        Matcher::UrlEncoded("visit_type".into(), visit_type.into()),
        Matcher::UrlEncoded("origin_url".into(), url.into()),
    ]))
}

fn request(id: u64, request_status: &str, task_status: &str) -> String {
    serde_json::json!({"id": id, "save_request_status": request_status, "save_task_status": task_status,
                       "visit_status": null, "note": null})
    .to_string()
}

fn summary(stdout: &[u8]) -> serde_json::Value {
    let last = String::from_utf8(stdout.to_vec()).unwrap().lines().last().unwrap().to_owned();
    serde_json::from_str::<serde_json::Value>(&last).unwrap()["summary"].clone()
}

fn urls(list: &serde_json::Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|o| o["url"].as_str().unwrap()).collect()
}

#[test]
fn vcs_revisions_are_checked_in_batches_and_saved_within_the_quota() {
    let tmp = temp_dir();
    let mut server = mockito::Server::new();
    let api = format!("{}/api/1/", server.url());
    let commits: Vec<String> = (1..=1001).map(|i| format!("{i:040x}")).collect();
    let missing = format!("swh:1:rev:{}", commits[1000]);
    let mut sources: Vec<serde_json::Value> =
        commits[..1000].iter().map(|commit| git("https://git.example.org/a.git", commit)).collect();
    sources.push(git(B, &commits[1000]));
    sources.push(git(C, "refs/tags/v1.0"));
    sources.push(serde_json::json!({"type": "hg", "hg_url": D, "hg_changeset": "a1b2c3d4e5f6"}));
    let sources_json = tmp.path().join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "sources": sources}).to_string()).unwrap();

    // The first /known/ answer is a 503, which the client retries; then 1,001 SWHIDs take two
    // batches, and the next run asks only about the one still waiting.
    let unavailable = server.mock("POST", "/api/1/known/").with_status(503).expect(1).create();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let asked_log = asked.clone();
    let known = server
        .mock("POST", "/api/1/known/")
        .with_body_from_request(move |req| {
            let swhids: Vec<String> = serde_json::from_slice(req.body().unwrap()).unwrap();
            asked_log.lock().unwrap().push(swhids.len());
            let answer: serde_json::Map<String, serde_json::Value> =
                swhids.iter().map(|s| (s.clone(), serde_json::json!({"known": *s != missing}))).collect();
            serde_json::to_vec(&answer).unwrap()
        })
        .expect(6)
        .create();
    let save_b =
        save_mock(&mut server, "git", B).with_body(request(1, "accepted", "not yet scheduled")).expect(1).create();
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    let limited = save_mock(&mut server, "git", C)
        .with_status(429)
        .with_header("X-RateLimit-Remaining", "0")
        .with_header("X-RateLimit-Reset", &reset.to_string())
        .with_body(r#"{"exception": "Throttled", "reason": "Request was throttled."}"#)
        .expect(1)
        .create();
    let save_c = save_mock(&mut server, "git", C).with_body(request(2, "accepted", "pending")).expect(1).create();
    let save_d = save_mock(&mut server, "hg", D).expect(0).create();

    let state = tmp.path().join("state.sqlite");
    let load = || {
        let out = bridge()
            .args(["load", "--json", "--no-nixos-mirrors", "--saves-per-hour", "2", "--archive", &api])
            .arg(&sources_json)
            .arg("--recipes")
            .arg(tmp.path().join("recipes"))
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        summary(&out.stdout)["vcs"].clone()
    };

    // Run 1: B is sent; C meets the rate limit, so C and D wait.
    let first = load();
    assert_eq!((first["archived"].as_u64(), first["waiting"].as_u64()), (Some(1000), Some(3)));
    assert_eq!(urls(&first["submitted"]), [B]);
    assert_eq!(urls(&first["queued"]), [C, D]);
    assert!(first["rate_limited"].as_str().unwrap().contains("rate-limits"), "{first}");
    unavailable.assert();
    limited.assert();

    // Run 2: the hour's quota has room for one more (B counts against it): C; D still waits.
    let second = load();
    assert_eq!(urls(&second["submitted"]), [C]);
    assert_eq!(urls(&second["queued"]), [D]);

    // `load status` polls both requests and asks about the revision still waiting.
    let poll_b = server.mock("GET", "/api/1/origin/save/1/").with_body(request(1, "accepted", "succeeded")).create();
    let poll_c = server.mock("GET", "/api/1/origin/save/2/").with_body(request(2, "accepted", "running")).create();
    let out = bridge().args(["load", "status", "--json", "--archive", &api, "--state"]).arg(&state).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["saves"], serde_json::json!({"accepted": 1, "succeeded": 1}));
    assert_eq!(status["revisions"], serde_json::json!({"archived": 1000, "waiting": 3}));
    poll_b.assert();
    poll_c.assert();

    // Run 3: B's save succeeded after its revision was seen, C's is open, the quota is spent.
    let third = load();
    assert_eq!(urls(&third["submitted"]), Vec::<&str>::new());
    assert_eq!(urls(&third["queued"]), [D]);

    // C's save succeeds: its tag, which /known/ cannot check, now counts as archived; B's commit
    // (checkable, still unknown) and D (never saved) wait.
    let _done_c = server.mock("GET", "/api/1/origin/save/2/").with_body(request(2, "accepted", "succeeded")).create();
    let out = bridge().args(["load", "status", "--json", "--archive", &api, "--state"]).arg(&state).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["revisions"], serde_json::json!({"archived": 1001, "waiting": 2}));

    save_b.assert();
    save_c.assert();
    save_d.assert();
    known.assert();
    assert_eq!(*asked.lock().unwrap(), [1000, 1, 1, 1, 1, 1]);
}

#[test]
fn a_save_request_interrupted_by_kill_is_settled_not_sent_again() {
    let tmp = temp_dir();
    let mut server = mockito::Server::new();
    let api = format!("{}/api/1/", server.url());
    let origin = "https://git.example.org/e.git";
    let sources_json = tmp.path().join("sources.json");
    let source = git(origin, &"e".repeat(40));
    fs::write(&sources_json, serde_json::json!({"version": 1, "sources": [source]}).to_string()).unwrap();
    let _known = server
        .mock("POST", "/api/1/known/")
        .with_body_from_request(|req| {
            let swhids: Vec<String> = serde_json::from_slice(req.body().unwrap()).unwrap();
            serde_json::to_vec(&serde_json::json!({ swhids[0].clone(): {"known": false} })).unwrap()
        })
        .create();
    // The archive takes the request, and its answer is slow to come: the run is killed meanwhile.
    let post = save_mock(&mut server, "git", origin)
        .with_chunked_body(|w| {
            std::thread::sleep(Duration::from_secs(5));
            w.write_all(request(77, "accepted", "pending").as_bytes())
        })
        .expect(1)
        .create();
    // The archive's list for the origin: an old request of someone else's, and ours.
    let dated = |id: u64, date: &str| {
        let mut answer: serde_json::Value = serde_json::from_str(&request(id, "accepted", "scheduled")).unwrap();
        answer["save_request_date"] = date.into();
        answer
    };
    let now = crate::reference_tools::line(
        crate::reference_tools::tool("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.000000+00:00"]),
    );
    let listed = serde_json::json!([dated(5, "2020-01-02T03:04:05.000000+00:00"), dated(77, &now)]);
    let list = server
        .mock("GET", "/api/1/origin/save/")
        .match_query(Matcher::UrlEncoded("origin_url".into(), origin.into()))
        .with_body(listed.to_string())
        .expect(1)
        .create();

    let state = tmp.path().join("state.sqlite");
    let load = || {
        let mut cmd = bridge();
        cmd.args(["load", "--json", "--no-nixos-mirrors", "--archive", &api])
            .arg(&sources_json)
            .arg("--recipes")
            .arg(tmp.path().join("recipes"))
            .arg("--state")
            .arg(&state);
        cmd
    };
    let saves = || -> Vec<(Option<u64>, String)> {
        let Ok(db) = rusqlite::Connection::open(&state) else { return Vec::new() };
        let Ok(mut query) = db.prepare("SELECT request_id, request_status FROM saves") else { return Vec::new() };
        query.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let mut child = load().stdout(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while saves().is_empty() {
        assert!(Instant::now() < deadline, "no save request was begun");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(saves(), [(None, "submitting".to_owned())]);

    let out = load().output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let vcs = summary(&out.stdout)["vcs"].clone();
    assert_eq!((vcs["reconciled"].as_u64(), urls(&vcs["submitted"]).len()), (Some(1), 0), "{vcs}");
    assert_eq!(saves(), [(Some(77), "accepted".to_owned())]);
    post.assert();
    list.assert();
}
