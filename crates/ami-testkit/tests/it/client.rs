//! A bare AMI test client: raw tokio TCP plus the ami-proto parser.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ami_proto::{Action, Frame, Limits, Message, Parser};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

pub struct Client {
    pub stream: TcpStream,
    pub buf: BytesMut,
    parser: Parser,
    /// Every byte received, in order.
    pub received: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            parser: Parser::new(Limits::default()),
            received: Vec::new(),
        }
    }

    pub async fn send(&mut self, name: &str, id: Option<&str>, headers: &[(&str, &str)]) {
        let mut a = Action::new(name).unwrap();
        if let Some(id) = id {
            a = a.with_action_id(id).unwrap();
        }
        for (k, v) in headers {
            a = a.header(k, v).unwrap();
        }
        self.stream.write_all(&a.to_bytes()).await.unwrap();
    }

    /// Reads more bytes; false at EOF.
    pub async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        let n = self.stream.read(&mut tmp).await.unwrap_or(0);
        self.received.extend_from_slice(&tmp[..n]);
        self.buf.extend_from_slice(&tmp[..n]);
        n > 0
    }

    /// The next frame; `None` at EOF.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.parser.next_frame(&mut self.buf) {
                return Some(f.unwrap());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next message (the banner is skipped); `None` at EOF.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            match self.next_frame().await? {
                Frame::Message(m) => return Some(m),
                Frame::Banner(_) => {}
            }
        }
    }

    /// Reads messages until one satisfies `pred`, returning it.
    pub async fn until(&mut self, pred: impl Fn(&Message) -> bool) -> Message {
        loop {
            let m = self
                .next_message()
                .await
                .expect("connection closed before the awaited message");
            if pred(&m) {
                return m;
            }
        }
    }

    /// Reads until EOF.
    pub async fn read_to_end(&mut self) {
        while self.fill().await {}
    }
}
