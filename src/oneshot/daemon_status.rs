//! The running daemon's `/status` (for `callwatch status`), read over HTTP with a short timeout.

use std::time::Duration;

use serde_json::Value;

/// How long `callwatch status` waits for the daemon.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// What the daemon said, or why it could not be asked.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonReport {
    /// The daemon answered with this `/status` document.
    Running {
        /// The URL asked.
        url: String,
        /// Its JSON.
        status: Value,
    },
    /// Nothing answered (or not with a status document).
    NotRunning {
        /// The URL asked (`None` when the HTTP endpoints are disabled).
        url: Option<String>,
        /// Why.
        why: String,
    },
}

/// The URL of `/status` for the configured `[http] listen` address: a wildcard address is asked on loopback.
pub fn status_url(listen: &str) -> String {
    let listen = listen.trim();
    let addr = if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    };
    format!("http://{addr}/status")
}

/// Asks the daemon listening on `listen`; `enabled = false` (HTTP endpoints off) does not ask.
pub async fn fetch(listen: &str, enabled: bool) -> DaemonReport {
    if !enabled {
        return DaemonReport::NotRunning {
            url: None,
            why: "the HTTP endpoints are disabled ([http] enabled = false)".into(),
        };
    }
    let url = status_url(listen);
    let not_running = |why: String| DaemonReport::NotRunning {
        url: Some(url.clone()),
        why,
    };
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return not_running(format!("cannot build the HTTP client: {e}")),
    };
    let response = match client.get(&url).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return not_running("no answer within 2 s".into()),
        Err(_) => return not_running("nothing is listening".into()),
    };
    if !response.status().is_success() {
        return not_running(format!("it answered HTTP {}", response.status()));
    }
    match response
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t))
    {
        Ok(Ok(status)) if status.is_object() => DaemonReport::Running { url, status },
        _ => not_running("it did not answer with a status document".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_asked_on_loopback() {
        assert_eq!(status_url("127.0.0.1:9465"), "http://127.0.0.1:9465/status");
        assert_eq!(status_url("0.0.0.0:9465"), "http://127.0.0.1:9465/status");
        assert_eq!(status_url("[::]:9465"), "http://[::1]:9465/status");
    }

    #[tokio::test]
    async fn a_closed_port_is_not_running() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        match fetch(&addr.to_string(), true).await {
            DaemonReport::NotRunning { url, .. } => {
                assert_eq!(url, Some(format!("http://{addr}/status")))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            fetch(&addr.to_string(), false).await,
            DaemonReport::NotRunning { url: None, .. }
        ));
    }

    #[tokio::test]
    async fn reads_the_daemons_status() {
        let health = crate::health::Health::new(chrono::Utc::now());
        health.update(|s| s.lock_held = true);
        let router = crate::http::router(
            health,
            None,
            chrono::Duration::minutes(2),
            std::sync::Arc::new(clock::SystemClock),
        );
        let cancel = tokio_util::sync::CancellationToken::new();
        let (addr, _task) = crate::http::serve("127.0.0.1:0", router, cancel.clone())
            .await
            .unwrap();
        match fetch(&addr.to_string(), true).await {
            DaemonReport::Running { status, .. } => assert_eq!(status["lock_held"], true),
            other => panic!("{other:?}"),
        }
        cancel.cancel();
    }
}
