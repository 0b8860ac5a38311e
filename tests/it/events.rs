//! `callwatch events` over the recorded sessions in `fixtures/ami/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ami")
}

fn callwatch(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args(args)
        .env_remove("CALLWATCH_CONFIG")
        .env_remove("DATABASE_URL")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "callwatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `callwatch events --file PATH --summary --json EXTRA…` (`PATH` `-` reads `stdin`).
fn summary(path: &Path, extra: &[&str], stdin: Option<&[u8]>) -> Value {
    let mut args = vec![
        "events",
        "--file",
        path.to_str().unwrap(),
        "--summary",
        "--json",
    ];
    args.extend_from_slice(extra);
    summary_of(&args, stdin)
}

fn summary_of(args: &[&str], stdin: Option<&[u8]>) -> Value {
    let out = callwatch(args, stdin);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "exactly one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Every subject and observer connection entry of every `truth.json`.
fn truth_connections() -> Vec<Value> {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".truth.json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let truth: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        for list in ["subject_connections", "observer_connections"] {
            out.extend(truth[list].as_array().unwrap().iter().cloned());
        }
    }
    out
}

#[test]
fn summary_json_equals_truth_for_every_recording() {
    let conns = truth_connections();
    assert_eq!(conns.len(), 20);
    for conn in conns {
        let file = conn["file"].as_str().unwrap();
        let path = fixtures().join(file);
        let s = summary(&path, &[], None);
        let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "banner",
                "bytes",
                "elapsed_seconds",
                "event_counts",
                "events",
                "events_per_sec",
                "frames",
                "responses",
                "trailing_partial_bytes"
            ]
        );
        for key in [
            "banner",
            "frames",
            "events",
            "responses",
            "event_counts",
            "trailing_partial_bytes",
        ] {
            // Observer entries have no `responses`: check the others where the truth has the key.
            if let Some(expected) = conn.get(key) {
                assert_eq!(&s[key], expected, "{file}: {key}");
            }
        }
        assert_eq!(s["bytes"], conn["bytes_received"], "{file}: bytes");
        assert_eq!(
            s["frames"].as_u64().unwrap(),
            s["events"].as_u64().unwrap() + s["responses"].as_u64().unwrap(),
            "{file}"
        );
        assert!(s["elapsed_seconds"].as_f64().unwrap() >= 0.0);
        assert!(s["events_per_sec"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn gzip_and_stdin_read_the_same_stream() {
    let path = fixtures().join("disconnect-gap.subject-2.ami");
    let bytes = std::fs::read(&path).unwrap();
    let plain = summary(&path, &[], None);

    let dir = tempfile::tempdir().unwrap();
    let gz_path = dir.path().join("stream.ami.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz_path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&bytes).unwrap();
    gz.finish().unwrap();
    let gzipped = summary(&gz_path, &[], None);
    let stdin = summary(Path::new("-"), &[], Some(&bytes));
    for key in [
        "banner",
        "frames",
        "events",
        "responses",
        "event_counts",
        "trailing_partial_bytes",
        "bytes",
    ] {
        assert_eq!(gzipped[key], plain[key], "gz: {key}");
        assert_eq!(stdin[key], plain[key], "stdin: {key}");
    }
}

#[test]
fn a_cut_stream_reports_its_partial_last_message() {
    let bytes = std::fs::read(fixtures().join("login-md5.subject-1.ami")).unwrap();
    let whole = summary(Path::new("-"), &[], Some(&bytes));
    let cut = &bytes[..bytes.len() - 40];
    let s = summary(Path::new("-"), &[], Some(cut));
    assert_eq!(
        s["frames"].as_u64().unwrap(),
        whole["frames"].as_u64().unwrap() - 1
    );
    let trailing = s["trailing_partial_bytes"].as_u64().unwrap();
    assert!(trailing > 0 && trailing < 2000, "{trailing}");
    assert_eq!(s["bytes"].as_u64().unwrap(), cut.len() as u64);
}

#[test]
fn json_lines_one_per_message() {
    let path = fixtures().join("login-fail.subject-4.ami");
    let out = callwatch(
        &["events", "--file", path.to_str().unwrap(), "--json"],
        None,
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // truth.json: 5 frames (2 events, 3 responses), plus the banner line.
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["kind"], "banner");
    assert_eq!(lines[0]["banner"], "Asterisk Call Manager/11.0.0");
    let kinds: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "event").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "response").count(), 3);
    for line in &lines[1..] {
        let headers = line["headers"].as_array().unwrap();
        assert!(!headers.is_empty());
        assert_eq!(headers[0].as_array().unwrap().len(), 2);
        if line["kind"] == "event" {
            assert_eq!(headers[0][0], "Event");
            assert_eq!(line["event"], headers[0][1]);
        }
    }
}

#[test]
fn max_events_stops_early() {
    let path = fixtures().join("basic.subject-1.ami");
    let out = callwatch(
        &[
            "events",
            "--file",
            path.to_str().unwrap(),
            "--json",
            "--max-events",
            "7",
        ],
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let events = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["kind"] == "event")
        .count();
    assert_eq!(events, 7);
    let s = summary(&path, &["--max-events", "100"], None);
    assert_eq!(s["events"], 100);
}

#[test]
fn text_output_and_secret_redaction() {
    let path = fixtures().join("login-fail.subject-4.ami");
    let out = callwatch(&["events", "--file", path.to_str().unwrap()], None);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("# banner: Asterisk Call Manager/11.0.0\n"),
        "{text}"
    );
    assert!(text.contains("response | Response: Error"), "{text}");
    // The client's side of a session carries the lab secret in its Login action.
    let sent = std::fs::read(fixtures().join("basic.subject-1.sent")).unwrap();
    assert!(sent.windows(10).any(|w| w == b"lab-secret"));
    for args in [
        &["events", "--file", "-"][..],
        &["events", "--file", "-", "--json"][..],
    ] {
        let out = callwatch(args, Some(&sent));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Login"), "{text}");
        assert!(!text.contains("lab-secret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}
