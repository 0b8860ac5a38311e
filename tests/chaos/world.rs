//! The world the daemon watches: the scripted PBX, calls started and hung up on a seeded plan, the
//! application's rows, and the truth about every call (when it was answered, when it really ended).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ami_testkit::{CallId, PbxServer};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use store::testing::Engine;
use tokio::task::JoinHandle;

/// What the PBX knows about one call.
#[derive(Debug, Clone)]
pub struct CallTruth {
    /// The row's id.
    pub id: i64,
    /// The answering channel's Uniqueid (the row's `uniqueid`).
    pub uniqueid: String,
    /// When it was answered (the channel went up).
    pub answered: DateTime<Utc>,
    /// When the row was written (the application is a little behind the PBX).
    pub inserted: Option<DateTime<Utc>>,
    /// When it really ended (Hangup, or Asterisk went down); `None` while up.
    pub ended: Option<DateTime<Utc>>,
}

/// A call as the driver keeps it: its truth, its handle in the PBX, when to hang it up.
struct Planned {
    truth: CallTruth,
    call: CallId,
    hang_at: Instant,
}

/// Shared state of the world.
pub struct World {
    pbx: Arc<PbxServer>,
    calls: Mutex<Vec<Planned>>,
    running: Mutex<(bool, bool)>,
    /// Channels ended so far (hung up or gone with Asterisk), running total, with when.
    channel_ends: Mutex<Vec<(Instant, usize)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sql_time(t: DateTime<Utc>) -> String {
    t.format("'%Y-%m-%d %H:%M:%S'").to_string()
}

impl World {
    /// A world around `pbx`, no calls yet.
    pub fn new(pbx: Arc<PbxServer>) -> Arc<Self> {
        Arc::new(Self {
            pbx,
            calls: Mutex::new(Vec::new()),
            running: Mutex::new((true, true)),
            channel_ends: Mutex::new(Vec::new()),
        })
    }

    /// The PBX.
    pub fn pbx(&self) -> &PbxServer {
        &self.pbx
    }

    /// Every call so far.
    pub fn truth(&self) -> Vec<CallTruth> {
        lock(&self.calls).iter().map(|p| p.truth.clone()).collect()
    }

    /// Notes `n` channels ended now.
    fn channels_ended(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut ends = lock(&self.channel_ends);
        let total = ends.last().map_or(0, |(_, t)| *t) + n;
        ends.push((Instant::now(), total));
    }

    /// When the `n`th channel to end after `since` ended (`None`: fewer have ended).
    pub fn nth_channel_end_after(&self, since: Instant, n: usize) -> Option<Instant> {
        let ends = lock(&self.channel_ends);
        let before = ends
            .iter()
            .take_while(|(at, _)| *at <= since)
            .last()
            .map_or(0, |(_, t)| *t);
        ends.iter()
            .find(|(at, t)| *at > since && *t - before >= n)
            .map(|(at, _)| *at)
    }

    /// Stops starting calls and hanging them up: calls still up stay up.
    pub fn freeze(&self) {
        *lock(&self.running) = (false, false);
    }

    /// Asterisk goes down (`crash`: without a word, down for that long) and boots again: every call up ends
    /// now. The caller drops the connections.
    pub fn wipe(&self, crash: Option<Duration>) -> usize {
        let mut calls = lock(&self.calls);
        let (ended, at, channels) = self.pbx.with(|p| {
            let at = Utc::now();
            p.set_now(at);
            let channels = p.channels().len();
            let ended = match crash {
                // A crashed Asterisk boots again when it is back, `down` later.
                Some(down) => {
                    let ended = p.crash();
                    p.set_booted_at(at + chrono::TimeDelta::from_std(down).unwrap_or_default());
                    ended
                }
                None => p.restart(),
            };
            (ended, at, channels)
        });
        self.channels_ended(channels);
        for c in calls.iter_mut() {
            if c.truth.ended.is_none() && ended.contains(&c.call) {
                c.truth.ended = Some(at);
            }
        }
        ended.len()
    }

    /// Starts and hangs up calls: `rate` new calls a second, each lasting a seeded 2–20 s (one in five
    /// 20–120 s); rows are written through `app` (the application's own connection) right after the answer,
    /// retried while the database is down.
    pub fn drive(
        self: &Arc<Self>,
        seed: u64,
        rate: f64,
        engine: Engine,
        app: store::Store,
    ) -> JoinHandle<()> {
        let world = self.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x00ca_11ed);
            let tick = Duration::from_millis(100);
            let mut due = 0.0f64;
            let mut next_id = 1i64;
            let mut pending: Vec<usize> = Vec::new();
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let (starting, hanging) = *lock(&world.running);
                if !starting && !hanging {
                    return;
                }
                let now = Instant::now();
                {
                    let mut calls = lock(&world.calls);
                    let to_end: Vec<usize> = if hanging {
                        calls
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| c.truth.ended.is_none() && c.hang_at <= now)
                            .map(|(i, _)| i)
                            .collect()
                    } else {
                        Vec::new()
                    };
                    due += if starting {
                        rate * tick.as_secs_f64()
                    } else {
                        0.0
                    };
                    let n = due.floor() as usize;
                    due -= n as f64;
                    let plans: Vec<Duration> = (0..n)
                        .map(|_| {
                            let secs = if rng.gen_ratio(1, 5) {
                                rng.gen_range(20.0..120.0)
                            } else {
                                rng.gen_range(2.0..20.0)
                            };
                            Duration::from_secs_f64(secs)
                        })
                        .collect();
                    let started = world.pbx.with(|p| {
                        let at = Utc::now();
                        p.set_now(at);
                        let up = p.channels().len();
                        for &i in &to_end {
                            // A call Asterisk already dropped has nothing left to hang up.
                            if p.hangup(calls[i].call, 16).is_ok() {
                                calls[i].truth.ended = Some(at);
                            }
                        }
                        world.channels_ended(up.saturating_sub(p.channels().len()));
                        let mut out = Vec::new();
                        for plan in &plans {
                            let ext = (100_000 + next_id + out.len() as i64).to_string();
                            let call = p.start_call("5550100", &ext);
                            if p.answer(call).is_err() {
                                continue;
                            }
                            let uid = p
                                .channels()
                                .iter()
                                .rev()
                                .find(|c| c.name.contains(&ext))
                                .map(|c| c.uniqueid.clone())
                                .unwrap_or_default();
                            out.push((call, uid, *plan));
                        }
                        (at, out)
                    });
                    let (at, started) = started;
                    for (call, uniqueid, plan) in started {
                        pending.push(calls.len());
                        calls.push(Planned {
                            truth: CallTruth {
                                id: next_id,
                                uniqueid,
                                answered: at,
                                inserted: None,
                                ended: None,
                            },
                            call,
                            hang_at: now + plan,
                        });
                        next_id += 1;
                    }
                }
                if pending.is_empty() {
                    continue;
                }
                let values: Vec<String> = {
                    let calls = lock(&world.calls);
                    pending
                        .iter()
                        .map(|&i| {
                            let c = &calls[i].truth;
                            format!(
                                "({}, '{}', '{}', 'in_progress', {t}, {t}, {t})",
                                c.id,
                                c.uniqueid,
                                100_000 + c.id,
                                t = sql_time(c.answered)
                            )
                        })
                        .collect()
                };
                // A retry after an INSERT whose answer was lost must not fail on the rows it did write.
                let (verb, tail) = match engine {
                    Engine::Sqlite => ("INSERT OR IGNORE", ""),
                    Engine::MySql => ("INSERT IGNORE", ""),
                    Engine::Postgres => ("INSERT", " ON CONFLICT DO NOTHING"),
                };
                let sql = format!(
                    "{verb} INTO calls (id, uniqueid, extension, status, answered_at, created_at, updated_at) VALUES {}{tail}",
                    values.join(", ")
                );
                let written = tokio::time::timeout(
                    Duration::from_millis(500),
                    sqlx::query(&sql).execute(app.pool()),
                )
                .await;
                if matches!(written, Ok(Ok(_))) {
                    let at = Utc::now();
                    let mut calls = lock(&world.calls);
                    for &i in &pending {
                        calls[i].truth.inserted = Some(at);
                    }
                    pending.clear();
                }
            }
        })
    }
}
