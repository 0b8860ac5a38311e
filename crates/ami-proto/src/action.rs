//! Building and encoding AMI actions.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::message::is_secret_key;

/// An action to send to Asterisk: `Action:`, an optional `ActionID:`, then headers in order (repeats
/// allowed, e.g. several `Variable:` lines).
///
/// Keys and values are checked when added: a CR or LF would let a value inject headers or end the frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Action {
    name: String,
    action_id: Option<String>,
    headers: Vec<(String, String)>,
}

fn check(key: &str, value: &str) -> Result<(), EncodeError> {
    if key.is_empty() || key.contains(':') {
        return Err(EncodeError::BadKey { key: key.into() });
    }
    if key.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
        return Err(EncodeError::LineBreak { key: key.into() });
    }
    Ok(())
}

impl Action {
    /// A new action named `name` (e.g. `Login`, `CoreShowChannels`).
    pub fn new(name: &str) -> Result<Self, EncodeError> {
        check("Action", name)?;
        Ok(Self {
            name: name.into(),
            action_id: None,
            headers: Vec::new(),
        })
    }

    /// Sets the `ActionID:` header.
    pub fn with_action_id(mut self, id: &str) -> Result<Self, EncodeError> {
        check("ActionID", id)?;
        self.action_id = Some(id.into());
        Ok(self)
    }

    /// Appends a header (repeats allowed).
    pub fn header(mut self, key: &str, value: &str) -> Result<Self, EncodeError> {
        check(key, value)?;
        self.headers.push((key.into(), value.into()));
        Ok(self)
    }

    /// The action's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `ActionID`, if set.
    pub fn action_id(&self) -> Option<&str> {
        self.action_id.as_deref()
    }

    /// The first value of header `key` (ASCII case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Appends the wire form (CRLF line ends, blank line at the end) to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        let put = |out: &mut BytesMut, k: &str, v: &str| {
            out.put_slice(k.as_bytes());
            out.put_slice(b": ");
            out.put_slice(v.as_bytes());
            out.put_slice(b"\r\n");
        };
        put(out, "Action", &self.name);
        if let Some(id) = &self.action_id {
            put(out, "ActionID", id);
        }
        for (k, v) in &self.headers {
            put(out, k, v);
        }
        out.put_slice(b"\r\n");
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out
    }
}

impl fmt::Debug for Action {
    /// Secret values (`Secret:`, `Key:`) are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Action");
        s.field("name", &self.name)
            .field("action_id", &self.action_id);
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if is_secret_key(k.as_bytes()) {
                    format!("{k}: <redacted>")
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect();
        s.field("headers", &headers).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_in_order_with_crlf() {
        let a = Action::new("Originate")
            .unwrap()
            .with_action_id("42")
            .unwrap()
            .header("Channel", "Local/2001@inbound")
            .unwrap()
            .header("Variable", "A=1")
            .unwrap()
            .header("Variable", "B=2")
            .unwrap();
        assert_eq!(
            &a.to_bytes()[..],
            b"Action: Originate\r\nActionID: 42\r\nChannel: Local/2001@inbound\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
        );
    }

    #[test]
    fn rejects_header_injection() {
        let err = Action::new("Login")
            .unwrap()
            .header("Username", "x\r\nAction: Logoff")
            .unwrap_err();
        assert_eq!(
            err,
            EncodeError::LineBreak {
                key: "Username".into()
            }
        );
        assert!(Action::new("Ping\n").is_err());
        assert!(Action::new("Ping").unwrap().header("Bad:Key", "v").is_err());
        assert!(Action::new("Ping").unwrap().with_action_id("a\rb").is_err());
    }

    #[test]
    fn debug_hides_secret() {
        let a = Action::new("Login")
            .unwrap()
            .header("Secret", "lab-secret")
            .unwrap();
        assert!(!format!("{a:?}").contains("lab-secret"));
    }
}
