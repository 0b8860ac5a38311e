//! Which server's channels judge which row.
//!
//! A row belongs to the watched server named in its `server` column; a row with no server (or a table
//! without a server column) belongs to the default server. Rows of servers that are not watched (none
//! configured, `--no-ami`, or a name no `[[server]]` has) form the [`Group::Unwatched`] group: no listing
//! can judge them, so the seed's rule applies.

use std::collections::BTreeMap;

use store::OpenCall;

/// A group of rows judged together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// The rows of this watched server.
    Server(String),
    /// Rows no watched server covers.
    Unwatched,
}

impl Group {
    /// The server's name, or `-` for unwatched rows.
    pub fn label(&self) -> &str {
        match self {
            Group::Server(name) => name,
            Group::Unwatched => "-",
        }
    }
}

/// A watched server: its name and whether rows without a server belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The server's name (as in the `server` column).
    pub name: String,
    /// Rows with no server belong to it.
    pub is_default: bool,
}

/// Splits `calls` by the group that judges them; each group keeps the rows' order.
pub fn split(calls: Vec<OpenCall>, watched: &[Watched]) -> BTreeMap<Group, Vec<OpenCall>> {
    let default = watched.iter().find(|w| w.is_default).map(|w| &w.name);
    let mut out: BTreeMap<Group, Vec<OpenCall>> = BTreeMap::new();
    for call in calls {
        let server = call.server.as_deref().filter(|s| !s.is_empty());
        let group = match server {
            Some(s) => watched
                .iter()
                .find(|w| w.name == s)
                .map_or(Group::Unwatched, |w| Group::Server(w.name.clone())),
            None => default.map_or(Group::Unwatched, |d| Group::Server(d.clone())),
        };
        out.entry(group).or_default().push(call);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use store::CallId;

    fn call(id: i64, server: Option<&str>) -> OpenCall {
        OpenCall {
            id: CallId::Int(id),
            uniqueid: None,
            linkedid: None,
            channel: None,
            extension: None,
            caller: None,
            server: server.map(str::to_string),
            status: None,
            started_at: None,
            answered_at: Utc::now(),
            talk_seconds: None,
        }
    }

    fn ids(g: &BTreeMap<Group, Vec<OpenCall>>, k: &Group) -> Vec<String> {
        g.get(k)
            .map(|v| v.iter().map(|c| c.id.to_text()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn rows_go_to_their_server_the_default_or_unwatched() {
        let calls = vec![
            call(1, Some("pbx1")),
            call(2, None),
            call(3, Some("pbx2")),
            call(4, Some("pbx9")),
            call(5, Some("")),
        ];
        let watched = [
            Watched {
                name: "pbx1".into(),
                is_default: false,
            },
            Watched {
                name: "pbx2".into(),
                is_default: true,
            },
        ];
        let g = split(calls.clone(), &watched);
        assert_eq!(ids(&g, &Group::Server("pbx1".into())), ["1"]);
        assert_eq!(ids(&g, &Group::Server("pbx2".into())), ["2", "3", "5"]);
        assert_eq!(ids(&g, &Group::Unwatched), ["4"]);

        // nothing watched: every row is judged by the seed's rule
        let g = split(calls, &[]);
        assert_eq!(ids(&g, &Group::Unwatched), ["1", "2", "3", "4", "5"]);
        assert_eq!(g.len(), 1);
    }
}
