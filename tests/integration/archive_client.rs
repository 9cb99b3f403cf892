//! The archive client against mockito, for what a local archive cannot show: rate limits, server
//! errors, malformed answers, the vault's asynchronous cooking.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swh_bridge::archive::model::{VaultBundle, VaultStatus};
use swh_bridge::archive::{ApiError, ArchiveClient, ClientConfig, ContentKey, ExtIdKind};
use swh_bridge::fallback::Fetcher;
use swh_bridge::hashing::{Hash, HashAlgo, HashMode, ObjectType, Swhid};
use swh_bridge::plan::SourceRequest;

fn client(server: &mockito::Server, configure: impl FnOnce(&mut ClientConfig)) -> ArchiveClient {
    let mut config = ClientConfig::for_api(format!("{}/api/1/", server.url()).parse().unwrap());
    config.token = None;
    config.backoff = Duration::from_millis(10);
    configure(&mut config);
    ArchiveClient::new(config)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

const CONTENT: &str = r#"{"checksums": {"sha256": "ab"}, "length": 3, "status": "visible"}"#;

/// The key of a content by a sha256 made of `byte` repeated.
fn content_key(byte: u8) -> (ContentKey, String) {
    let hash = Hash::from_digest(HashAlgo::Sha256, &[byte; 32]).unwrap();
    (ContentKey::of_hash(&hash).unwrap(), hash.to_hex())
}

fn swhid(object_type: ObjectType, byte: u8) -> Swhid {
    Swhid::new(object_type, [byte; 20])
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn rate_limits_are_waited_out_when_allowed_and_reported_otherwise() {
    let mut server = mockito::Server::new();
    let reset = (unix_now() + 1).to_string();
    let ((ab, ab_hex), (cd, cd_hex)) = (content_key(0xab), content_key(0xcd));
    let limited = server
        .mock("GET", format!("/api/1/content/sha256:{ab_hex}/").as_str())
        .with_status(429)
        .with_header("X-RateLimit-Remaining", "0")
        .with_header("X-RateLimit-Reset", &reset)
        .with_body(r#"{"exception": "Throttled", "reason": "too many requests"}"#)
        .expect(1)
        .create();
    let ok =
        server.mock("GET", format!("/api/1/content/sha256:{ab_hex}/").as_str()).with_body(CONTENT).expect(1).create();
    let patient = client(&server, |c| c.max_rate_limit_wait = Duration::from_secs(5));
    let info = runtime().block_on(patient.content(&ab)).unwrap();
    assert_eq!(info.length, Some(3));
    assert_eq!(patient.requests(), 2);
    limited.assert();
    ok.assert();

    let far = (unix_now() + 3600).to_string();
    server
        .mock("GET", format!("/api/1/content/sha256:{cd_hex}/").as_str())
        .with_status(429)
        .with_header("X-RateLimit-Reset", &far)
        .create();
    let impatient = client(&server, |_| {});
    let err = runtime().block_on(impatient.content(&cd)).unwrap_err();
    assert!(matches!(err, ApiError::RateLimited { until } if until.to_string() == far), "{err}");
    assert!(err.to_string().contains("retry then"), "{err}");
}

#[test]
fn server_errors_are_retried_then_reported() {
    let mut server = mockito::Server::new();
    let (ab, ab_hex) = content_key(0xab);
    let path = format!("/api/1/content/sha256:{ab_hex}/");
    server.mock("GET", path.as_str()).with_status(503).expect(1).create();
    server.mock("GET", path.as_str()).with_body(CONTENT).expect(1).create();
    let archive = client(&server, |_| {});
    let status = runtime().block_on(archive.content(&ab)).unwrap().status;
    assert_eq!(status, swh_bridge::archive::model::ContentStatus::Visible);
    assert_eq!(archive.requests(), 2);

    let revision = swhid(ObjectType::Revision, 0);
    server
        .mock("GET", format!("/api/1/revision/{}/", revision.hex()).as_str())
        .with_status(500)
        .with_body(r#"{"exception": "Boom", "reason": "storage is down"}"#)
        .create();
    let archive = client(&server, |c| c.retries = 2);
    let err = runtime().block_on(archive.revision(&revision)).unwrap_err();
    let expected = format!("revision {} with 500: Boom storage is down", revision.hex());
    assert!(err.to_string().contains(&expected), "{err}");
    assert_eq!(archive.requests(), 3);
}

#[test]
fn missing_malformed_and_refused_answers_are_typed() {
    let mut server = mockito::Server::new();
    let [missing, malformed, refused] = [0x00, 0x11, 0x22].map(|byte| swhid(ObjectType::Directory, byte));
    let path = |dir: &Swhid| format!("/api/1/directory/{}/", dir.hex());
    server.mock("GET", path(&missing).as_str()).with_status(404).create();
    server.mock("GET", path(&malformed).as_str()).with_body("{not json").create();
    server
        .mock("GET", path(&refused).as_str())
        .with_status(400)
        .with_body(r#"{"exception": "BadInputExc", "reason": "invalid id"}"#)
        .create();
    let archive = client(&server, |_| {});
    let rt = runtime();
    assert!(matches!(rt.block_on(archive.directory(&missing)), Err(ApiError::NotFound { .. })));
    let err = rt.block_on(archive.directory(&malformed)).unwrap_err();
    let named = format!("directory {}", malformed.hex());
    assert!(matches!(err, ApiError::Malformed { .. }) && err.to_string().contains(&named), "{err}");
    let err = rt.block_on(archive.directory(&refused)).unwrap_err();
    let expected = format!("refused directory {} with 400: BadInputExc invalid id", refused.hex());
    assert!(err.to_string().contains(&expected), "{err}");
    // A SWHID of another type is refused before any request.
    let err = rt.block_on(archive.directory(&swhid(ObjectType::Content, 0x33))).unwrap_err();
    assert!(matches!(err, ApiError::WrongType { .. }), "{err}");
}

#[test]
fn the_token_is_sent_and_extids_ask_for_version_1() {
    let mut server = mockito::Server::new();
    let hash = Hash::from_digest(HashAlgo::Sha256, &[0xff; 32]).unwrap();
    let mock = server
        .mock("GET", format!("/api/1/extid/nar-sha256/hex:{}/", hash.to_hex()).as_str())
        .match_query(mockito::Matcher::UrlEncoded("extid_version".into(), "1".into()))
        .match_header("authorization", "Bearer secret")
        .with_body(r#"{"extid": "00ff", "extid_type": "nar-sha256", "extid_version": 1, "target": "swh:1:dir:0000000000000000000000000000000000000000"}"#)
        .create();
    let archive = client(&server, |c| c.token = Some("secret".into()));
    let extid = runtime().block_on(archive.extid(ExtIdKind::Nar, &hash)).unwrap();
    assert_eq!(extid.target, swhid(ObjectType::Directory, 0));
    mock.assert();
}

#[test]
fn known_is_asked_in_batches_of_a_thousand() {
    let mut server = mockito::Server::new();
    let swhids: Vec<Swhid> = (0..2500).map(|i| format!("swh:1:cnt:{i:040x}").parse().unwrap()).collect();
    let answer = |batch: &[Swhid]| {
        serde_json::to_string(
            &batch
                .iter()
                .map(|s| (s.to_string(), serde_json::json!({ "known": s.hex().ends_with('0') })))
                .collect::<serde_json::Map<_, _>>(),
        )
        .unwrap()
    };
    for batch in swhids.chunks(1000) {
        server
            .mock("POST", "/api/1/known/")
            .match_body(mockito::Matcher::Json(serde_json::json!(batch)))
            .with_body(answer(batch))
            .expect(1)
            .create();
    }
    let archive = client(&server, |_| {});
    let known = runtime().block_on(archive.known(&swhids)).unwrap();
    assert_eq!(known.len(), 2500);
    assert_eq!(known.values().filter(|k| **k).count(), (0..2500).filter(|i| i % 16 == 0).count());
    assert_eq!(archive.requests(), 3);
}

#[test]
fn the_vault_is_polled_until_done_or_failed() {
    let mut server = mockito::Server::new();
    let dir = swhid(ObjectType::Directory, 1);
    let path = format!("/api/1/vault/flat/{dir}/");
    server.mock("POST", path.as_str()).with_body(r#"{"status": "new"}"#).create();
    server
        .mock("GET", path.as_str())
        .with_body(r#"{"status": "pending", "progress_message": "cooking"}"#)
        .expect(2)
        .create();
    server.mock("GET", path.as_str()).with_body(r#"{"status": "done", "fetch_url": "/raw/"}"#).create();
    let archive = client(&server, |_| {});
    let task = runtime().block_on(archive.vault_wait(VaultBundle::Flat, &dir, Duration::from_millis(10))).unwrap();
    assert_eq!(task.status, VaultStatus::Done);
    assert_eq!(archive.requests(), 4);

    let failing = swhid(ObjectType::Directory, 2);
    let path = format!("/api/1/vault/flat/{failing}/");
    server.mock("POST", path.as_str()).with_body(r#"{"status": "pending"}"#).create();
    server
        .mock("GET", path.as_str())
        .with_body(r#"{"status": "failed", "progress_message": "object too large"}"#)
        .create();
    let err =
        runtime().block_on(archive.vault_wait(VaultBundle::Flat, &failing, Duration::from_millis(10))).unwrap_err();
    assert!(err.to_string().contains("object too large"), "{err}");
}

#[test]
fn a_bundle_that_never_cooks_is_given_up_at_the_vault_deadline() {
    let mut server = mockito::Server::new();
    let dir = swhid(ObjectType::Directory, 3);
    let path = format!("/api/1/vault/flat/{dir}/");
    server.mock("POST", path.as_str()).with_body(r#"{"status": "new"}"#).create();
    server.mock("GET", path.as_str()).with_body(r#"{"status": "pending", "progress_message": "queued"}"#).create();
    let archive = client(&server, |c| c.vault_deadline = Duration::from_secs(1));
    let started = std::time::Instant::now();
    let err = runtime().block_on(archive.vault_wait(VaultBundle::Flat, &dir, Duration::from_millis(50))).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(err.to_string(), format!("gave up waiting for the vault to cook the flat bundle of {dir} after 1 s"));
}

#[test]
fn a_hung_archive_costs_one_call_deadline_not_every_retry() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}/api/1/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let mut config = ClientConfig::for_api(api.parse().unwrap());
    config.token = None;
    config.call_deadline = Duration::from_secs(2);
    let archive = ArchiveClient::new(config);
    let (key, _) = content_key(0x42);
    let started = std::time::Instant::now();
    let err = runtime().block_on(archive.content(&key)).unwrap_err();
    let took = started.elapsed();
    // One request's 60 s timeout and four retries would have taken 307 s.
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(5), "{took:?}: {err}");
    assert!(matches!(err, ApiError::TimedOut { seconds: 2, .. }), "{err}");
}

#[test]
fn wrong_bytes_from_the_archive_are_never_written() {
    let mut server = mockito::Server::new();
    let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // sha256 of "hello"
    server.mock("GET", format!("/api/1/content/sha256:{hex}/").as_str()).with_body(
        r#"{"checksums": {"sha1_git": "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"}, "length": 5, "status": "visible"}"#,
    ).create();
    server.mock("GET", format!("/api/1/content/sha256:{hex}/raw/").as_str()).with_body("HELLO").create();
    server.mock("GET", mockito::Matcher::Regex("^/api/1/extid/".into())).with_status(404).create();
    let tmp = crate::trees::temp_dir();
    let out = tmp.path().join("hello");
    let fetcher = Fetcher::new(client(&server, |_| {}));
    let hash = Hash::parse(hex, Some(HashAlgo::Sha256)).unwrap();
    let request = SourceRequest::of_hash(hash, HashMode::Flat);
    let err = runtime().block_on(fetcher.fetch(&request, &out)).unwrap_err();
    assert!(
        err.to_string().starts_with("refusing what archive swh:1:cnt:b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0 gave"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing is left behind");
}

#[test]
fn a_git_tree_is_found_through_its_commit_when_no_extid_maps_it() {
    let tmp = crate::trees::temp_dir();
    let reference = tmp.path().join("reference");
    std::fs::create_dir(&reference).unwrap();
    std::fs::write(reference.join("f"), b"hi\n").unwrap();
    let nar_hex = crate::reference_tools::line(
        crate::reference_tools::tool("nix-hash").args(["--type", "sha256"]).arg(&reference),
    );

    let mut server = mockito::Server::new();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let (d1, t1) = ("d1".repeat(20), "71".repeat(20));
    server
        .mock("GET", format!("/api/1/extid/nar-sha256/hex:{nar_hex}/").as_str())
        .match_query(mockito::Matcher::Any)
        .with_status(404)
        .create();
    server
        .mock("GET", format!("/api/1/revision/{commit}/").as_str())
        .with_body(format!(r#"{{"id": "{commit}", "directory": "{d1}"}}"#))
        .create();
    server
        .mock("GET", format!("/api/1/directory/{d1}/").as_str())
        .with_body(format!(
            r#"[{{"name": "f", "type": "file", "perms": 33188, "target": "{t1}", "length": 3, "status": "visible"}}]"#
        ))
        .create();
    server.mock("GET", format!("/api/1/content/sha1_git:{t1}/raw/").as_str()).with_body("hi\n").create();

    let fetcher = Fetcher::new(client(&server, |_| {}));
    let hash = Hash::parse(&nar_hex, Some(HashAlgo::Sha256)).unwrap();
    let out = tmp.path().join("checkout");
    let mut request = SourceRequest::of_hash(hash, HashMode::Recursive);
    request.git_commit = Some(Swhid::from_hex(ObjectType::Revision, commit).unwrap());
    let report = runtime().block_on(fetcher.fetch(&request, &out)).unwrap();
    assert_eq!(report.origin, format!("archive swh:1:dir:{d1}"));
    assert_eq!(std::fs::read(out.join("f")).unwrap(), b"hi\n");

    let without = SourceRequest { git_commit: None, ..request };
    let err = runtime().block_on(fetcher.fetch(&without, &tmp.path().join("other"))).unwrap_err();
    assert!(err.to_string().contains("is not in the archive"), "{err}");
}

/// Serves `answers` (path → raw HTTP response) to whoever connects, one request a connection.
fn raw_http_server(answers: Vec<(String, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut request_line).unwrap();
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let answer = answers.iter().find(|(p, _)| *p == path).map(|(_, a)| a.clone());
            let answer = answer.unwrap_or_else(|| b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec());
            let _ = stream.write_all(&answer);
        }
    });
    url
}

#[test]
fn a_download_cut_short_is_an_error_and_writes_nothing() {
    let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // sha256 of "hello"
    let info = br#"{"checksums": {"sha1_git": "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"}, "status": "visible"}"#;
    let mut info_answer =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", info.len()).into_bytes();
    info_answer.extend_from_slice(info);
    // Promises 5 bytes, sends 3, and hangs up.
    let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhel".to_vec();
    let url = raw_http_server(vec![
        (format!("/api/1/content/sha256:{hex}/"), info_answer),
        (format!("/api/1/content/sha256:{hex}/raw/"), cut),
    ]);
    let mut config = ClientConfig::for_api(format!("{url}/api/1/").parse().unwrap());
    config.token = None;
    config.retries = 0;
    let fetcher = Fetcher::new(ArchiveClient::new(config));
    let hash = Hash::parse(hex, Some(HashAlgo::Sha256)).unwrap();
    let tmp = crate::trees::temp_dir();
    let request = SourceRequest::of_hash(hash, HashMode::Flat);
    let err = runtime().block_on(fetcher.fetch(&request, &tmp.path().join("hello"))).unwrap_err();
    assert!(err.to_string().starts_with("failed to download"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing is left behind");
}
