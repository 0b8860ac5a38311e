//! `amis://` against a local rustls server with a certificate made at test time.

use std::io::Write as _;
use std::sync::Arc;

use ami::{ChannelMap, Config, State, TokioClock};
use ami_proto::{Frame, Limits, Message, Parser};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

struct Pki {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    pem: String,
}

fn self_signed(name: &str) -> Pki {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    Pki {
        cert: cert.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der())),
        pem: cert.cert.pem(),
    }
}

/// Serves one TLS connection: banner, Login accepted, an empty channel listing, then waits for EOF.
async fn serve_one(listener: TcpListener, pki: Pki) {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert], pki.key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tcp, _) = listener.accept().await.unwrap();
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return;
    };
    tls.write_all(b"Asterisk Call Manager/11.0.0\r\n")
        .await
        .unwrap();
    let mut parser = Parser::without_banner(Limits::default());
    let mut buf = BytesMut::new();
    loop {
        let action = loop {
            if let Some(Ok(Frame::Message(m))) = parser.next_frame(&mut buf) {
                break m;
            }
            if tls.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        };
        let id = action.action_id().unwrap_or("").to_string();
        let mut out = BytesMut::new();
        match action.get_str("Action") {
            Some("Login") => {
                Message::from_pairs([("Response", "Success"), ("ActionID", id.as_str())])
                    .encode_into(&mut out)
            }
            Some("CoreShowChannels") => {
                Message::from_pairs([
                    ("Response", "Success"),
                    ("ActionID", id.as_str()),
                    ("EventList", "start"),
                ])
                .encode_into(&mut out);
                Message::from_pairs([
                    ("Event", "CoreShowChannelsComplete"),
                    ("ActionID", id.as_str()),
                    ("EventList", "Complete"),
                    ("ListItems", "0"),
                ])
                .encode_into(&mut out);
            }
            _ => Message::from_pairs([("Response", "Goodbye"), ("ActionID", id.as_str())])
                .encode_into(&mut out),
        }
        tls.write_all(&out).await.unwrap();
        tls.flush().await.unwrap();
    }
}

async fn session(ca_pem: &str, server_pki: Pki) -> State {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_one(listener, server_pki));
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    ca.write_all(ca_pem.as_bytes()).unwrap();
    let url = format!(
        "amis://watchdog:lab-secret@127.0.0.1:{port}?server=tls&ca={}&tls_name=pbx.test",
        ca.path().display()
    );
    let cfg = Config::from_url(&url).unwrap();
    let (client, connection) =
        ami::connect(cfg, ChannelMap::default(), Arc::new(TokioClock::new()));
    let mut state = client.state();
    let task = tokio::spawn(connection.run());
    let reached = state
        .wait_for(|s| matches!(s, State::Synced | State::Disconnected { .. }))
        .await
        .unwrap()
        .clone();
    drop(client);
    let _ = task.await;
    server.abort();
    reached
}

#[tokio::test]
async fn amis_connects_with_a_private_ca() {
    let pki = self_signed("pbx.test");
    let pem = pki.pem.clone();
    assert_eq!(session(&pem, pki).await, State::Synced);
}

#[tokio::test]
async fn amis_refuses_a_certificate_from_another_ca() {
    let other = self_signed("pbx.test");
    let State::Disconnected { reason, .. } = session(&other.pem, self_signed("pbx.test")).await
    else {
        panic!("connected with an untrusted certificate")
    };
    assert!(
        reason.contains("certificate") || reason.contains("Certificate"),
        "{reason}"
    );
    assert!(!reason.contains("lab-secret"));
}
