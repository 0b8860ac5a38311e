//! MySQL/MariaDB specifics: `DATE_FORMAT`, `UPDATE … JOIN (SELECT … UNION ALL …)`.

pub(super) fn ts_text(expr: &str) -> String {
    format!("DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s')")
}

pub(super) fn update_from_values(
    table: &str,
    key_col: &str,
    values: &[&str],
    rows: &[Vec<String>],
    set: &[(String, String)],
    extra_where: &str,
) -> String {
    let mut derived = String::new();
    for (i, row) in rows.iter().enumerate() {
        if i == 0 {
            // Name the derived table's columns on the first row.
            let named: Vec<String> = row
                .iter()
                .zip(values.iter())
                .map(|(expr, name)| format!("{expr} AS {name}"))
                .collect();
            derived.push_str("SELECT ");
            derived.push_str(&named.join(", "));
        } else {
            derived.push_str(" UNION ALL SELECT ");
            derived.push_str(&row.join(", "));
        }
    }
    let set: Vec<String> = set.iter().map(|(c, e)| format!("t.{c} = {e}")).collect();
    format!(
        "UPDATE {table} AS t JOIN ({derived}) AS v ON t.{key_col} = v.{key} SET {set} WHERE {extra_where}",
        set = set.join(", "),
        key = values[0],
    )
}
