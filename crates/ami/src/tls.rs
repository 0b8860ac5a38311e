//! TLS for `amis://` (rustls with the ring provider).

use std::io;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::TlsConfig;
use crate::connector::BoxedTransport;

fn other(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Builds the rustls client configuration: the CA file's certificates when given, else the web roots.
pub fn client_config(tls: &TlsConfig) -> io::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| other(format!("cannot read CA file {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| other(format!("bad certificate in {}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    other(format!(
                        "unusable CA certificate in {}: {e}",
                        path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(other(format!(
                    "no certificate in CA file {}",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Runs the TLS handshake over `stream`, verifying the certificate against `tls.server_name` or `host`.
pub async fn wrap(stream: TcpStream, host: &str, tls: &TlsConfig) -> io::Result<BoxedTransport> {
    let config = client_config(tls)?;
    let name = tls.server_name.as_deref().unwrap_or(host).to_string();
    let server_name =
        ServerName::try_from(name).map_err(|e| other(format!("bad TLS server name: {e}")))?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(server_name, stream)
        .await?;
    Ok(Box::new(stream))
}
