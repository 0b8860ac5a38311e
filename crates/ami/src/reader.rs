//! The socket reader of a live connection: reads and frames bytes beside the connection task.
//!
//! Framing is the largest per-message cost of the client, and the connection task (channel map,
//! correlation, fan-out) the second: run one after the other they cap a busy stream at what one core does.
//! So the read half of the socket goes to its own reader, which reads up to [`READ_CHUNK`] bytes at a
//! time, splits them into frames and hands each read's frames to the connection task over a queue of
//! [`QUEUE`] reads. The reader waits when that queue is full, which is the core's own pace: consumers are
//! fed without waiting, so the socket is never held up by them.
//!
//! On a multi-thread runtime the reader gets a thread of its own (`ami-reader`), driven by the runtime's
//! I/O driver through [`tokio::runtime::Handle::block_on`]: as a task, the runtime would keep waking it on
//! the same worker as the connection task (tokio runs a woken task next on the waker's worker), and the two
//! would still share one core. On a current-thread runtime (tests on paused time) it is a task.
//!
//! The reader stops at EOF, on a read error, when the connection task drops its end of the queue, or when
//! the [`ReaderGuard`] is dropped.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::codec::{AmiCodec, Decoded};

/// Read buffer headroom reserved before each read.
pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// Reads queued between the reader and the connection task.
pub(crate) const QUEUE: usize = 4;

/// What the reader hands to the connection task.
pub(crate) enum Read {
    /// One read's complete frames (and skipped bad ones), out of `bytes` received bytes.
    Frames { items: Vec<Decoded>, bytes: usize },
    /// The peer closed the connection with `pending` bytes of an unfinished frame unread.
    Eof { pending: usize },
    /// Reading failed.
    Failed(std::io::Error),
}

/// Stops the reader when dropped.
pub(crate) struct ReaderGuard {
    _stop: DropGuard,
}

/// Starts reading `rd` with `codec`, sending to `out`; see the module docs for where it runs.
pub(crate) fn spawn<R>(rd: R, codec: AmiCodec, out: mpsc::Sender<Read>) -> ReaderGuard
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let stop = CancellationToken::new();
    let reader = read_frames(rd, codec, out, stop.clone());
    let handle = Handle::current();
    match handle.runtime_flavor() {
        RuntimeFlavor::CurrentThread => {
            tokio::spawn(reader);
        }
        _ => {
            let on_thread = std::thread::Builder::new()
                .name("ami-reader".into())
                .spawn(move || handle.block_on(reader));
            if let Err(err) = on_thread {
                // The reader and its queue end are dropped with the closure: the connection task sees
                // the queue close, ends the session and reconnects after its backoff.
                tracing::error!(error = %err, "cannot start the AMI reader thread");
            }
        }
    }
    ReaderGuard {
        _stop: stop.drop_guard(),
    }
}

/// Reads and frames until EOF, an error, the connection task going away, or `stop`.
async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    mut codec: AmiCodec,
    out: mpsc::Sender<Read>,
    stop: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            _ = stop.cancelled() => return,
            r = rd.read_buf(&mut buf) => r,
        };
        let read = match read {
            Ok(0) => Read::Eof {
                pending: codec.pending_bytes(&buf),
            },
            Ok(bytes) => {
                let mut items = Vec::with_capacity(bytes / 256 + 1);
                while let Ok(Some(item)) = codec.decode(&mut buf) {
                    items.push(item);
                }
                Read::Frames { items, bytes }
            }
            Err(err) => Read::Failed(err),
        };
        let last = !matches!(read, Read::Frames { .. });
        let sent = tokio::select! {
            _ = stop.cancelled() => return,
            r = out.send(read) => r.is_ok(),
        };
        if !sent || last {
            return;
        }
    }
}
