//! The values the store takes and returns.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A row's primary key: integer or string, as configured by [`crate::IdType`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum CallId {
    /// An integer id.
    Int(i64),
    /// A string id (e.g. a UUID).
    Text(String),
}

impl CallId {
    /// The id as text (how the audit table stores it).
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallId::Int(i) => write!(f, "{i}"),
            CallId::Text(s) => f.write_str(s),
        }
    }
}

impl From<i64> for CallId {
    fn from(v: i64) -> Self {
        CallId::Int(v)
    }
}

impl From<&str> for CallId {
    fn from(v: &str) -> Self {
        CallId::Text(v.to_string())
    }
}

/// Which Asterisk server's calls to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFilter<'a> {
    /// Every server.
    Any,
    /// The default server: rows whose server column is NULL (all rows when no server column is mapped).
    Default,
    /// The named server.
    Named(&'a str),
}

/// An answered call whose row has no `ended_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenCall {
    /// Primary key.
    pub id: CallId,
    /// Asterisk Uniqueid.
    pub uniqueid: Option<String>,
    /// Asterisk Linkedid.
    pub linkedid: Option<String>,
    /// Channel name.
    pub channel: Option<String>,
    /// Agent extension.
    pub extension: Option<String>,
    /// Caller number.
    pub caller: Option<String>,
    /// Asterisk server name (None = default server).
    pub server: Option<String>,
    /// Status value, if a status column is mapped.
    pub status: Option<String>,
    /// Ringing start.
    pub started_at: Option<DateTime<Utc>>,
    /// Answer time.
    pub answered_at: DateTime<Utc>,
    /// Talk seconds already recorded, if any.
    pub talk_seconds: Option<i64>,
}

/// An open row that cannot be read (e.g. `answered_at` holding MySQL's zero date `0000-00-00 00:00:00`,
/// junk text, or a value with a zone suffix). It is left out of every decision and never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableRow {
    /// Primary key.
    pub id: CallId,
    /// Asterisk server name (None = default server).
    pub server: Option<String>,
    /// The column whose value could not be read (as mapped).
    pub column: String,
    /// The value as stored, as text (at most 64 characters), when it could be read as text.
    pub value: Option<String>,
    /// What was wrong.
    pub detail: String,
}

/// The open rows of a read: those that could be read, and those quarantined as unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpenRows {
    /// Rows read, ordered by id.
    pub calls: Vec<OpenCall>,
    /// Rows that could not be read, ordered by id.
    pub unreadable: Vec<UnreadableRow>,
}

/// The ids of channels that changed: [`crate::Store::in_progress_matching`] reads the open rows that carry
/// one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowKeys {
    /// Values of the `uniqueid` column to look up.
    pub uniqueids: Vec<String>,
    /// Values of the `linkedid` column to look up.
    pub linkedids: Vec<String>,
}

/// Why callwatch closes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CloseReason {
    /// A Hangup event for the call's channel was seen.
    HangupSeen,
    /// The channel is missing from a complete resync.
    ChannelGone,
    /// Asterisk restarted, so every channel of the old run is gone.
    AsteriskRestart,
    /// The call exceeded the configured maximum duration.
    TimeoutCleanup,
    /// A newer call on the same channel/extension superseded it.
    Superseded,
    /// An operator closed it by hand.
    Manual,
    /// A channel Asterisk kept after the call was gone held the row open longer than
    /// `max_call_duration`, and suspected ghosts are closed (`close_ghosts`).
    GhostChannel,
}

impl CloseReason {
    /// Every reason.
    pub const ALL: [CloseReason; 7] = [
        CloseReason::HangupSeen,
        CloseReason::ChannelGone,
        CloseReason::AsteriskRestart,
        CloseReason::TimeoutCleanup,
        CloseReason::Superseded,
        CloseReason::Manual,
        CloseReason::GhostChannel,
    ];

    /// The stored name (`hangup_seen`, `channel_gone`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HangupSeen => "hangup_seen",
            CloseReason::ChannelGone => "channel_gone",
            CloseReason::AsteriskRestart => "asterisk_restart",
            CloseReason::TimeoutCleanup => "timeout_cleanup",
            CloseReason::Superseded => "superseded",
            CloseReason::Manual => "manual",
            CloseReason::GhostChannel => "ghost_channel",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The row.
    pub call_id: CallId,
    /// The end time to write (raised to `answered_at` if earlier, so talk time is never negative).
    pub ended_at: DateTime<Utc>,
    /// Hangup cause text to write.
    pub hangup_cause: String,
    /// Why.
    pub reason: CloseReason,
    /// Lower bound of the true end time, when it is not known exactly.
    pub ended_after: Option<DateTime<Utc>>,
    /// Upper bound of the true end time, when it is not known exactly.
    pub ended_before: Option<DateTime<Utc>>,
    /// When the decision was made.
    pub decided_at: DateTime<Utc>,
    /// Where `ended_at` comes from (audited as `ended_at_source`).
    pub ended_at_source: EndedAtSource,
}

/// Where a close's `ended_at` comes from (the audit's `ended_at_source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndedAtSource {
    /// callwatch's own evidence: a seen Hangup, or the last moment the channel was known alive.
    #[default]
    Evidence,
    /// Asterisk's CDR for the channel.
    Cdr,
}

impl EndedAtSource {
    /// The stored name: `evidence` or `cdr`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedAtSource::Evidence => "evidence",
            EndedAtSource::Cdr => "cdr",
        }
    }
}

impl fmt::Display for EndedAtSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row that [`crate::Store::close`] closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosedCall {
    /// The row.
    pub call_id: CallId,
    /// The audit row.
    pub closure_id: i64,
    /// The end time written (whole seconds).
    pub ended_at: DateTime<Utc>,
    /// The talk seconds now in the row.
    pub talk_seconds: i64,
    /// The row's extension, if mapped.
    pub extension: Option<String>,
    /// The row's server, if mapped.
    pub server: Option<String>,
    /// The row's Asterisk Uniqueid, if mapped.
    pub uniqueid: Option<String>,
    /// Why.
    pub reason: CloseReason,
}

/// One daemon's heartbeat row in `callwatch_daemons` (see [`crate::Store::heartbeat`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonBeat {
    /// The daemon's run id.
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: i64,
    /// How many servers it is configured for.
    pub servers_wanted: i64,
    /// The servers whose lock it holds.
    pub owned: Vec<String>,
    /// When it last wrote its row (UTC text; ignored when writing).
    pub seen_at: String,
}

impl DaemonBeat {
    /// When it last wrote its row, on the store's clock (`None` when `seen_at` is not the stamp the store
    /// writes).
    pub fn seen(&self) -> Option<DateTime<Utc>> {
        chrono::NaiveDateTime::parse_from_str(self.seen_at.trim(), "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc())
    }
}

/// A close found in the audit table (see [`crate::Store::closes_in_run`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedClose {
    /// The row.
    pub call_id: CallId,
    /// The audit row.
    pub closure_id: i64,
    /// The end time written.
    pub ended_at: DateTime<Utc>,
    /// The talk seconds written.
    pub talk_seconds: i64,
}

/// What [`crate::Store::close`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CloseOutcome {
    /// Rows closed now.
    pub closed: Vec<ClosedCall>,
    /// Rows left alone: already ended (typically by the application meanwhile), missing, or repeated in the batch.
    pub skipped: Vec<CallId>,
}

/// Which closures [`crate::Store::undo`] reverts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoSelector {
    /// These audit rows.
    Closures(Vec<i64>),
    /// Every closure of one run.
    Run(String),
    /// Every closure decided at or after this time.
    Since(DateTime<Utc>),
}

/// What [`crate::Store::undo`] did (or would do, on a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UndoOutcome {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The id recorded as `undo_run_id` on the undone audit rows (None on a dry run).
    pub undo_id: Option<String>,
    /// Closures whose rows were restored (or would be), with their call.
    pub restored: Vec<(i64, CallId)>,
    /// Closures left alone because the row changed after callwatch closed it.
    pub conflicts: Vec<(i64, CallId)>,
}

/// One extension with more than one call in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BusyExtension {
    /// Server (None = default).
    pub server: Option<String>,
    /// The extension.
    pub extension: String,
    /// Calls in progress.
    pub calls: i64,
}

/// The most recent run that closed something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRun {
    /// Its id.
    pub run_id: String,
    /// Its latest decision.
    pub decided_at: DateTime<Utc>,
    /// Rows it closed.
    pub closed: i64,
}

/// Summary numbers for `callwatch status` and the HTTP endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// When these were computed.
    pub at: Option<DateTime<Utc>>,
    /// Rows in the calls table.
    pub total: i64,
    /// Answered, not ended.
    pub in_progress: i64,
    /// In progress and answered longer ago than the stuck threshold.
    pub stuck: i64,
    /// Extensions with more than one call in progress.
    pub busy_extensions: Vec<BusyExtension>,
    /// Closes by reason within the window (excluding undone ones).
    pub closes_by_reason: Vec<(String, i64)>,
    /// Skipped close attempts within the window.
    pub skipped_in_window: i64,
    /// Closes within the window whose `ended_at` came from Asterisk's CDR (`ended_at_source = 'cdr'`):
    /// at the close, or by a later refinement (excluding undone ones).
    pub refined_by_cdr: i64,
    /// The latest run.
    pub last_run: Option<LastRun>,
}

/// One check of [`crate::Store::check_mapping`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingCheck {
    /// What was checked.
    pub what: String,
    /// Whether it passed.
    pub ok: bool,
    /// Explanation.
    pub detail: String,
}

/// The result of [`crate::Store::check_mapping`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MappingReport {
    /// Every check, in order.
    pub checks: Vec<MappingCheck>,
    /// Suggestions that are not failures (e.g. an index callwatch's reads would use).
    pub hints: Vec<String>,
}

impl MappingReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub(crate) fn push(&mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(MappingCheck {
            what: what.into(),
            ok,
            detail: detail.into(),
        });
    }
}

/// What [`crate::Store::migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    /// The engine.
    pub dialect: String,
    /// Migrations applied now: (version, description).
    pub applied: Vec<(i64, String)>,
    /// Migrations that were already applied.
    pub already_applied: usize,
    /// The application's table that existed and was left exactly as it was (no index added).
    pub left_alone: Option<String>,
}
