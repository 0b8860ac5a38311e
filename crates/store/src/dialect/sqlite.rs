//! SQLite specifics. Timestamps are text; `UPDATE … FROM` needs SQLite 3.33 (bundled: 3.4x).

pub(super) fn ts_text(expr: &str) -> String {
    // Normalise what applications commonly write (`T` separator, fractional seconds) to the canonical form;
    // `strftime` returns NULL for NULL or unparseable input, which we then report instead of guessing.
    format!("CASE WHEN {expr} IS NULL THEN NULL ELSE COALESCE(strftime('%Y-%m-%d %H:%M:%S', {expr}), CAST({expr} AS TEXT)) END")
}

pub(super) fn update_from_values(
    table: &str,
    key_col: &str,
    values: &[&str],
    rows: &[Vec<String>],
    set: &[(String, String)],
    extra_where: &str,
) -> String {
    // The rows come first in the text (a CTE), so that positional parameters are bound rows-then-SET.
    let set: Vec<String> = set.iter().map(|(c, e)| format!("{c} = {e}")).collect();
    format!(
        "WITH v({cols}) AS (VALUES {rows}) UPDATE {table} AS t SET {set} FROM v WHERE t.{key_col} = v.{key} AND {extra_where}",
        cols = values.join(", "),
        rows = rows.iter().map(|r| format!("({})", r.join(", "))).collect::<Vec<_>>().join(", "),
        set = set.join(", "),
        key = values[0],
    )
}
