//! Renders recorded figures into the table between two markers of a Markdown page.

use crate::Figure;

/// The line that opens the generated part of the page.
pub const BEGIN_MARKER: &str =
    "<!-- bench-table:begin (written by scripts/bench.sh; do not edit by hand) -->";
/// The line that closes it.
pub const END_MARKER: &str = "<!-- bench-table:end -->";

/// Why the table could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A line of the figures file is not a figure.
    #[error("line {line} of the figures file is not a figure: {source}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The figures file holds no figure (did every bench fail?).
    #[error("no figures were recorded")]
    Empty,
    /// The page lacks the markers that delimit the table.
    #[error("the page has no `{BEGIN_MARKER}` … `{END_MARKER}` block")]
    NoMarkers,
}

/// The Markdown block (markers included) for the figures in `jsonl` (one [`Figure`] per line; a later
/// line with the same id replaces an earlier one in place), headed by `run_info` (when, where, which commit).
pub fn render(jsonl: &str, run_info: &str) -> Result<String, RenderError> {
    let mut figures: Vec<Figure> = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let figure: Figure = serde_json::from_str(line).map_err(|source| RenderError::BadLine {
            line: i + 1,
            source,
        })?;
        match figures.iter_mut().find(|f| f.id == figure.id) {
            Some(slot) => *slot = figure,
            None => figures.push(figure),
        }
    }
    if figures.is_empty() {
        return Err(RenderError::Empty);
    }
    let mut out = String::new();
    out.push_str(BEGIN_MARKER);
    out.push_str("\n\n");
    out.push_str(run_info.trim());
    out.push_str("\n\n| figure | value | baseline, same run | ratio | what it means |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for f in &figures {
        let baseline = f
            .baseline
            .as_ref()
            .map(|b| format!("{}: {} {}", b.what, number(b.value), f.unit))
            .unwrap_or_else(|| "–".into());
        let ratio = f
            .ratio()
            .map(|r| format!("{r:.2}"))
            .unwrap_or_else(|| "–".into());
        out.push_str(&format!(
            "| {} | **{} {}** | {} | {} | {} |\n",
            cell(&f.what),
            number(f.value),
            cell(&f.unit),
            cell(&baseline),
            ratio,
            cell(&f.means)
        ));
    }
    let mut commands: Vec<&str> = Vec::new();
    for f in &figures {
        if !f.command.is_empty() && !commands.contains(&f.command.as_str()) {
            commands.push(&f.command);
        }
    }
    if !commands.is_empty() {
        out.push_str("\nThe benchmarks that made them (each also prints more detail):\n\n```sh\n");
        for c in commands {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str("```\n");
    }
    out.push('\n');
    out.push_str(END_MARKER);
    Ok(out)
}

/// `page` with the block between the markers (markers included) replaced by `block`.
pub fn replace_between_markers(page: &str, block: &str) -> Result<String, RenderError> {
    let start = page.find(BEGIN_MARKER).ok_or(RenderError::NoMarkers)?;
    let end = page[start..]
        .find(END_MARKER)
        .map(|i| start + i + END_MARKER.len())
        .ok_or(RenderError::NoMarkers)?;
    Ok(format!("{}{}{}", &page[..start], block, &page[end..]))
}

/// A value with as many digits as it deserves, thousands separated.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    let text = format!("{:.*}", decimals, v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(f: &Figure) -> String {
        serde_json::to_string(f).unwrap()
    }

    #[test]
    fn renders_one_row_per_id_with_ratio_and_commands() {
        let a = Figure::new(
            "ingest",
            "events/s through the client",
            1_812_345.0,
            "events/s",
        )
        .baseline("memchr split", 2_000_000.0)
        .means("a 700-call PBX makes 21,000 events/s")
        .command("cargo bench -p ami --bench loopback");
        let b_old = Figure::new("close", "close 10,000", 900.0, "ms");
        let b = Figure::new("close", "close 10,000", 459.4, "ms")
            .command("cargo bench -p store --bench close");
        let jsonl = [line(&a), line(&b_old), String::new(), line(&b)].join("\n");
        let block = render(&jsonl, "Run: now.").unwrap();
        assert!(block.starts_with(BEGIN_MARKER) && block.ends_with(END_MARKER));
        assert!(block.contains("| events/s through the client | **1,812,345 events/s** | memchr split: 2,000,000 events/s | 0.91 | a 700-call PBX makes 21,000 events/s |"), "{block}");
        assert!(
            block.contains("| close 10,000 | **459 ms** | – | – |"),
            "{block}"
        );
        assert!(
            !block.contains("900"),
            "the later record replaces the earlier: {block}"
        );
        assert!(block
            .contains("cargo bench -p ami --bench loopback\ncargo bench -p store --bench close\n"));
    }

    #[test]
    fn numbers_keep_sensible_digits() {
        assert_eq!(number(1234567.8), "1,234,568");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.2345), "1.23");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(-1500.0), "-1,500");
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(matches!(render("", "x"), Err(RenderError::Empty)));
        let err = render("{\"id\":1}", "x").unwrap_err();
        assert!(
            err.to_string().starts_with("line 1 of the figures file"),
            "{err}"
        );
        assert!(matches!(
            replace_between_markers("no markers", "b"),
            Err(RenderError::NoMarkers)
        ));
    }

    #[test]
    fn replaces_only_the_block() {
        let page = format!("head\n{BEGIN_MARKER}\nold\n{END_MARKER}\ntail\n");
        let out = replace_between_markers(&page, "NEW").unwrap();
        assert_eq!(out, "head\nNEW\ntail\n");
    }
}
