//! [`ActionPairing`]: the sans-IO heart of replay. It pairs the actions a live client sends with the actions
//! of the recording, rewrites recorded ActionIDs to the client's, holds a recorded response back until the
//! client has asked for it, and answers what the recording cannot.
//!
//! Rules:
//! - a client action is paired with the next unpaired recorded action of the same `Action:` name (ASCII
//!   case-insensitive); every message of the stream owned by that recorded action (its response, list
//!   items, `OriginateResponse`) then carries the client's ActionID instead (or none, when the client sent
//!   none). Recorded actions that come *before* the paired one and are still unpaired are abandoned: the
//!   client has moved past them, and their messages are left out;
//! - the stream stops at the response of a recorded action the client has not sent yet
//!   ([`UnsentPolicy::Wait`]) or leaves it out ([`UnsentPolicy::Skip`]);
//! - `Ping` is always answered here (`Response: Success`, `Ping: Pong`, `Timestamp:`), and recorded `Ping`
//!   responses are left out of the stream, so a client's keepalive never has to match the recorded one's;
//! - `Login`, `Challenge` and `Logoff` that the recording lacks are answered as a permissive Asterisk
//!   would (`Logoff` then closes); any other action the recording lacks gets `Response: Error` /
//!   `Message: Not in recording`;
//! - answers are only inserted between messages of the stream, never inside one;
//! - a synthetic session (an event list) holds its events back until the client has logged in.

use std::collections::VecDeque;

use ami_proto::Message;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};

use crate::session::{FrameSpan, Session};

/// What to do with the recorded response of an action the client has not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnsentPolicy {
    /// Stop the stream there until the client sends it (the default).
    #[default]
    Wait,
    /// Leave that response (and every message it owns) out and go on.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Pending,
    Paired(Option<String>),
    Abandoned,
}

#[derive(Debug, Clone)]
enum Edit {
    Keep,
    Drop,
    Replace {
        start: usize,
        end: usize,
        with: Bytes,
    },
}

/// How a client action was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientOutcome {
    /// Paired with recorded action `recorded` (index in [`Session::actions`]); its response comes from the
    /// stream.
    Paired {
        /// Index of the recorded action.
        recorded: usize,
    },
    /// Answered by the pairing itself; the answer is queued for the next message boundary.
    Answered(AnswerKind),
}

/// Which built-in answer a client action got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerKind {
    /// `Ping` → `Pong`.
    Ping,
    /// `Login` → `Authentication accepted`.
    Login,
    /// `Challenge` → a challenge string.
    Challenge,
    /// `Logoff` → `Goodbye`, then the connection closes.
    Logoff,
    /// An action the recording lacks → `Not in recording`.
    NotInRecording,
    /// A message without an `Action:` header → `Missing action in request`.
    MissingAction,
}

/// Where the stream stands after [`ActionPairing::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// Everything up to the requested offset has been produced.
    Reached,
    /// The stream waits for the client to send recorded action `recorded` (named `name`).
    WaitingFor {
        /// Index of the recorded action.
        recorded: usize,
        /// Its `Action:` name.
        name: String,
    },
    /// A synthetic session waits for the client's `Login`.
    WaitingForLogin,
    /// The client logged off: write what was produced, then close.
    Close,
}

/// Bytes to write now, and why the stream stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The bytes to send, answers and stream interleaved at message boundaries.
    pub bytes: Bytes,
    /// Why production stopped.
    pub progress: Progress,
}

/// Pairs client actions with a recording's actions and produces the stream to send; see the module docs.
#[derive(Clone)]
pub struct ActionPairing {
    bytes: Bytes,
    frames: Vec<FrameSpan>,
    names: Vec<String>,
    response_frames: Vec<Option<usize>>,
    status: Vec<Status>,
    policy: UnsentPolicy,
    synthetic: bool,
    logged_in: bool,
    /// Stream offset produced so far.
    pos: usize,
    /// Index of the first frame ending after `pos`.
    frame: usize,
    /// Edit decided for `frame` when its first byte was produced.
    edit: Edit,
    answers: VecDeque<Bytes>,
    close: bool,
}

impl std::fmt::Debug for ActionPairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionPairing")
            .field("position", &self.pos)
            .field("len", &self.bytes.len())
            .field("recorded", &self.names)
            .field("status", &self.status)
            .field("policy", &self.policy)
            .field("logged_in", &self.logged_in)
            .field("queued_answers", &self.answers.len())
            .finish()
    }
}

fn answer(pairs: &[(&str, &str)], action_id: Option<&str>) -> Bytes {
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(pairs.len() + 1);
    headers.push(pairs[0]);
    if let Some(id) = action_id {
        headers.push(("ActionID", id));
    }
    headers.extend_from_slice(&pairs[1..]);
    Message::from_pairs(headers).to_bytes()
}

/// The answer Asterisk gives to `Ping`: `Timestamp` is `now` in seconds with microseconds.
pub fn pong(action_id: Option<&str>, now: DateTime<Utc>) -> Bytes {
    let ts = format!("{}.{:06}", now.timestamp(), now.timestamp_subsec_micros());
    answer(
        &[
            ("Response", "Success"),
            ("Ping", "Pong"),
            ("Timestamp", &ts),
        ],
        action_id,
    )
}

/// `Response: Error` with `message`.
pub fn error_response(action_id: Option<&str>, message: &str) -> Bytes {
    answer(&[("Response", "Error"), ("Message", message)], action_id)
}

/// `Response: Success` to a `Login`.
pub fn login_accepted(action_id: Option<&str>) -> Bytes {
    answer(
        &[
            ("Response", "Success"),
            ("Message", "Authentication accepted"),
        ],
        action_id,
    )
}

/// `Response: Goodbye` to a `Logoff`.
pub fn goodbye(action_id: Option<&str>) -> Bytes {
    answer(
        &[
            ("Response", "Goodbye"),
            ("Message", "Thanks for all the fish."),
        ],
        action_id,
    )
}

/// `Response: Success` to a `Challenge`, with `challenge`.
pub fn challenge_response(action_id: Option<&str>, challenge: &str) -> Bytes {
    answer(
        &[("Response", "Success"), ("Challenge", challenge)],
        action_id,
    )
}

impl ActionPairing {
    /// A pairing for one connection serving `session`.
    pub fn new(session: &Session, policy: UnsentPolicy) -> Self {
        let actions = session.actions();
        Self {
            bytes: session.bytes().clone(),
            frames: session.frames().to_vec(),
            names: actions.iter().map(|a| a.name.clone()).collect(),
            response_frames: actions.iter().map(|a| a.response_frame).collect(),
            status: vec![Status::Pending; actions.len()],
            policy,
            synthetic: session.is_synthetic(),
            logged_in: false,
            pos: 0,
            frame: 0,
            edit: Edit::Keep,
            answers: VecDeque::new(),
            close: false,
        }
    }

    /// Stream offset produced so far (in the recorded stream's bytes).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Length of the recorded stream.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when the recorded stream is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// True when the whole recorded stream has been produced.
    pub fn finished(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// True when the client has logged in (a `Login` paired or answered).
    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// Answers waiting for a message boundary.
    pub fn queued_answers(&self) -> usize {
        self.answers.len()
    }

    fn is_ping(&self, recorded: usize) -> bool {
        self.names[recorded].eq_ignore_ascii_case("Ping")
    }

    /// Handles one action the client sent. `now` is the time on the recording's clock (it stamps `Pong`).
    pub fn on_client_action(&mut self, action: &Message, now: DateTime<Utc>) -> ClientOutcome {
        let id = action.action_id();
        let Some(name) = action.get_str("Action") else {
            self.answers
                .push_back(error_response(id, "Missing action in request"));
            return ClientOutcome::Answered(AnswerKind::MissingAction);
        };
        if name.eq_ignore_ascii_case("Ping") {
            self.answers.push_back(pong(id, now));
            return ClientOutcome::Answered(AnswerKind::Ping);
        }
        let found = (0..self.names.len()).find(|&j| {
            self.status[j] == Status::Pending && self.names[j].eq_ignore_ascii_case(name)
        });
        if let Some(j) = found {
            self.status[j] = Status::Paired(id.map(str::to_owned));
            for i in 0..j {
                if self.status[i] == Status::Pending && !self.is_ping(i) {
                    self.status[i] = Status::Abandoned;
                }
            }
            if name.eq_ignore_ascii_case("Login") {
                self.logged_in = true;
            }
            return ClientOutcome::Paired { recorded: j };
        }
        let kind = if name.eq_ignore_ascii_case("Login") {
            self.logged_in = true;
            self.answers.push_back(login_accepted(id));
            AnswerKind::Login
        } else if name.eq_ignore_ascii_case("Challenge") {
            self.answers.push_back(challenge_response(id, "123456789"));
            AnswerKind::Challenge
        } else if name.eq_ignore_ascii_case("Logoff") {
            self.answers.push_back(goodbye(id));
            self.close = true;
            AnswerKind::Logoff
        } else {
            self.answers
                .push_back(error_response(id, "Not in recording"));
            AnswerKind::NotInRecording
        };
        ClientOutcome::Answered(kind)
    }

    /// Gives up on recorded action `recorded` (as [`Progress::WaitingFor`] named it): the client is not going
    /// to send it, so its response and every message it owns are left out and the stream goes on. Returns
    /// false when that action was not pending.
    pub fn abandon(&mut self, recorded: usize) -> bool {
        match self.status.get_mut(recorded) {
            Some(s @ Status::Pending) => {
                *s = Status::Abandoned;
                true
            }
            _ => false,
        }
    }

    /// True when `pos` is not inside a message (so an answer may be inserted).
    fn at_boundary(&self) -> bool {
        match self.frames.get(self.frame) {
            Some(f) => self.pos <= f.start,
            // Past the last complete frame: a boundary unless a partial message has begun.
            None => self.pos == self.frames.last().map_or(0, |f| f.end),
        }
    }

    /// Produces the stream up to recorded offset `upto` (clamped to the stream's length), with queued
    /// answers inserted at message boundaries, stopping early where a recorded response must wait.
    pub fn poll(&mut self, upto: usize) -> Output {
        let upto = upto.min(self.bytes.len());
        let mut out = BytesMut::new();
        loop {
            if self.at_boundary() {
                while let Some(a) = self.answers.pop_front() {
                    out.extend_from_slice(&a);
                }
                if self.close {
                    return self.output(out, Progress::Close);
                }
            }
            if self.pos >= upto {
                return self.output(out, Progress::Reached);
            }
            let Some(f) = self.frames.get(self.frame).cloned() else {
                // A trailing partial message: pass it through.
                out.extend_from_slice(&self.bytes[self.pos..upto]);
                self.pos = upto;
                continue;
            };
            if self.pos < f.start {
                // Bytes between frames (stray blank lines).
                let to = f.start.min(upto);
                out.extend_from_slice(&self.bytes[self.pos..to]);
                self.pos = to;
                continue;
            }
            if self.pos == f.start {
                if self.synthetic && !self.logged_in && self.frame > 0 {
                    return self.output(out, Progress::WaitingForLogin);
                }
                match self.decide(self.frame, &f) {
                    Some(edit) => self.edit = edit,
                    None => {
                        let recorded = f.owner.unwrap_or_default();
                        let name = self.names[recorded].clone();
                        return self.output(out, Progress::WaitingFor { recorded, name });
                    }
                }
            }
            let to = f.end.min(upto);
            self.emit(&mut out, self.pos, to);
            self.pos = to;
            if self.pos == f.end {
                self.frame += 1;
                self.edit = Edit::Keep;
            }
        }
    }

    fn output(&self, out: BytesMut, progress: Progress) -> Output {
        Output {
            bytes: out.freeze(),
            progress,
        }
    }

    /// The edit for frame `fi`, or `None` when it must wait for the client.
    fn decide(&mut self, fi: usize, f: &FrameSpan) -> Option<Edit> {
        let Some(j) = f.owner else {
            return Some(Edit::Keep);
        };
        if self.is_ping(j) {
            return Some(Edit::Drop);
        }
        let is_response = self.response_frames[j] == Some(fi);
        match &self.status[j] {
            Status::Abandoned => Some(Edit::Drop),
            Status::Pending if !is_response => Some(Edit::Keep),
            Status::Pending => match self.policy {
                UnsentPolicy::Wait => None,
                UnsentPolicy::Skip => {
                    self.status[j] = Status::Abandoned;
                    Some(Edit::Drop)
                }
            },
            Status::Paired(client) => Some(match (client, f.action_id, f.action_id_line) {
                (Some(c), Some((a, b)), _) => Edit::Replace {
                    start: a,
                    end: b,
                    with: Bytes::copy_from_slice(c.as_bytes()),
                },
                (None, _, Some((a, b))) => Edit::Replace {
                    start: a,
                    end: b,
                    with: Bytes::new(),
                },
                (Some(c), None, _) => Edit::Replace {
                    start: f.first_line_end,
                    end: f.first_line_end,
                    with: Bytes::from(format!("ActionID: {c}\r\n")),
                },
                (None, None, None) | (None, Some(_), None) => Edit::Keep,
            }),
        }
    }

    /// Appends recorded bytes `[s, e)` of the current frame, with its edit applied.
    fn emit(&self, out: &mut BytesMut, s: usize, e: usize) {
        match &self.edit {
            Edit::Keep => out.extend_from_slice(&self.bytes[s..e]),
            Edit::Drop => {}
            Edit::Replace { start, end, with } => {
                if s < *start {
                    out.extend_from_slice(&self.bytes[s..e.min(*start)]);
                }
                if s <= *start && *start < e {
                    out.extend_from_slice(with);
                }
                let rest = s.max(*end);
                if rest < e {
                    out.extend_from_slice(&self.bytes[rest..e]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ami_proto::{Frame, Limits, Parser};

    use super::*;

    fn session(name: &str) -> Session {
        Session::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/ami")
                .join(name),
        )
        .unwrap()
    }

    fn action(pairs: &[(&str, &str)]) -> Message {
        Message::from_pairs(pairs.iter().copied())
    }

    fn messages(bytes: &[u8]) -> Vec<Message> {
        let mut p = Parser::new(Limits::default());
        let mut buf = BytesMut::from(bytes);
        std::iter::from_fn(|| p.next_frame(&mut buf))
            .filter_map(|f| match f {
                Ok(Frame::Message(m)) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// `m` with its ActionID mapped through `map` (`None` drops the message).
    fn remap(m: &Message, map: &[(&str, Option<&str>)]) -> Option<Message> {
        let id = m.action_id();
        let new = match map.iter().find(|(from, _)| Some(*from) == id) {
            Some((_, None)) => return None,
            Some((_, Some(to))) => Some(*to),
            None => id,
        };
        Some(Message::from_pairs(m.headers().map(|h| {
            if h.key.eq_ignore_ascii_case(b"ActionID") {
                (h.key.to_vec(), new.unwrap_or_default().as_bytes().to_vec())
            } else {
                (h.key.to_vec(), h.value.to_vec())
            }
        })))
    }

    const T: DateTime<Utc> = DateTime::UNIX_EPOCH;

    #[test]
    fn an_abandoned_action_is_left_out_and_the_stream_goes_on() {
        let s = session("disconnect-gap.subject-2");
        let mut p = ActionPairing::new(&s, UnsentPolicy::Wait);
        p.poll(usize::MAX);
        p.on_client_action(&action(&[("Action", "Login"), ("ActionID", "c1")]), T);
        p.poll(usize::MAX);
        p.on_client_action(
            &action(&[("Action", "CoreShowChannels"), ("ActionID", "c2")]),
            T,
        );
        let o = p.poll(usize::MAX);
        let Progress::WaitingFor { recorded, ref name } = o.progress else {
            panic!("{:?}", o.progress)
        };
        assert_eq!(name, "Status");
        assert!(p.abandon(recorded));
        assert!(
            !p.abandon(recorded),
            "only a pending action can be abandoned"
        );
        let rest = p.poll(usize::MAX);
        // The stream runs on to the recorded Logoff's response, without any Status message.
        assert!(matches!(rest.progress, Progress::WaitingFor { ref name, .. } if name == "Logoff"));
        let text = String::from_utf8_lossy(&rest.bytes);
        assert!(
            !text.contains("Event: Status\r\n") && !text.contains("StatusComplete"),
            "{text}"
        );
        assert!(
            text.contains("Event: Newchannel"),
            "the events after the listing still flow"
        );
    }

    #[test]
    fn waits_for_each_action_and_rewrites_its_action_id() {
        let s = session("disconnect-gap.subject-2");
        let mut p = ActionPairing::new(&s, UnsentPolicy::Wait);
        let mut out = BytesMut::new();

        let o = p.poll(usize::MAX);
        assert_eq!(&o.bytes[..], b"Asterisk Call Manager/11.0.0\r\n");
        assert!(matches!(o.progress, Progress::WaitingFor { ref name, .. } if name == "Login"));
        out.extend_from_slice(&o.bytes);
        // Polling again without a client action produces nothing more.
        assert!(p.poll(usize::MAX).bytes.is_empty());

        let login = action(&[
            ("Action", "Login"),
            ("ActionID", "c1"),
            ("Username", "u"),
            ("Secret", "x"),
        ]);
        assert_eq!(
            p.on_client_action(&login, T),
            ClientOutcome::Paired { recorded: 0 }
        );
        let o = p.poll(usize::MAX);
        assert!(
            matches!(o.progress, Progress::WaitingFor { ref name, .. } if name == "CoreShowChannels")
        );
        out.extend_from_slice(&o.bytes);

        let csc = action(&[("Action", "CoreShowChannels"), ("ActionID", "c2")]);
        assert_eq!(
            p.on_client_action(&csc, T),
            ClientOutcome::Paired { recorded: 1 }
        );
        let o = p.poll(usize::MAX);
        assert!(matches!(o.progress, Progress::WaitingFor { ref name, .. } if name == "Status"));
        out.extend_from_slice(&o.bytes);

        // The client never asks for Status: its Logoff abandons it.
        let logoff = action(&[("Action", "Logoff"), ("ActionID", "c4")]);
        assert_eq!(
            p.on_client_action(&logoff, T),
            ClientOutcome::Paired { recorded: 3 }
        );
        let o = p.poll(usize::MAX);
        assert_eq!(o.progress, Progress::Reached);
        assert!(p.finished());
        out.extend_from_slice(&o.bytes);

        let map = [
            ("subject-2-login-1", Some("c1")),
            ("subject-2-coreshowchannels-2", Some("c2")),
            ("subject-2-status-3", None),
            ("subject-2-logoff-4", Some("c4")),
        ];
        let expected: Vec<Message> = messages(s.bytes())
            .iter()
            .filter_map(|m| remap(m, &map))
            .collect();
        let got = messages(&out);
        assert_eq!(got.len(), expected.len());
        assert_eq!(got, expected);
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("subject-2-"));
        assert!(!text.contains("Event: StatusComplete"));
        assert!(text.contains("Event: CoreShowChannelsComplete\r\nActionID: c2\r\n"));
    }

    #[test]
    fn skip_policy_streams_without_waiting_and_leaves_unsent_responses_out() {
        let s = session("disconnect-gap.subject-2");
        let mut p = ActionPairing::new(&s, UnsentPolicy::Skip);
        let o = p.poll(usize::MAX);
        assert_eq!(o.progress, Progress::Reached);
        let expected: Vec<Message> = messages(s.bytes())
            .into_iter()
            .filter(|m| m.action_id().is_none_or(|id| !id.starts_with("subject-2-")))
            .collect();
        assert_eq!(messages(&o.bytes), expected);
    }

    #[test]
    fn client_without_action_id_gets_responses_without_one() {
        let s = session("basic.subject-1");
        let mut p = ActionPairing::new(&s, UnsentPolicy::Wait);
        p.poll(usize::MAX);
        p.on_client_action(&action(&[("Action", "Login"), ("Username", "u")]), T);
        let o = p.poll(usize::MAX);
        let first = &messages(&o.bytes)[0];
        assert_eq!(first.response(), Some("Success"));
        assert_eq!(first.action_id(), None);
        assert_eq!(first.get_str("Message"), Some("Authentication accepted"));
    }

    #[test]
    fn ping_is_answered_here_and_recorded_pongs_are_left_out() {
        let s = session("ping.subject-1");
        let mut p = ActionPairing::new(&s, UnsentPolicy::Wait);
        p.poll(usize::MAX);
        p.on_client_action(&action(&[("Action", "Login"), ("ActionID", "l")]), T);
        let now = DateTime::from_timestamp(1_795_522_235, 497_135_000).unwrap();
        assert_eq!(
            p.on_client_action(&action(&[("Action", "Ping"), ("ActionID", "p1")]), now),
            ClientOutcome::Answered(AnswerKind::Ping)
        );
        let o = p.poll(usize::MAX);
        let msgs = messages(&o.bytes);
        let pongs: Vec<_> = msgs
            .iter()
            .filter(|m| m.get_str("Ping") == Some("Pong"))
            .collect();
        assert_eq!(pongs.len(), 1, "only our own Pong");
        assert_eq!(pongs[0].action_id(), Some("p1"));
        assert_eq!(pongs[0].get_str("Timestamp"), Some("1795522235.497135"));
        // It stops at the Logoff response, the recorded pings never block it.
        assert!(matches!(o.progress, Progress::WaitingFor { ref name, .. } if name == "Logoff"));
    }

    #[test]
    fn unknown_action_is_not_in_recording_and_answers_wait_for_a_boundary() {
        let s = session("basic.subject-1");
        let mut p = ActionPairing::new(&s, UnsentPolicy::Wait);
        p.poll(usize::MAX);
        p.on_client_action(&action(&[("Action", "Login"), ("ActionID", "l")]), T);
        // Stop in the middle of a message.
        let f = s.frames()[5].clone();
        let mid = f.start + 7;
        p.poll(mid);
        assert_eq!(p.position(), mid);
        let out = p.on_client_action(&action(&[("Action", "QueueStatus"), ("ActionID", "q")]), T);
        assert_eq!(out, ClientOutcome::Answered(AnswerKind::NotInRecording));
        assert!(p.poll(mid).bytes.is_empty(), "no answer inside a message");
        let o = p.poll(f.end);
        assert_eq!(&o.bytes[..f.end - mid], &s.bytes()[mid..f.end]);
        assert_eq!(
            &o.bytes[f.end - mid..],
            b"Response: Error\r\nActionID: q\r\nMessage: Not in recording\r\n\r\n"
        );
        // A message without Action: gets Asterisk's own complaint.
        let out = p.on_client_action(&action(&[("ActionID", "z")]), T);
        assert_eq!(out, ClientOutcome::Answered(AnswerKind::MissingAction));
    }

    #[test]
    fn action_id_split_across_reads_is_rewritten_once() {
        let s = session("disconnect-gap.subject-2");
        let full = {
            let mut p = ActionPairing::new(&s, UnsentPolicy::Wait);
            p.poll(usize::MAX);
            p.on_client_action(&action(&[("Action", "Login"), ("ActionID", "abc")]), T);
            p.poll(usize::MAX).bytes
        };
        // Byte by byte through the Login response (whose ActionID is rewritten).
        let mut p = ActionPairing::new(&s, UnsentPolicy::Wait);
        let mut out = BytesMut::from(&p.poll(30).bytes[..]);
        p.on_client_action(&action(&[("Action", "Login"), ("ActionID", "abc")]), T);
        let mut upto = 30;
        while p.position() < s.bytes().len() {
            upto += 1;
            let o = p.poll(upto);
            out.extend_from_slice(&o.bytes);
            if matches!(o.progress, Progress::WaitingFor { .. }) {
                break;
            }
        }
        assert_eq!(&out[30..], &full[..]);
    }

    #[test]
    fn synthetic_session_waits_for_login_and_answers_it() {
        let events = [Message::from_pairs([("Event", "FullyBooted")])];
        let s = Session::from_events("f", &events, T, std::time::Duration::from_millis(100));
        let mut p = ActionPairing::new(&s, UnsentPolicy::Wait);
        let o = p.poll(usize::MAX);
        assert_eq!(o.progress, Progress::WaitingForLogin);
        assert_eq!(&o.bytes[..], b"Asterisk Call Manager/11.0.0\r\n");
        p.on_client_action(&action(&[("Action", "Challenge"), ("ActionID", "1")]), T);
        p.on_client_action(&action(&[("Action", "Login"), ("ActionID", "2")]), T);
        let o = p.poll(usize::MAX);
        let msgs = messages(&[&b"X\r\n"[..], &o.bytes].concat());
        assert_eq!(msgs[0].get_str("Challenge"), Some("123456789"));
        assert_eq!(msgs[1].get_str("Message"), Some("Authentication accepted"));
        assert_eq!(msgs[2].event(), Some("FullyBooted"));
        p.on_client_action(&action(&[("Action", "Logoff")]), T);
        let o = p.poll(usize::MAX);
        assert_eq!(o.progress, Progress::Close);
        assert!(o.bytes.starts_with(b"Response: Goodbye\r\n"));
    }
}
