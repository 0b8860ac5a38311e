//! PostgreSQL specifics: `to_char` for timestamps, `UPDATE … FROM (VALUES …)`.

pub(super) fn ts_text(expr: &str) -> String {
    format!("to_char({expr}, 'YYYY-MM-DD HH24:MI:SS')")
}

pub(super) fn update_from_values(
    table: &str,
    key_col: &str,
    values: &[&str],
    rows: &[Vec<String>],
    set: &[(String, String)],
    extra_where: &str,
) -> String {
    let set: Vec<String> = set.iter().map(|(c, e)| format!("{c} = {e}")).collect();
    format!(
        "UPDATE {table} AS t SET {set} FROM (VALUES {rows}) AS v({cols}) WHERE t.{key_col} = v.{key} AND {extra_where}",
        set = set.join(", "),
        rows = rows.iter().map(|r| format!("({})", r.join(", "))).collect::<Vec<_>>().join(", "),
        cols = values.join(", "),
        key = values[0],
    )
}
