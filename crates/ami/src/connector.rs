//! Dialing: [`Connector`] opens a byte stream to Asterisk (TCP, TLS, or anything else in tests).

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Config;

/// A bidirectional byte stream the connection can run over.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A boxed [`Transport`].
pub type BoxedTransport = Box<dyn Transport>;

/// The future returned by [`Connector::connect`].
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxedTransport>> + Send + 'a>>;

/// Opens a new stream for each (re)connect attempt.
pub trait Connector: Send + Sync + 'static {
    /// Opens a stream.
    fn connect(&self) -> ConnectFuture<'_>;
}

/// Dials `cfg.host:cfg.port` over TCP, wrapped in TLS for `amis://`.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    address: String,
    cfg: Config,
}

impl TcpConnector {
    /// A connector for `cfg`.
    pub fn new(cfg: &Config) -> Self {
        Self {
            address: cfg.address(),
            cfg: cfg.clone(),
        }
    }
}

impl Connector for TcpConnector {
    fn connect(&self) -> ConnectFuture<'_> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(&self.address).await?;
            stream.set_nodelay(true)?;
            match &self.cfg.tls {
                None => Ok(Box::new(stream) as BoxedTransport),
                Some(tls) => crate::tls::wrap(stream, &self.cfg.host, tls).await,
            }
        })
    }
}

/// Hands out pre-made streams (e.g. `tokio::io::duplex` halves) from a channel, for tests and simulations.
/// When the channel is empty and closed, connecting fails with `ConnectionRefused`.
#[derive(Debug)]
pub struct ChannelConnector {
    rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<io::Result<BoxedTransport>>>,
}

impl ChannelConnector {
    /// A connector and the sender that feeds it streams (or connect errors).
    pub fn new() -> (
        Self,
        tokio::sync::mpsc::UnboundedSender<io::Result<BoxedTransport>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Self {
                rx: tokio::sync::Mutex::new(rx),
            },
            tx,
        )
    }
}

impl Connector for ChannelConnector {
    fn connect(&self) -> ConnectFuture<'_> {
        Box::pin(async move {
            match self.rx.lock().await.recv().await {
                Some(result) => result,
                None => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
            }
        })
    }
}

impl std::fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}
