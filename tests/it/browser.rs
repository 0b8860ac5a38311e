//! A real browser for the HTML callwatch serves and writes: Debian's `chromium`, headless. `.ci/run`
//! installs it when missing; outside CI a test without it skips, saying so; under `CI=true` a missing
//! browser is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The browser, if installed (`None` outside CI: the caller skips; under CI: panics).
pub fn chromium() -> Option<PathBuf> {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return Some(PathBuf::from(candidate));
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "chromium is not installed (.ci/run installs the Debian package `chromium`)"
    );
    eprintln!("skipped: chromium is not installed (apt-get install chromium)");
    None
}

/// Where tests leave files for people to look at: `target/test-output/`.
pub fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn headless(browser: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null());
    cmd
}

/// Loads `url` and returns the DOM as the browser built it (`--dump-dom`).
pub fn dump_dom(browser: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = headless(browser, profile.path())
        .args(["--dump-dom", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium --dump-dom {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Loads `url` and saves a PNG screenshot of `width`x`height` to `path`.
pub fn screenshot(browser: &Path, url: &str, path: &Path, width: u32, height: u32) {
    let profile = tempfile::tempdir().unwrap();
    let _ = std::fs::remove_file(path);
    let out = headless(browser, profile.path())
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(path).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a screenshot",
        path.display()
    );
}

/// The text of the first element carrying `marker` (an attribute such as `data-state="alive"`) after the
/// element carrying `after` (e.g. `data-server="pbx1"`) in the section with id `section`, tags stripped.
pub fn text_after(dom: &str, section: &str, after: &str, marker: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{section}\""))?;
    let sect = &dom[start..];
    let sect = &sect[..sect.find("</section>").unwrap_or(sect.len())];
    let from = sect.find(after)?;
    let rest = &sect[from..];
    let at = rest.find(marker)?;
    let rest = &rest[at..];
    let open_end = rest.find('>')? + 1;
    let close = rest[open_end..]
        .find("</td>")
        .or_else(|| rest[open_end..].find("</p>"))?;
    Some(
        strip_tags(&rest[open_end..open_end + close])
            .trim()
            .to_string(),
    )
}

/// Text without tags.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}
