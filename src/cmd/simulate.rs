//! `callwatch simulate`: serve recorded AMI sessions as a fake Asterisk (the built-in simulator).
//!
//! Each SESSION is a recorded prefix `DIR/NAME.LABEL` (the `.ami` or `.ami.gz`, with its `.sent` and
//! `.chunks.jsonl` when present), a scenario `DIR/NAME` (all of its `NAME.subject-N` sessions, in order), or a
//! `.json` event-list flow. Connection *i* is served session *i* at the recorded pace divided by `--speed`
//! (or as fast as possible with `--max-speed`); the client's ActionIDs are put into the recorded responses,
//! and a recorded response waits until the client has sent the matching action. A recorded gap between two
//! sessions is kept: connections that arrive inside it are closed at once.
//!
//! With `--scripted`, a single `.json` flow is played through the scripted PBX instead, one event every
//! 100 ms / speed, and `CoreShowChannels` / `Status` are answered from the PBX's own channel table, so they
//! are the truth of the events sent so far at any moment.
//!
//! It prints the address it listens on (`listening on ADDR`), then one line per connection event. Without
//! `--loop` it exits once the last session's connection has closed; otherwise on Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ami_testkit::server::{ClosedBy, Refused};
use ami_testkit::{
    flow, ClientOutcome, FakeAmi, FakeAmiConfig, PbxServer, ScriptedPbx, ServerEvent, Session,
    UnsentPolicy,
};
use anyhow::Context as _;
use clap::Args;
use tokio::sync::broadcast::error::RecvError;

use crate::cli::GlobalArgs;

/// Flags of `callwatch simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:5038")]
    pub listen: SocketAddr,
    /// Play at the recorded pace divided by X (2 = twice as fast).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.0,
        conflicts_with = "max_speed"
    )]
    pub speed: f64,
    /// Play as fast as the client reads, with no gaps between sessions.
    #[arg(long)]
    pub max_speed: bool,
    /// Start over with the first session after the last one (and run until Ctrl-C).
    #[arg(long = "loop")]
    pub looping: bool,
    /// Leave out recorded responses to actions the client never sends, instead of waiting for them.
    #[arg(long)]
    pub skip_unsent: bool,
    /// Wait at most this long (e.g. `300ms`, `2s`) for a recorded action the client has not sent, then go on
    /// without its response. Without it the stream waits until the client sends it (or a later action).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "skip_unsent")]
    pub unsent_grace: Option<std::time::Duration>,
    /// Play one `.json` flow through the scripted PBX, answering listings from its channel table.
    #[arg(long)]
    pub scripted: bool,
    /// Sessions: `DIR/NAME.LABEL` prefixes, `DIR/NAME` scenarios, or `.json` flows.
    #[arg(required = true, value_name = "SESSION")]
    pub sessions: Vec<PathBuf>,
}

/// Loads one SESSION argument: a prefix, a `.json` flow, or a scenario (all its subject sessions).
fn load(arg: &Path) -> anyhow::Result<Vec<Session>> {
    match Session::load(arg) {
        Ok(s) => Ok(vec![s]),
        Err(ami_testkit::Error::NoStream { .. }) => {
            let dir = arg
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = arg
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Session::load_scenario(dir, &name).with_context(|| {
                format!(
                    "{}: no NAME.ami, NAME.ami.gz or NAME.subject-N.ami, and not a .json flow",
                    arg.display()
                )
            })
        }
        Err(e) => Err(e).with_context(|| format!("cannot load session {}", arg.display())),
    }
}

fn describe(e: &ServerEvent) -> String {
    match e {
        ServerEvent::Accepted {
            connection,
            session,
            name,
            peer,
        } => format!("conn {connection}: {peer} connected, serving session {session} ({name})"),
        ServerEvent::Refused { peer, reason } => match reason {
            Refused::Gap { remaining } => {
                format!(
                    "{peer} refused: inside the recorded gap, next session in {:.1}s",
                    remaining.as_secs_f64()
                )
            }
            Refused::NoMoreSessions => format!("{peer} refused: every session has been served"),
            _ => format!("{peer} refused"),
        },
        ServerEvent::ClientAction {
            connection,
            name,
            outcome,
        } => {
            let how = match outcome {
                ClientOutcome::Paired { recorded } => {
                    format!("paired with recorded action #{recorded}")
                }
                ClientOutcome::Answered(kind) => format!("answered here ({kind:?})"),
                _ => "handled".to_owned(),
            };
            format!("conn {connection}: client sent {name}, {how}")
        }
        ServerEvent::Waiting { connection, action } => {
            format!("conn {connection}: stream waits for the client's {action}")
        }
        ServerEvent::Silent { connection, offset } => {
            format!("conn {connection}: silent after {offset} bytes")
        }
        ServerEvent::Closed {
            connection,
            offset,
            by,
        } => {
            let why = match by {
                ClosedBy::Recording => "the recording ends here",
                ClosedBy::Logoff => "client logged off",
                ClosedBy::Client => "client closed",
                ClosedBy::Dropped => "dropped",
                ClosedBy::Cut => "cut",
                ClosedBy::WriteError => "write failed",
                _ => "closed",
            };
            format!("conn {connection}: closed after {offset} recorded bytes ({why})")
        }
        other => format!("{other:?}"),
    }
}

/// Runs `callwatch simulate`.
pub async fn run(args: SimulateArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        anyhow::bail!("--speed must be a positive number, not {}", args.speed);
    }
    if args.scripted {
        return run_scripted(&args).await;
    }
    let mut sessions = Vec::new();
    for arg in &args.sessions {
        sessions.extend(load(arg)?);
    }
    let total = sessions.len();
    let mut config = FakeAmiConfig::new(sessions)
        .bind(args.listen)
        .looping(args.looping);
    config = if args.max_speed {
        config.max_speed()
    } else {
        config.speed(args.speed)
    };
    if args.skip_unsent {
        config = config.policy(UnsentPolicy::Skip);
    }
    if let Some(grace) = args.unsent_grace {
        config = config.unsent_grace(grace);
    }
    let server = FakeAmi::start(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut events = server.subscribe();
    println!("listening on {}", server.local_addr());
    println!("{total} session(s) to serve");
    let mut served = 0usize;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            e = events.recv() => match e {
                Ok(e) => {
                    println!("{}", describe(&e));
                    if let ServerEvent::Accepted { .. } = e {
                        served += 1;
                    }
                    if matches!(e, ServerEvent::Closed { .. }) && served >= total && !args.looping {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => println!("({n} progress lines skipped)"),
                Err(RecvError::Closed) => break,
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--scripted`: one flow through the scripted PBX.
async fn run_scripted(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let [path] = args.sessions.as_slice() else {
        anyhow::bail!("--scripted plays exactly one .json flow");
    };
    let events =
        flow::load_events(path).with_context(|| format!("cannot load flow {}", path.display()))?;
    let n = events.len();
    let step = if args.max_speed {
        Duration::from_millis(1)
    } else {
        flow::DEFAULT_SPACING.div_f64(args.speed)
    };
    let pbx = ScriptedPbx::new(chrono::Utc::now()).with_flow(events, flow::DEFAULT_SPACING);
    let server = PbxServer::start(pbx, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening on {}", server.local_addr());
    println!(
        "playing {n} events from {}, one every {:?}",
        path.display(),
        step
    );
    let player = server.autoplay(step);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = player => {
            println!("flow played; the PBX keeps answering until Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
