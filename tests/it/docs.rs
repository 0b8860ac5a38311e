//! The README is the user's path only (at most 300 lines); everything else lives in `docs/`, each page linked
//! from the README; every relative link in the README and the docs points at a file that exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Relative link targets (`](path)` or `](path#anchor)`) in a Markdown text.
fn relative_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        if !target.contains("://") && !target.starts_with('#') && !target.starts_with("mailto:") {
            out.push(target.split('#').next().unwrap().to_string());
        }
    }
    out
}

fn check_links(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    for link in relative_links(&text) {
        let target = file.parent().unwrap().join(&link);
        assert!(target.exists(), "{}: broken link {link}", file.display());
    }
}

#[test]
fn readme_is_short_and_links_every_docs_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines");
    // The quick start's two commands.
    assert!(readme.contains("cargo run --release -- demo"));
    assert!(readme.contains("cargo test --workspace"));
    let links = relative_links(&readme);
    let mut pages = 0;
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages += 1;
            let name = format!("docs/{}", path.file_name().unwrap().to_str().unwrap());
            assert!(links.contains(&name), "README does not link {name}");
            check_links(&path);
        }
    }
    assert!(
        pages >= 6,
        "configuration, Laravel, decisions, operations, performance, development"
    );
    check_links(&root().join("README.md"));
}
