//! TLS on the gateway's own listener (`courier up --tls-cert/--tls-key`, or
//! `gateway.tls_cert_file` / `gateway.tls_key_file`), for deployments without a
//! TLS-terminating proxy in front: the server configuration read from PEM files,
//! and a listener that hands axum only connections whose handshake completed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

pub use rustls::ServerConfig;

/// A PEM file and the setting (or flag) that named it, for errors that say
/// what to fix and where.
pub struct PemFile<'a> {
    pub setting: &'a str,
    pub path: &'a Path,
}

impl PemFile<'_> {
    fn read(&self, what: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.path).map_err(|e| {
            format!(
                "{} {}: cannot read the {what}: {e}",
                self.setting,
                self.path.display()
            )
        })
    }
}

/// The server configuration for `cert` (a PEM certificate chain, the server's
/// own certificate first) and `key` (its PEM private key: PKCS#8, RSA or EC).
/// rustls's safe defaults (TLS 1.2 and 1.3) with the crypto provider named, as
/// courier's TLS clients do (`courier_sinks::tls`); HTTP/1.1 only, which is all
/// the gateway serves (WebSockets upgrade from it).
pub fn server_config(cert: PemFile<'_>, key: PemFile<'_>) -> Result<rustls::ServerConfig, String> {
    let chain = CertificateDer::pem_slice_iter(&cert.read("certificate chain")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{} {}: not a PEM certificate chain: {e}",
                cert.setting,
                cert.path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "{} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            cert.setting,
            cert.path.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key.read("private key")?).map_err(|e| {
        format!(
            "{} {}: no PEM private key (PKCS#8, RSA or EC) read: {e}",
            key.setting,
            key.path.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS protocol versions: {e}"))?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{} {} is not the private key of the certificate in {} {} ({e})",
            key.setting,
            key.path.display(),
            cert.setting,
            cert.path.display()
        ),
        e => format!(
            "{} {} with {} {}: {e}",
            cert.setting,
            cert.path.display(),
            key.setting,
            key.path.display()
        ),
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How long a client has to complete its handshake before it is dropped, so
/// a connection that never speaks TLS holds nothing for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// A listener for `axum::serve` whose connections are already through their
/// TLS handshake. Handshakes run in tasks of their own, so a slow or silent
/// client cannot hold up the others; a failed one is logged with its peer and
/// dropped, and takes nothing else down.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

/// The client's address on a TLS connection. axum gives the connect info of
/// its own listeners only, so [`peer_address`] turns this into the
/// `ConnectInfo<SocketAddr>` the per-IP rate limits read, as on plain HTTP.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        // The server stopping drops the receiver; the connection goes with it.
                        Ok(Ok(tls)) => drop(tx.send((tls, Peer(peer))).await),
                        // Debug, not warn: scanners and plaintext clients on a
                        // public port would fill the log.
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

/// As axum's own listener does: a connection reset before it was accepted is
/// nothing; anything else (out of file descriptors) is logged and waited out.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl Drop for TlsListener {
    /// The accepting task owns the socket: ending it frees the port when the
    /// gateway stops.
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // Only if the accepting task ended, which it does not while this
            // listener lives: wait for the shutdown instead of spinning.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer(self.local))
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        *stream.remote_addr()
    }
}

/// Middleware: the client's address as plain HTTP gives it, for the handlers
/// and limits that read `ConnectInfo<SocketAddr>`.
pub async fn peer_address(ConnectInfo(Peer(peer)): ConnectInfo<Peer>, mut req: Request) -> Request {
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}
