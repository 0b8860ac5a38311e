//! One proxied connection: a reader and a writer per direction, joined by a queue that carries each chunk's
//! due time (latency), with the write-side faults (throttle, 1-byte segments, mid-frame reset) applied as
//! bytes leave.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{lock, Direction, Faults, Shared};

enum Item {
    Data { due: Instant, bytes: Bytes },
    Eof,
}

/// Makes the next close of `stream` a reset (RST) instead of an orderly FIN.
fn abort_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Resets a connection at once.
pub(crate) fn reset(stream: TcpStream) {
    abort_on_close(&stream);
}

/// Serves one accepted client until both directions end or a fault resets it.
pub(crate) async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let generation = shared.token();
    let _ = client.set_nodelay(true);
    let server = tokio::select! {
        s = TcpStream::connect(shared.upstream) => s,
        _ = generation.cancelled() => {
            abort_on_close(&client);
            return;
        }
    };
    let Ok(server) = server else {
        abort_on_close(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let token = generation.child_token();
    let muted = AtomicBool::new(false);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = pump(
        &mut cr,
        &mut sw,
        Direction::ToServer,
        &shared,
        &token,
        &muted,
    );
    let down = pump(
        &mut sr,
        &mut cw,
        Direction::ToClient,
        &shared,
        &token,
        &muted,
    );
    let reset = tokio::select! {
        _ = token.cancelled() => true,
        _ = async { tokio::join!(up, down) } => false,
    };
    if reset {
        if generation.is_cancelled() {
            shared.count_reset();
        }
        abort_on_close(cw.as_ref());
        abort_on_close(sw.as_ref());
        // A write half shuts down (FIN) when dropped; forgotten, the last close sends only the RST.
        cw.forget();
        sw.forget();
    }
}

async fn pump(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    dir: Direction,
    shared: &Shared,
    token: &CancellationToken,
    muted: &AtomicBool,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::join!(
        read_side(rd, tx, dir, shared, token, muted),
        write_side(wr, rx, dir, shared, token, muted)
    );
}

/// Waits while the link is half-open.
async fn until_forwarding(faults: &mut watch::Receiver<Faults>) {
    while faults.borrow_and_update().half_open {
        if faults.changed().await.is_err() {
            return;
        }
    }
}

/// Ends of matches of `pattern` in `window` that lie beyond `old` bytes (so a match is counted once).
fn matches_after(window: &[u8], pattern: &[u8], old: usize) -> usize {
    if pattern.is_empty() || window.len() < pattern.len() {
        return 0;
    }
    window
        .windows(pattern.len())
        .enumerate()
        .filter(|(i, w)| *w == pattern && i + pattern.len() > old)
        .count()
}

async fn read_side(
    rd: &mut OwnedReadHalf,
    tx: mpsc::UnboundedSender<Item>,
    dir: Direction,
    shared: &Shared,
    token: &CancellationToken,
    muted: &AtomicBool,
) {
    let mut faults = shared.faults.subscribe();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // The last bytes read, so that a pattern split across two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        until_forwarding(&mut faults).await;
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(Item::Eof);
                return;
            }
            Ok(_) => {}
        }
        let bytes = buf.split().freeze();
        let now = Instant::now();
        let mut settle = None;
        if dir == Direction::ToServer {
            let old = tail.len();
            tail.extend_from_slice(&bytes);
            let mut longest = 0;
            for (pattern, hits) in lock(&shared.taps).iter_mut() {
                longest = longest.max(pattern.len());
                for _ in 0..matches_after(&tail, pattern, old) {
                    hits.push(now);
                }
            }
            {
                let mut cuts = lock(&shared.cut_on);
                if let Some(i) = cuts
                    .iter()
                    .position(|(p, _)| matches_after(&tail, p, old) > 0)
                {
                    settle = Some(cuts.remove(i).1);
                }
                longest = cuts.iter().map(|(p, _)| p.len()).fold(longest, usize::max);
            }
            let keep = longest.saturating_sub(1);
            if tail.len() > keep {
                tail.drain(..tail.len() - keep);
            }
        }
        let due = now + faults.borrow().latency;
        if tx.send(Item::Data { due, bytes }).is_err() {
            return;
        }
        if let Some(settle) = settle {
            // The server gets the bytes and acts on them; its answer is never forwarded.
            muted.store(true, Ordering::SeqCst);
            tokio::time::sleep(settle).await;
            shared.count_reset();
            token.cancel();
            return;
        }
    }
}

async fn write_side(
    wr: &mut OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Item>,
    dir: Direction,
    shared: &Shared,
    token: &CancellationToken,
    muted: &AtomicBool,
) {
    let mut faults = shared.faults.subscribe();
    let mut last_due = Instant::now();
    while let Some(item) = rx.recv().await {
        let (due, bytes) = match item {
            Item::Eof => {
                let _ = wr.shutdown().await;
                return;
            }
            Item::Data { due, bytes } => (due, bytes),
        };
        let due = due.max(last_due);
        last_due = due;
        tokio::time::sleep_until(due.into()).await;
        until_forwarding(&mut faults).await;
        if dir == Direction::ToClient && muted.load(Ordering::SeqCst) {
            continue;
        }
        if write_chunk(wr, &bytes, dir, shared, &faults).await.is_err() {
            token.cancel();
            return;
        }
    }
}

/// Why a chunk was not written whole.
enum Stop {
    /// The peer is gone.
    Io,
    /// A mid-frame reset fired.
    Reset,
}

async fn write_chunk(
    wr: &mut OwnedWriteHalf,
    bytes: &[u8],
    dir: Direction,
    shared: &Shared,
    faults: &watch::Receiver<Faults>,
) -> Result<(), Stop> {
    let armed = &shared.reset_after[dir.index()];
    let mut rest = bytes;
    while !rest.is_empty() {
        let (one_byte, bandwidth) = {
            let f = faults.borrow();
            (f.one_byte_segments, f.bandwidth)
        };
        let mut n = rest.len();
        if one_byte {
            n = 1;
        }
        if let Some(bw) = bandwidth {
            // Slices of 1/20 s keep the rate smooth.
            n = n.min(usize::try_from(bw / 20).unwrap_or(usize::MAX).max(1));
        }
        let left = armed.load(Ordering::SeqCst);
        if left != u64::MAX {
            n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        if n > 0 {
            wr.write_all(&rest[..n]).await.map_err(|_| Stop::Io)?;
            shared.count_bytes(dir, n);
            rest = &rest[n..];
        }
        if left != u64::MAX {
            let fired = armed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
                    (l != u64::MAX).then(|| {
                        let l = l.saturating_sub(n as u64);
                        if l == 0 {
                            u64::MAX
                        } else {
                            l
                        }
                    })
                })
                .is_ok_and(|prev| prev <= n as u64);
            if fired {
                shared.count_reset();
                return Err(Stop::Reset);
            }
        }
        if let Some(bw) = bandwidth {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / bw as f64)).await;
        } else if one_byte {
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::matches_after;

    #[test]
    fn a_match_is_counted_once_across_reads() {
        assert_eq!(matches_after(b"xxCOMMIT", b"COMMIT", 0), 1);
        // "COMM" was seen before; the match ends in the new bytes: counted now.
        assert_eq!(matches_after(b"COMMIT", b"COMMIT", 4), 1);
        // Wholly within the old bytes: already counted.
        assert_eq!(matches_after(b"COMMITxx", b"COMMIT", 6), 0);
        assert_eq!(matches_after(b"ab", b"COMMIT", 0), 0);
    }
}
