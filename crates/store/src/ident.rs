//! SQL identifiers from configuration: validated, then quoted per dialect.

use std::fmt;

use crate::dialect::Dialect;
use crate::error::Error;

/// A validated identifier: `[A-Za-z_][A-Za-z0-9_]*`, or `schema.table` for table names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident {
    parts: Vec<String>,
}

impl Ident {
    /// Validates a column name (no schema part).
    pub fn column(name: &str) -> Result<Self, Error> {
        if !is_simple(name) {
            return Err(Error::Config(format!(
                "column name {name:?} is not a valid identifier ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
        Ok(Self {
            parts: vec![name.to_string()],
        })
    }

    /// Validates a table name: `table` or `schema.table`.
    pub fn table(name: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| is_simple(p)) {
            return Err(Error::Config(format!(
                "table name {name:?} is not a valid identifier ([A-Za-z_][A-Za-z0-9_]*, optionally schema.table)"
            )));
        }
        Ok(Self {
            parts: parts.into_iter().map(str::to_string).collect(),
        })
    }

    /// The last part (the table or column name itself).
    pub fn name(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or("")
    }

    /// The schema part, if any.
    pub fn schema(&self) -> Option<&str> {
        if self.parts.len() == 2 {
            Some(&self.parts[0])
        } else {
            None
        }
    }

    /// The identifier quoted for `dialect` (`"x"` or `` `x` ``).
    pub fn quoted(&self, dialect: Dialect) -> String {
        let q = dialect.quote_char();
        self.parts
            .iter()
            .map(|p| format!("{q}{p}{q}"))
            .collect::<Vec<_>>()
            .join(".")
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts.join("."))
    }
}

fn is_simple(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    s.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_schema_qualified_names() {
        assert_eq!(
            Ident::table("calls").unwrap().quoted(Dialect::Postgres),
            "\"calls\""
        );
        assert_eq!(
            Ident::table("app.phone_calls")
                .unwrap()
                .quoted(Dialect::MySql),
            "`app`.`phone_calls`"
        );
        assert_eq!(Ident::column("_x9").unwrap().name(), "_x9");
    }

    #[test]
    fn rejects_anything_that_could_escape_quoting() {
        for bad in [
            "",
            "9calls",
            "calls;drop",
            "a\"b",
            "a`b",
            "a.b.c",
            "ca lls",
            "é",
            ".calls",
            "calls.",
        ] {
            assert!(Ident::table(bad).is_err(), "{bad:?} accepted as a table");
        }
        assert!(Ident::column("s.c").is_err());
        assert!(Ident::column(&"x".repeat(65)).is_err());
    }
}
