//! Secrets never reach the logs. In its own test binary: `tracing` caches per-callsite interest process-wide,
//! so a scoped subscriber only sees everything when no other test runs beside it.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ami::{BoxedTransport, ChannelConnector, ChannelMap, Config, State, TokioClock};
use ami_proto::{Frame, Limits, Message, Parser};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn secrets_never_reach_the_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = Config::from_url("ami://watchdog:lab-secret@pbx.test?server=pbx").unwrap();
        tracing::info!(?cfg, "configured");
        let (connector, streams) = ChannelConnector::new();
        let (client, conn) = ami::connect_with(
            cfg,
            ChannelMap::default(),
            Arc::new(TokioClock::new()),
            connector,
        );
        let mut state = client.state();
        let task = tokio::spawn(conn.run());
        let accept = || {
            let (a, b) = tokio::io::duplex(1 << 16);
            streams.send(Ok(Box::new(a) as BoxedTransport)).unwrap();
            b
        };
        let mut parser = Parser::without_banner(Limits::default());
        let mut buf = BytesMut::new();
        let mut next_action = async |io: &mut tokio::io::DuplexStream| loop {
            if let Some(Ok(Frame::Message(m))) = parser.next_frame(&mut buf) {
                return m;
            }
            assert!(io.read_buf(&mut buf).await.unwrap() > 0);
        };
        let reply = |pairs: &[(&str, &str)]| Message::from_pairs(pairs.iter().copied()).to_bytes();
        // A good session with a listing, then a refused login, then a refused connection.
        let mut io = accept();
        io.write_all(b"Asterisk Call Manager/11.0.0\r\n")
            .await
            .unwrap();
        let login = next_action(&mut io).await;
        tracing::info!(?login, "the login as the server saw it");
        assert_eq!(login.get_str("Secret"), Some("lab-secret"));
        let id = login.action_id().unwrap().to_string();
        io.write_all(&reply(&[("Response", "Success"), ("ActionID", &id)]))
            .await
            .unwrap();
        let list = next_action(&mut io).await;
        let id = list.action_id().unwrap().to_string();
        io.write_all(&reply(&[
            ("Response", "Success"),
            ("ActionID", &id),
            ("EventList", "start"),
        ]))
        .await
        .unwrap();
        io.write_all(&reply(&[
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", &id),
            ("EventList", "Complete"),
            ("ListItems", "0"),
        ]))
        .await
        .unwrap();
        state.wait_for(|s| *s == State::Synced).await.unwrap();
        drop(io);
        state
            .wait_for(|s| matches!(s, State::Disconnected { .. }))
            .await
            .unwrap();
        let mut io = accept();
        io.write_all(b"Asterisk Call Manager/11.0.0\r\n")
            .await
            .unwrap();
        let login = next_action(&mut io).await;
        let id = login.action_id().unwrap().to_string();
        tokio::time::sleep(Duration::from_secs(1)).await;
        io.write_all(&reply(&[
            ("Response", "Error"),
            ("ActionID", &id),
            ("Message", "Authentication failed"),
        ]))
        .await
        .unwrap();
        state
            .wait_for(|s| matches!(s, State::Disconnected { .. }))
            .await
            .unwrap();
        streams
            .send(Err(io::Error::from(io::ErrorKind::ConnectionRefused)))
            .unwrap();
        state
            .wait_for(
                |s| matches!(s, State::Disconnected { reason, .. } if reason.contains("refused")),
            )
            .await
            .unwrap();
        drop(client);
        task.await.unwrap().unwrap();
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("AMI logged in"), "logs were captured: {text}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("lab-secret"), "{text}");
}
