//! `callwatch events`: read an AMI byte stream and print it.
//!
//! Input is a recorded stream (`--file PATH`, `-` for stdin, `.gz` decompressed on the fly) or a live
//! connection (`--ami URL`, see [`super::events_live`]). The file is read in bounded chunks, so memory does
//! not grow with its size. Output is one line per message (text, or JSON with `--json`), or with
//! `--summary` only the counts at the end: `--summary --json` prints exactly one JSON object whose keys
//! are those of the recordings' `truth.json` (`banner`, `frames`, `events`, `responses`, `event_counts`,
//! `trailing_partial_bytes`) plus `bytes`, `elapsed_seconds` and `events_per_sec`.
//!
//! Values of `Secret:` and `Key:` headers are printed as `<redacted>`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use ami_proto::message::is_secret_key;
use ami_proto::{Frame, Message, MessageKind, ParseError, Parser, StreamSummary};
use anyhow::Context as _;
use bytes::BytesMut;
use clap::Args;
use serde_json::{json, Map, Value};

use crate::cli::GlobalArgs;

/// Bytes read from the input per read call.
const READ_CHUNK: usize = 64 * 1024;

/// Flags of `callwatch events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Recorded stream to read (`-` = stdin; a `.gz` file is decompressed).
    #[arg(long, conflicts_with = "ami", required_unless_present = "ami")]
    pub file: Option<PathBuf>,
    /// Live AMI server to read from (`ami://user:secret@host:5038`).
    #[arg(long)]
    pub ami: Option<String>,
    /// Print JSON (one object per message; with `--summary`, one object in all).
    #[arg(long)]
    pub json: bool,
    /// Print only the counts at the end of the stream.
    #[arg(long)]
    pub summary: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,
}

/// Runs `callwatch events`.
pub async fn run(args: EventsArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut sink = EventSink::new(
        Box::new(BufWriter::with_capacity(64 * 1024, io::stdout())),
        &args,
    );
    if let Some(url) = args.ami.clone() {
        // A runtime task, not the main thread: woken by the connection task, it runs on the same worker
        // right after it, without a thread wake-up per batch.
        tokio::spawn(async move { super::events_live::run(&url, &mut sink).await })
            .await
            .context("the live reader task failed")??;
        return Ok(ExitCode::SUCCESS);
    }
    let path = args
        .file
        .clone()
        .context("either --file or --ami is required")?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let reader = open_input(&path)?;
        read_stream(reader, &mut sink).with_context(|| format!("reading {}", path.display()))
    })
    .await
    .context("the reader task failed")??;
    Ok(ExitCode::SUCCESS)
}

/// Opens `path` (`-` = stdin), decompressing `.gz` files.
fn open_input(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(io::stdin()));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::new(file),
        )))
    } else {
        Ok(Box::new(file))
    }
}

/// Feeds `reader` through a [`Parser`] into `sink` in bounded chunks, then finishes the sink.
pub(crate) fn read_stream(mut reader: impl Read, sink: &mut EventSink) -> anyhow::Result<()> {
    let mut parser = Parser::default();
    let mut buf = BytesMut::with_capacity(2 * READ_CHUNK);
    loop {
        buf.reserve(READ_CHUNK);
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let read = reader.read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        sink.add_bytes(n as u64);
        while let Some(frame) = parser.next_frame(&mut buf) {
            if sink.frame(&frame)? == Flow::Stop {
                return sink.finish(parser.pending_bytes(&buf));
            }
        }
    }
    sink.finish(parser.pending_bytes(&buf))
}

/// Whether to keep reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep going.
    Continue,
    /// `--max-events` reached, or the output was closed: stop reading.
    Stop,
}

/// Prints frames and counts them; shared by the file and live inputs.
pub(crate) struct EventSink {
    out: Box<dyn Write + Send>,
    json: bool,
    summary_only: bool,
    max_events: Option<u64>,
    summary: StreamSummary,
    bytes: u64,
    started: Instant,
    /// The output was closed (e.g. `| head`): stop quietly.
    closed: bool,
}

impl EventSink {
    /// A sink printing to `out` as `args` asks.
    pub(crate) fn new(out: Box<dyn Write + Send>, args: &EventsArgs) -> Self {
        Self {
            out,
            json: args.json,
            summary_only: args.summary,
            max_events: args.max_events,
            summary: StreamSummary::new(),
            bytes: 0,
            started: Instant::now(),
            closed: false,
        }
    }

    /// Counts `n` more input bytes.
    pub(crate) fn add_bytes(&mut self, n: u64) {
        self.bytes += n;
    }

    /// Counts and prints one result of the parser.
    pub(crate) fn frame(&mut self, frame: &Result<Frame, ParseError>) -> anyhow::Result<Flow> {
        if self
            .max_events
            .is_some_and(|max| self.summary.events >= max)
        {
            return Ok(Flow::Stop);
        }
        self.summary.record(frame);
        if let Err(err) = frame {
            tracing::warn!(%err, "skipped a malformed AMI frame");
        }
        if !self.summary_only {
            let written = match frame {
                Ok(Frame::Banner(b)) => self.print_banner(&String::from_utf8_lossy(b)),
                Ok(Frame::Message(m)) => self.print_message(m),
                Err(err) => self.print_error(err),
            };
            if let Err(e) = written {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    self.closed = true;
                    return Ok(Flow::Stop);
                }
                return Err(e.into());
            }
        }
        let done = self
            .max_events
            .is_some_and(|max| self.summary.events >= max);
        Ok(if done { Flow::Stop } else { Flow::Continue })
    }

    /// Records the unfinished bytes at the end and prints the summary (when asked) or a text note.
    pub(crate) fn finish(&mut self, trailing_partial_bytes: usize) -> anyhow::Result<()> {
        self.summary.finish(trailing_partial_bytes);
        if self.summary.errors > 0 || self.summary.unclassified > 0 {
            tracing::warn!(
                skipped = self.summary.errors,
                unclassified = self.summary.unclassified,
                "the stream had malformed messages"
            );
        }
        if self.closed {
            return Ok(());
        }
        let result = if self.summary_only {
            self.print_summary()
        } else if trailing_partial_bytes > 0 && !self.json {
            writeln!(
                self.out,
                "# stream ended inside a message ({trailing_partial_bytes} bytes)"
            )
        } else {
            Ok(())
        };
        match result.and_then(|()| self.out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }

    fn print_banner(&mut self, banner: &str) -> io::Result<()> {
        if self.json {
            writeln!(
                self.out,
                "{}",
                json!({ "kind": "banner", "banner": banner })
            )
        } else {
            writeln!(self.out, "# banner: {banner}")
        }
    }

    fn print_error(&mut self, err: &ParseError) -> io::Result<()> {
        if self.json {
            writeln!(
                self.out,
                "{}",
                json!({ "kind": "error", "error": err.to_string() })
            )
        } else {
            writeln!(self.out, "# skipped: {err}")
        }
    }

    fn print_message(&mut self, m: &Message) -> io::Result<()> {
        let kind = match m.kind() {
            Ok(MessageKind::Event) => "event",
            Ok(MessageKind::Response) => "response",
            Ok(_) | Err(_) => "unclassified",
        };
        if self.json {
            let headers: Vec<Value> = m
                .headers()
                .map(|h| {
                    let value = if is_secret_key(h.key) {
                        "<redacted>".into()
                    } else {
                        String::from_utf8_lossy(h.value)
                    };
                    json!([String::from_utf8_lossy(h.key), value])
                })
                .collect();
            let mut obj = Map::new();
            obj.insert("kind".into(), kind.into());
            if let Some(name) = m.get("Event") {
                obj.insert("event".into(), String::from_utf8_lossy(name).into());
            }
            obj.insert("headers".into(), headers.into());
            writeln!(self.out, "{}", Value::Object(obj))
        } else {
            let mut line = String::with_capacity(m.raw().len());
            line.push_str(kind);
            for h in m.headers() {
                line.push_str(" | ");
                if !h.key.is_empty() {
                    line.push_str(&String::from_utf8_lossy(h.key));
                    line.push_str(": ");
                }
                if is_secret_key(h.key) {
                    line.push_str("<redacted>");
                } else {
                    line.push_str(&String::from_utf8_lossy(h.value));
                }
            }
            writeln!(self.out, "{line}")
        }
    }

    fn print_summary(&mut self) -> io::Result<()> {
        let s = &self.summary;
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            s.events as f64 / elapsed
        } else {
            0.0
        };
        if self.json {
            let value = json!({
                "banner": s.banner,
                "frames": s.frames,
                "events": s.events,
                "responses": s.responses,
                "event_counts": s.event_counts,
                "trailing_partial_bytes": s.trailing_partial_bytes,
                "bytes": self.bytes,
                "elapsed_seconds": elapsed,
                "events_per_sec": rate,
            });
            writeln!(self.out, "{value}")
        } else {
            writeln!(
                self.out,
                "banner: {}",
                s.banner.as_deref().unwrap_or("(none)")
            )?;
            writeln!(
                self.out,
                "frames: {}  events: {}  responses: {}  skipped: {}  unclassified: {}",
                s.frames, s.events, s.responses, s.errors, s.unclassified
            )?;
            writeln!(
                self.out,
                "trailing partial bytes: {}",
                s.trailing_partial_bytes
            )?;
            writeln!(
                self.out,
                "bytes: {}  elapsed: {elapsed:.3} s  events/s: {rate:.0}",
                self.bytes
            )?;
            for (name, count) in &s.event_counts {
                writeln!(self.out, "  {name:<28} {count}")?;
            }
            Ok(())
        }
    }
}
