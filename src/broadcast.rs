//! Telling the application's frontend that a call was closed.
//!
//! Three transports, each optional, all fed from one bounded queue so that a slow or failing transport never
//! blocks (or undoes) a close:
//! - Laravel's Redis broadcaster: `PUBLISH <prefix><channel>` with `{"event": …, "data": {…}, "socket": null}`,
//!   which Laravel Echo Server / Soketi relays to `Echo.channel('calls').listen('CallStatusUpdated', …)`
//!   (Echo prefixes the name with `App\Events\`, the namespace Laravel's broadcaster sends with the class name);
//! - the Pusher-compatible HTTP API (Pusher, Laravel Reverb, Soketi): a signed `POST /apps/{id}/events`;
//! - a generic webhook: a JSON `POST` with an HMAC-SHA256 signature header.
//!
//! Failed deliveries are retried with exponential backoff and counted (`callwatch_broadcast_errors_total`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use store::CallId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::ClosedRow;

/// Default broadcast channel (Laravel `new Channel('calls')`).
pub const DEFAULT_CHANNEL: &str = "calls";
/// Default event name: the application's event class, as Laravel's broadcaster sends it when the event defines
/// no `broadcastAs()` (Echo's `listen('CallStatusUpdated')` expects exactly this name).
pub const DEFAULT_EVENT: &str = "App\\Events\\CallStatusUpdated";
/// Attempts per message and transport before it is dropped (and counted); a transport whose last message
/// was dropped gets one attempt per message until a delivery succeeds again, so a dead peer costs at most one
/// `timeout` per message.
const MAX_ATTEMPTS: u32 = 5;
/// Default bound on each connect and request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of updates waiting per transport.
pub const DEFAULT_QUEUE: usize = 10_000;
/// At shutdown, how long the updates still queued may take (one attempt each); the rest are dropped, counted.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// `[broadcast]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastConfig {
    /// Channel name (default `calls`).
    #[serde(default = "default_channel")]
    pub channel: String,
    /// Event name (default `App\Events\CallStatusUpdated`; the `broadcastAs()` name if the app's event has one).
    #[serde(default = "default_event")]
    pub event: String,
    /// Bound on every connect and every request of a delivery (Redis connect and `PUBLISH`, the Pusher and
    /// webhook requests), e.g. `"5s"`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Updates waiting per transport; beyond this new ones are dropped and counted
    /// (`callwatch_broadcast_dropped_total`), never waited for.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// The `status` the updates carry: the value written to the row (`[database.mapping.status_values]
    /// completed`), filled in by [`crate::settings::load`]; not a key of `[broadcast]`.
    #[serde(skip, default = "default_status")]
    pub status: String,
    /// Laravel Redis broadcaster.
    pub redis: Option<RedisConfig>,
    /// Pusher-compatible HTTP API (Pusher, Reverb, Soketi).
    pub pusher: Option<PusherConfig>,
    /// Generic webhook.
    pub webhook: Option<WebhookConfig>,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            channel: default_channel(),
            event: default_event(),
            timeout: default_timeout(),
            queue: default_queue(),
            status: default_status(),
            redis: None,
            pusher: None,
            webhook: None,
        }
    }
}

impl BroadcastConfig {
    /// Checks what can be checked without connecting (the Redis prefix settings, the queue and timeout).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.queue >= 1, "[broadcast] queue must be at least 1");
        anyhow::ensure!(
            !self.timeout.is_zero(),
            "[broadcast] timeout must be positive"
        );
        if let Some(r) = &self.redis {
            r.effective_prefix()?;
        }
        Ok(())
    }
}

fn default_status() -> String {
    "completed".into()
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_queue() -> usize {
    DEFAULT_QUEUE
}
fn default_channel() -> String {
    DEFAULT_CHANNEL.into()
}
fn default_event() -> String {
    DEFAULT_EVENT.into()
}

/// `[broadcast.redis]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0` (a password in the URL is never logged).
    pub url: String,
    /// Key prefix Laravel adds to channel names (`database.redis.options.prefix`, `REDIS_PREFIX`); `""` for none.
    /// Default: derived from `app_name` as Laravel does, else `laravel_database_` (the default app name's).
    pub prefix: Option<String>,
    /// The app's `APP_NAME`: the prefix is then `Str::slug(APP_NAME, '_').'_database_'`, Laravel's default.
    pub app_name: Option<String>,
    /// Environment variable holding the Redis password (e.g. Laravel's `REDIS_PASSWORD`), put into `url`.
    pub password_env: Option<String>,
}

/// Laravel's default Redis prefix, the one derived from the default `APP_NAME` (`Laravel`).
pub const DEFAULT_REDIS_PREFIX: &str = "laravel_database_";

impl RedisConfig {
    /// The URL to connect with: `url`, with the password from `password_env` when set.
    fn connect_url(&self) -> anyhow::Result<String> {
        let Some(var) = &self.password_env else {
            return Ok(self.url.clone());
        };
        let password = std::env::var(var).map_err(|_| {
            anyhow::anyhow!(
                "[broadcast.redis] password_env: the environment variable {var} is not set"
            )
        })?;
        let mut url = url::Url::parse(&self.url).map_err(|_| {
            anyhow::anyhow!(
                "[broadcast.redis] url {} cannot be parsed",
                crate::redact::url(&self.url)
            )
        })?;
        url.set_password(Some(&password)).map_err(|_| {
            anyhow::anyhow!(
                "[broadcast.redis] url {} cannot carry a password",
                crate::redact::url(&self.url)
            )
        })?;
        Ok(url.to_string())
    }

    /// The prefix Laravel puts before channel names: `prefix` as written, else derived from `app_name`, else
    /// [`DEFAULT_REDIS_PREFIX`].
    pub fn effective_prefix(&self) -> anyhow::Result<String> {
        match (&self.prefix, &self.app_name) {
            (Some(_), Some(_)) => anyhow::bail!(
                "[broadcast.redis]: set either prefix or app_name (the prefix is derived from app_name), not both"
            ),
            (Some(prefix), None) => Ok(prefix.clone()),
            (None, Some(app)) => Ok(laravel_redis_prefix(app)),
            (None, None) => Ok(DEFAULT_REDIS_PREFIX.to_string()),
        }
    }
}

/// Laravel's default Redis prefix for an app name: `Str::slug($appName, '_').'_database_'`
/// (`config/database.php`).
pub fn laravel_redis_prefix(app_name: &str) -> String {
    format!("{}_database_", laravel_slug(app_name, '_'))
}

/// Laravel's `Str::slug($title, $separator)`: transliterated to ASCII, the other separator (`-` or `_`) turned
/// into this one, `@` into `at`, lower-cased, everything but letters, digits, whitespace and the separator
/// dropped, runs of separators and whitespace folded into one separator, trimmed.
pub fn laravel_slug(title: &str, separator: char) -> String {
    let flip = if separator == '-' { '_' } else { '-' };
    let ascii = deunicode::deunicode(title);
    let sep = separator.to_string();
    let replaced: String = ascii
        .chars()
        .map(|c| if c == flip { separator } else { c })
        .collect::<String>()
        .replace('@', &format!("{sep}at{sep}"))
        .to_lowercase();
    let kept: String = replaced
        .chars()
        .filter(|c| *c == separator || c.is_alphanumeric() || c.is_whitespace())
        .collect();
    let mut out = String::with_capacity(kept.len());
    let mut pending = false;
    for c in kept.chars() {
        if c == separator || c.is_whitespace() {
            pending = true;
        } else {
            if pending && !out.is_empty() {
                out.push(separator);
            }
            pending = false;
            out.push(c);
        }
    }
    out
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("prefix", &self.prefix)
            .field("app_name", &self.app_name)
            .field("password_env", &self.password_env)
            .finish()
    }
}

/// `[broadcast.pusher]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PusherConfig {
    /// Base URL of the API, e.g. `https://api-eu.pusher.com` or `http://127.0.0.1:8080` (Reverb).
    pub url: String,
    /// Application id.
    pub app_id: String,
    /// Application key.
    pub key: String,
    /// Application secret (or set `secret_env` / `secret_file`).
    pub secret: Option<String>,
    /// Environment variable holding the secret.
    pub secret_env: Option<String>,
    /// File holding the secret.
    pub secret_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PusherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PusherConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `[broadcast.webhook]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// HMAC key for the `X-Callwatch-Signature: sha256=<hex>` header (or `secret_env` / `secret_file`).
    pub secret: Option<String>,
    /// Environment variable holding the secret.
    pub secret_env: Option<String>,
    /// File holding the secret.
    pub secret_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What the frontend is told about a closed call (the `data` of the broadcast event), serialised as the
/// application's own event would serialise the row: the key set is fixed and documented (docs/laravel.md, "Listening with
/// Echo").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallUpdate {
    /// The row's id: a JSON number for integer ids, a string for string ids.
    pub id: CallId,
    /// Agent extension, if known.
    pub extension: Option<String>,
    /// New status (`completed`).
    pub status: String,
    /// When the call ended, as Eloquent serialises dates (ISO-8601 UTC with microseconds:
    /// `2026-12-02T05:51:41.000000Z`).
    pub ended_at: String,
    /// Value written to `hangup_cause`.
    pub hangup_cause: String,
    /// Talk time written.
    pub talk_seconds: i64,
    /// Why callwatch closed it (`hangup_seen`, `channel_gone`…).
    pub reason: String,
}

impl CallUpdate {
    /// The update announcing `row`'s close, with exactly the values written to it.
    pub fn completed(row: &ClosedRow) -> Self {
        Self {
            id: row.id.clone(),
            extension: row.extension.clone(),
            status: "completed".into(),
            ended_at: laravel_date(row.ended_at),
            hangup_cause: row.hangup_cause.clone(),
            talk_seconds: row.talk_seconds,
            reason: row.reason.clone(),
        }
    }
}

/// A time as Laravel (≥ 7) serialises dates (`Model::serializeDate`, Carbon's `toJSON`): UTC, microseconds,
/// `Z`. The table stores whole seconds, so this is the value read back from the row.
pub fn laravel_date(at: DateTime<Utc>) -> String {
    let stored = DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at);
    stored.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The Laravel broadcast envelope published on Redis.
///
/// Laravel's `RedisBroadcaster` encodes `['event' => …, 'data' => $payload, 'socket' => Arr::pull($payload,
/// 'socket')]`: `data` is taken before the pull, so the app's own event carries `"socket": null` in its data
/// too, and so does this one. (The Pusher broadcaster pulls it first: no `socket` in Pusher data.)
pub fn laravel_envelope(event: &str, update: &CallUpdate) -> serde_json::Value {
    let mut data = serde_json::json!(update);
    if let Some(map) = data.as_object_mut() {
        map.insert("socket".into(), serde_json::Value::Null);
    }
    serde_json::json!({ "event": event, "data": data, "socket": null })
}

/// Signs a Pusher HTTP API request: returns the full query string (auth_signature included).
///
/// `auth_signature = HMAC-SHA256(secret, "POST\n<path>\n<sorted query without signature>")`, with
/// `body_md5` the hex MD5 of the body, as documented in Pusher's "HTTP API reference → Authentication".
pub fn pusher_query(path: &str, key: &str, secret: &str, timestamp: i64, body: &[u8]) -> String {
    let body_md5 = hex::encode(Md5::digest(body));
    let unsigned =
        format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}");
    let to_sign = format!("POST\n{path}\n{unsigned}");
    let signature = hmac_hex(secret.as_bytes(), to_sign.as_bytes());
    format!("{unsigned}&auth_signature={signature}")
}

/// Hex HMAC-SHA256.
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Reads a secret given inline, by environment variable or by file.
fn resolve_secret(
    inline: &Option<String>,
    env: &Option<String>,
    file: &Option<std::path::PathBuf>,
    what: &str,
) -> anyhow::Result<String> {
    if let Some(s) = inline {
        return Ok(s.clone());
    }
    if let Some(var) = env {
        return std::env::var(var)
            .with_context(|| format!("{what}: environment variable {var} is not set"));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{what}: cannot read secret file {}", path.display()))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_string());
    }
    anyhow::bail!("{what}: no secret given (secret, secret_env or secret_file)")
}

enum Transport {
    Redis {
        client: redis::Client,
        /// The connection deliveries share (made at the first, made again after a failure).
        conn: Option<redis::aio::MultiplexedConnection>,
        channel: String,
        timeout: Duration,
    },
    Pusher {
        http: reqwest::Client,
        url: String,
        path: String,
        key: String,
        secret: String,
        channel: String,
    },
    Webhook {
        http: reqwest::Client,
        url: String,
        secret: String,
    },
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Redis { .. } => "redis",
            Transport::Pusher { .. } => "pusher",
            Transport::Webhook { .. } => "webhook",
        }
    }

    async fn deliver(&mut self, event: &str, update: &CallUpdate) -> anyhow::Result<()> {
        match self {
            Transport::Redis {
                client,
                conn,
                channel,
                timeout,
            } => {
                let redis_error = |what: &str, e: redis::RedisError| {
                    anyhow::anyhow!("redis {what}: {}", crate::redact::text(&e.to_string()))
                };
                // One connection for every delivery (a connect per update costs more than the PUBLISH);
                // dropped after a failure, so that the next attempt connects anew.
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => {
                        tokio::time::timeout(*timeout, client.get_multiplexed_async_connection())
                            .await
                            .map_err(|_| {
                                anyhow::anyhow!("redis connect: no answer within {timeout:?}")
                            })?
                            .map_err(|e| redis_error("connect", e))?
                    }
                };
                let payload = laravel_envelope(event, update).to_string();
                tokio::time::timeout(
                    *timeout,
                    redis::cmd("PUBLISH")
                        .arg(&*channel)
                        .arg(payload)
                        .query_async::<i64>(&mut c),
                )
                .await
                .map_err(|_| anyhow::anyhow!("redis publish: no answer within {timeout:?}"))?
                .map_err(|e| redis_error("publish", e))?;
                *conn = Some(c);
                Ok(())
            }
            Transport::Pusher {
                http,
                url,
                path,
                key,
                secret,
                channel,
            } => {
                let data = serde_json::to_string(update)?;
                let body = serde_json::to_vec(&serde_json::json!({
                    "name": event,
                    "channels": [channel],
                    "data": data,
                }))?;
                let query = pusher_query(path, key, secret, chrono::Utc::now().timestamp(), &body);
                let resp = http
                    .post(format!("{url}{path}?{query}"))
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("pusher request failed: {}", e.without_url()))?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "pusher answered {}",
                    resp.status()
                );
                Ok(())
            }
            Transport::Webhook { http, url, secret } => {
                let body =
                    serde_json::to_vec(&serde_json::json!({ "event": event, "data": update }))?;
                let signature = format!("sha256={}", hmac_hex(secret.as_bytes(), &body));
                let resp = http
                    .post(url.as_str())
                    .header("Content-Type", "application/json")
                    .header("X-Callwatch-Signature", signature)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("webhook request failed: {}", e.without_url()))?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "webhook answered {}",
                    resp.status()
                );
                Ok(())
            }
        }
    }
}

/// Handle used by the runner to queue broadcasts; cheap to clone. `send` never blocks.
///
/// Each transport has its own bounded queue and delivery task, so that a slow or dead peer (a black-holed Redis)
/// delays nothing but its own deliveries: every connect and request is bounded by `timeout`, a full queue drops
/// the new update, and every update given up is counted in `callwatch_broadcast_dropped_total`.
#[derive(Clone)]
pub struct Broadcaster {
    inner: Option<Arc<Shared>>,
}

struct Shared {
    /// The `status` every update carries (the value written to the rows).
    status: String,
    /// One queue per transport, with the transport's name.
    queues: Vec<(&'static str, mpsc::Sender<CallUpdate>)>,
    /// Deliveries, failures and drops (all transports), shared with [`BroadcastStats`].
    counters: Arc<Counters>,
}

/// What the delivery tasks count for `/status` and the status page.
#[derive(Debug, Default)]
struct Counters {
    transports: Vec<String>,
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Updates dropped (all transports and reasons), as counted in the metric.
    dropped: AtomicU64,
    last_error: std::sync::Mutex<Option<(String, DateTime<Utc>)>>,
}

impl Counters {
    fn failed(&self, err: &anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let text = crate::redact::text(&format!("{err:#}"));
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some((text, Utc::now()));
        }
    }
}

/// Delivery counters of a [`Broadcaster`], read by `/status` and the status page; cheap to clone. Holding
/// it does not keep the delivery tasks alive.
#[derive(Debug, Clone, Default)]
pub struct BroadcastStats {
    counters: Option<Arc<Counters>>,
}

impl BroadcastStats {
    /// The counters as `/status` shows them; `None` when no transport is configured.
    pub fn health(&self) -> Option<crate::health::BroadcastHealth> {
        let c = self.counters.as_ref()?;
        let last = c.last_error.lock().ok().and_then(|l| l.clone());
        Some(crate::health::BroadcastHealth {
            transports: c.transports.clone(),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            last_error_at: last.as_ref().map(|(_, at)| *at),
            last_error: last.map(|(e, _)| e),
        })
    }
}

impl Shared {
    fn drop_one(&self, transport: &'static str, reason: &'static str, call_id: &CallId) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::BROADCAST_DROPPED_TOTAL, "transport" => transport, "reason" => reason)
            .increment(1);
        tracing::warn!(transport, reason, call_id = %call_id, "broadcast dropped");
    }
}

impl Broadcaster {
    /// A broadcaster that sends nothing (no transport configured).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Starts one delivery task per transport on `tracker`; they drain their queues and stop when `cancel`
    /// fires (or every handle is dropped).
    pub fn start(
        cfg: &BroadcastConfig,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        cfg.validate()?;
        let mut transports = Vec::new();
        let http = || {
            reqwest::Client::builder()
                .connect_timeout(cfg.timeout)
                .timeout(cfg.timeout)
                .build()
                .context("cannot build the HTTP client")
        };
        if let Some(r) = &cfg.redis {
            let client = redis::Client::open(r.connect_url()?.as_str()).map_err(|e| {
                anyhow::anyhow!(
                    "[broadcast.redis] url: {}",
                    crate::redact::text(&e.to_string())
                )
            })?;
            let channel = format!("{}{}", r.effective_prefix()?, cfg.channel);
            tracing::info!(
                redis_channel = %channel,
                event = %cfg.event,
                "broadcasting closes on Redis channel {channel}"
            );
            transports.push(Transport::Redis {
                client,
                conn: None,
                channel,
                timeout: cfg.timeout,
            });
        }
        if let Some(p) = &cfg.pusher {
            let secret = resolve_secret(
                &p.secret,
                &p.secret_env,
                &p.secret_file,
                "[broadcast.pusher]",
            )?;
            transports.push(Transport::Pusher {
                http: http()?,
                url: p.url.trim_end_matches('/').to_string(),
                path: format!("/apps/{}/events", p.app_id),
                key: p.key.clone(),
                secret,
                channel: cfg.channel.clone(),
            });
        }
        if let Some(w) = &cfg.webhook {
            let secret = resolve_secret(
                &w.secret,
                &w.secret_env,
                &w.secret_file,
                "[broadcast.webhook]",
            )?;
            transports.push(Transport::Webhook {
                http: http()?,
                url: w.url.clone(),
                secret,
            });
        }
        if transports.is_empty() {
            return Ok(Self::disabled());
        }
        let mut queues = Vec::new();
        let mut receivers = Vec::new();
        for t in transports {
            let (tx, rx) = mpsc::channel(cfg.queue);
            queues.push((t.name(), tx));
            receivers.push((t, rx));
        }
        let counters = Arc::new(Counters {
            transports: queues.iter().map(|(name, _)| name.to_string()).collect(),
            ..Counters::default()
        });
        let shared = Arc::new(Shared {
            status: cfg.status.clone(),
            queues,
            counters: counters.clone(),
        });
        for (t, rx) in receivers {
            tracker.spawn(deliver_loop(
                t,
                cfg.event.clone(),
                rx,
                cancel.clone(),
                Arc::downgrade(&shared),
                counters.clone(),
            ));
        }
        Ok(Self {
            inner: Some(shared),
        })
    }

    /// Queues one update for every transport; where a queue is full the update is dropped and counted, never
    /// waited for.
    pub fn send(&self, mut update: CallUpdate) {
        let Some(shared) = &self.inner else { return };
        update.status.clone_from(&shared.status);
        for (name, tx) in &shared.queues {
            if let Err(mpsc::error::TrySendError::Full(u)) = tx.try_send(update.clone()) {
                shared.drop_one(name, "queue_full", &u.id);
            }
        }
    }

    /// Updates dropped so far (queue full, delivery given up, or left at shutdown), over all transports.
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |s| s.counters.dropped.load(Ordering::Relaxed))
    }

    /// Its delivery counters.
    pub fn stats(&self) -> BroadcastStats {
        BroadcastStats {
            counters: self.inner.as_ref().map(|s| s.counters.clone()),
        }
    }
}

/// Delivers one transport's queue in order. Stops when every [`Broadcaster`] is dropped (after the queue is
/// empty) or at `cancel` (then each update still queued gets one attempt within [`DRAIN_DEADLINE`]).
async fn deliver_loop(
    mut t: Transport,
    event: String,
    mut rx: mpsc::Receiver<CallUpdate>,
    cancel: CancellationToken,
    shared: std::sync::Weak<Shared>,
    counters: Arc<Counters>,
) {
    let name = t.name();
    let dropped = |update: &CallUpdate, reason: &'static str| {
        if let Some(s) = shared.upgrade() {
            s.drop_one(name, reason, &update.id);
        } else {
            metrics::counter!(crate::metrics::BROADCAST_DROPPED_TOTAL, "transport" => name, "reason" => reason)
                .increment(1);
        }
    };
    let mut failing = false;
    loop {
        let update = tokio::select! {
            biased;
            update = rx.recv() => match update { Some(u) => u, None => return },
            _ = cancel.cancelled() => break,
        };
        let attempts = if failing { 1 } else { MAX_ATTEMPTS };
        let mut delay = Duration::from_millis(200);
        let mut delivered = false;
        for attempt in 1..=attempts {
            // A delivery in flight is never cut off by the shutdown (an aborted request loses the update
            // and can leave the connection unusable for the drain); it is bounded by the transport's
            // timeout.
            let result = t.deliver(&event, &update).await;
            match result {
                Ok(()) => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    delivered = true;
                    break;
                }
                Err(err) => {
                    counters.failed(&err);
                    count_failure(&t, &update, &err);
                    if attempt == attempts || cancel.is_cancelled() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => break,
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        if !delivered {
            dropped(&update, "undelivered");
        }
        failing = !delivered;
    }
    // Shutdown: one attempt each for what is queued, within the drain deadline; the rest is counted.
    rx.close();
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    while let Ok(update) = rx.try_recv() {
        let result = if failing {
            Err(anyhow::anyhow!("the transport is failing"))
        } else {
            tokio::time::timeout_at(deadline, t.deliver(&event, &update))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("shutdown deadline")))
        };
        match result {
            Ok(()) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                counters.failed(&err);
                count_failure(&t, &update, &err);
                dropped(&update, "shutdown");
                failing = true;
            }
        }
    }
}

fn count_failure(t: &Transport, update: &CallUpdate, err: &anyhow::Error) {
    metrics::counter!("callwatch_broadcast_errors_total", "transport" => t.name()).increment(1);
    tracing::warn!(transport = t.name(), call_id = %update.id, error = %err, "broadcast failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_signature_matches_the_documented_example() {
        // Pusher's HTTP API reference, "Worked authentication example": key 278d425bdf160c739803,
        // secret 7ad3773142a6692b25b8, timestamp 1353088179, body {"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let q = pusher_query(
            "/apps/3/events",
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            1353088179,
            body,
        );
        assert!(
            q.contains("body_md5=ec365a775a4cd0599faeb73354201b6f"),
            "{q}"
        );
        assert!(
            q.ends_with(
                "auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
            ),
            "{q}"
        );
    }

    fn closed_row(id: CallId, ended_at: DateTime<Utc>) -> ClosedRow {
        ClosedRow {
            id,
            uniqueid: Some("1700000000.1".into()),
            linkedid: None,
            extension: Some("2001".into()),
            ended_at,
            hangup_cause: "normal_clearing".into(),
            reason: "hangup_seen".into(),
            ended_after: None,
            ended_before: None,
            talk_seconds: 42,
            answered_at: ended_at - chrono::Duration::seconds(42),
            closure_id: Some(1),
            ended_at_source: Default::default(),
        }
    }

    #[test]
    fn default_event_is_the_class_name_laravel_sends() {
        // Echo's `listen('CallStatusUpdated')` prefixes its default namespace `App.Events` (as `App\Events\`).
        assert_eq!(DEFAULT_EVENT, r"App\Events\CallStatusUpdated");
        let cfg: BroadcastConfig = toml::from_str("[redis]\nurl = \"redis://127.0.0.1/\"").unwrap();
        assert_eq!(cfg.event, r"App\Events\CallStatusUpdated");
        assert_eq!(cfg.channel, "calls");
        assert_eq!(BroadcastConfig::default().event, DEFAULT_EVENT);
        assert_eq!(BroadcastConfig::default().channel, DEFAULT_CHANNEL);
        let cfg: BroadcastConfig = toml::from_str("event = \"CallStatusUpdated\"").unwrap();
        assert_eq!(
            cfg.event, "CallStatusUpdated",
            "a broadcastAs() name is kept as written"
        );
    }

    #[test]
    fn redis_prefix_defaults_to_laravels() {
        let cfg = |text: &str| -> RedisConfig { toml::from_str(text).unwrap() };
        let url = "url = \"redis://127.0.0.1/\"\n";
        assert_eq!(cfg(url).effective_prefix().unwrap(), "laravel_database_");
        assert_eq!(
            cfg(&format!("{url}prefix = \"\""))
                .effective_prefix()
                .unwrap(),
            "",
            "an explicit empty prefix is kept"
        );
        assert_eq!(
            cfg(&format!("{url}prefix = \"crm_\""))
                .effective_prefix()
                .unwrap(),
            "crm_"
        );
        assert_eq!(
            cfg(&format!("{url}app_name = \"Call Center\""))
                .effective_prefix()
                .unwrap(),
            "call_center_database_"
        );
        let err = cfg(&format!("{url}prefix = \"a_\"\napp_name = \"B\""))
            .effective_prefix()
            .unwrap_err();
        assert!(
            err.to_string().contains("either prefix or app_name"),
            "{err}"
        );
        let both: BroadcastConfig =
            toml::from_str(&format!("[redis]\n{url}prefix = \"a_\"\napp_name = \"B\"")).unwrap();
        assert!(
            both.validate().is_err(),
            "refused when the configuration is checked"
        );
    }

    #[test]
    fn laravel_slug_matches_str_slug() {
        // Values of `Str::slug($name, '_')` as Laravel computes them.
        for (name, slug) in [
            ("Laravel", "laravel"),
            ("Call Center", "call_center"),
            ("  ACME  Call-Center 2 ", "acme_call_center_2"),
            ("my_app", "my_app"),
            ("my__app--x", "my_app_x"),
            ("Sales & Support!", "sales_support"),
            ("ops@acme", "ops_at_acme"),
            ("Café Größe", "cafe_grosse"),
            ("_x_", "x"),
        ] {
            assert_eq!(laravel_slug(name, '_'), slug, "{name:?}");
        }
        assert_eq!(laravel_redis_prefix("Laravel"), DEFAULT_REDIS_PREFIX);
    }

    #[test]
    fn payload_is_serialised_like_the_apps_own_event() {
        let ended = DateTime::parse_from_rfc3339("2026-12-02T05:51:41.734Z")
            .unwrap()
            .with_timezone(&Utc);
        let v = serde_json::to_value(CallUpdate::completed(&closed_row(CallId::Int(1), ended)))
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": 1,
                "extension": "2001",
                "status": "completed",
                "ended_at": "2026-12-02T05:51:41.000000Z",
                "hangup_cause": "normal_clearing",
                "talk_seconds": 42,
                "reason": "hangup_seen",
            }),
            "the documented key set, an integer id and Eloquent's date format"
        );
        let v = serde_json::to_value(CallUpdate::completed(&closed_row(
            CallId::Text("9b2f-uuid".into()),
            ended,
        )))
        .unwrap();
        assert_eq!(v["id"], "9b2f-uuid", "string ids stay strings");
    }

    #[test]
    fn laravel_envelope_shape() {
        let ended = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let u = CallUpdate::completed(&closed_row(CallId::Int(7), ended));
        let v = laravel_envelope(DEFAULT_EVENT, &u);
        assert_eq!(v["event"], DEFAULT_EVENT);
        assert_eq!(v["data"]["talk_seconds"], 42);
        assert_eq!(v["data"]["id"], 7);
        assert!(v["socket"].is_null());
        // as Laravel's RedisBroadcaster: `socket` stays in the data as well
        assert_eq!(v["data"].get("socket"), Some(&serde_json::Value::Null));
    }

    /// A Redis that never answers: `accept` takes connections and holds them silent; otherwise the listener
    /// never accepts (connections wait in its backlog). Returns the address and the task keeping it.
    async fn black_hole(accept: bool) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                if accept {
                    if let Ok((sock, _)) = listener.accept().await {
                        held.push(sock);
                    }
                } else {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            }
        });
        (addr, task)
    }

    fn update(id: i64) -> CallUpdate {
        CallUpdate::completed(&closed_row(CallId::Int(id), Utc::now()))
    }

    /// Every delivery to a black-holed Redis is bounded by `timeout`, the queue by `queue`: `send` never
    /// blocks, every update is either dropped at once (queue full) or given up after its attempts, each drop is
    /// counted, and shutdown finishes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn black_holed_redis_never_stalls_and_drops_are_counted() {
        for accept in [true, false] {
            let (addr, hole) = black_hole(accept).await;
            let cfg: BroadcastConfig = toml::from_str(&format!(
                "timeout = \"100ms\"\nqueue = 2\n[redis]\nurl = \"redis://{addr}/\""
            ))
            .unwrap();
            let tracker = TaskTracker::new();
            let cancel = CancellationToken::new();
            let b = Broadcaster::start(&cfg, &tracker, cancel.clone()).unwrap();
            for id in 0..10 {
                b.send(update(id)); // never waits
            }
            assert!(
                b.dropped() >= 7,
                "queue of 2 (+1 in delivery): {}",
                b.dropped()
            );
            // The updates that were queued are given up after their bounded attempts.
            tokio::time::timeout(Duration::from_secs(30), async {
                while b.dropped() < 10 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("accept={accept}: only {} of 10 given up", b.dropped()));
            // Later updates fail fast (one bounded attempt) rather than queueing behind retries.
            b.send(update(11));
            cancel.cancel();
            tracker.close();
            tokio::time::timeout(Duration::from_secs(30), tracker.wait())
                .await
                .unwrap_or_else(|_| panic!("accept={accept}: shutdown stalled"));
            assert_eq!(
                b.dropped(),
                11,
                "accept={accept}: every update accounted for"
            );
            hole.abort();
        }
    }
}
