//! JSON event-list flows: a list of header objects (`[{"Event": "Newchannel", "Uniqueid": "…", …}, …]`),
//! such as the cacofonisk fixtures, turned into AMI [`Message`]s.
//!
//! Key order is kept as written, except that `Event` is moved to the front as Asterisk sends it. String
//! values are taken as they are, numbers and booleans as their JSON text, `null` as an empty value. An empty
//! `content` key (an artifact of the Python AMI library that captured these flows) is dropped.

use std::fmt;
use std::path::{Path, PathBuf};

use ami_proto::Message;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Default spacing between the synthetic arrival times of a flow's events.
pub const DEFAULT_SPACING: std::time::Duration = std::time::Duration::from_millis(100);

/// Loads a JSON event list from `path`.
pub fn load_events(path: &Path) -> Result<Vec<Message>> {
    let text = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_events(&text, path)
}

/// Parses a JSON event list; `path` is only used in error messages.
pub fn parse_events(json: &[u8], path: &Path) -> Result<Vec<Message>> {
    let bad = |reason: String| Error::EventList {
        path: path.to_owned(),
        reason,
    };
    let list: EventList = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(list.0.len());
    for (i, headers) in list.0.into_iter().enumerate() {
        for (k, v) in &headers {
            if k.is_empty() || k.contains([':', '\r', '\n']) {
                return Err(bad(format!(
                    "event {i}: header key {k:?} is not a valid AMI key"
                )));
            }
            if v.contains(['\r', '\n']) {
                return Err(bad(format!(
                    "event {i}: value of {k:?} contains a line break"
                )));
            }
        }
        let mut ordered: Vec<(String, String)> = Vec::with_capacity(headers.len());
        ordered.extend(
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("Event"))
                .cloned(),
        );
        ordered.extend(headers.into_iter().filter(|(k, v)| {
            !(k.eq_ignore_ascii_case("Event") || (k == "content" && v.is_empty()))
        }));
        if ordered.is_empty() {
            return Err(bad(format!("event {i} has no headers")));
        }
        out.push(Message::from_pairs(ordered));
    }
    Ok(out)
}

/// Display name of a flow file: its path without the `.json` extension.
pub(crate) fn flow_name(path: &Path) -> String {
    let p: PathBuf = path.with_extension("");
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

struct EventList(Vec<Vec<(String, String)>>);
struct Headers(Vec<(String, String)>);

impl<'de> Deserialize<'de> for EventList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of header objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<EventList, A::Error> {
                let mut out = Vec::new();
                while let Some(Headers(h)) = seq.next_element()? {
                    out.push(h);
                }
                Ok(EventList(out))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of header names to values")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Headers, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Number(n) => n.to_string(),
                        other => {
                            return Err(de::Error::custom(format!(
                                "header {k:?} has a nested value ({}), not text",
                                if other.is_array() {
                                    "a list"
                                } else {
                                    "an object"
                                }
                            )))
                        }
                    };
                    out.push((k, v));
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_moves_event_first_and_drops_empty_content() {
        let json = br#"[{"Channel": "SIP/a-1", "Event": "Newchannel", "Uniqueid": "1.1", "content": "", "N": 5, "B": true, "Z": null}]"#;
        let events = parse_events(json, Path::new("x.json")).unwrap();
        let keys: Vec<_> = events[0]
            .headers()
            .map(|h| h.key_str().unwrap().to_owned())
            .collect();
        assert_eq!(keys, ["Event", "Channel", "Uniqueid", "N", "B", "Z"]);
        assert_eq!(events[0].get_str("N"), Some("5"));
        assert_eq!(events[0].get_str("B"), Some("true"));
        assert_eq!(events[0].get_str("Z"), Some(""));
    }

    #[test]
    fn rejects_line_breaks_nested_values_and_non_lists() {
        for bad in [
            &br#"[{"Event": "A\r\nEvent: B"}]"#[..],
            br#"[{"Event": "A", "X": [1]}]"#,
            br#"{"Event": "A"}"#,
            br#"[{"Bad:Key": "v"}]"#,
            br#"[{}]"#,
            br#"[{"Event": "A"}"#,
        ] {
            assert!(
                parse_events(bad, Path::new("x.json")).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
