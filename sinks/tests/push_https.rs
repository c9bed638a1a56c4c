//! The push provider over HTTPS against a real TLS server started by the test on
//! 127.0.0.1:0, with a CA and certificates generated here (rcgen): an endpoint
//! verified by `push.ca_file` answers, one the client's roots do not vouch for is
//! refused before any request leaves, and a server that asks for a client
//! certificate gets courier's (`push.client_cert_file`, `push.client_key_file`) and
//! refuses a client without one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use courier_processors::push::PushProvider;
use courier_sinks::push::{ClientTls, HttpProvider};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA that signs server and client certificates, written as PEM files.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), issuer.pem()).unwrap();
        Ca {
            issuer,
            dir: dir.to_path_buf(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A leaf certificate for `sans` (server or client), its chain and key
    /// written to `NAME.pem` and `NAME.key`.
    fn leaf(&self, name: &str, sans: &[&str], client: bool) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.file(&format!("{name}.pem")),
            self.file(&format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// An HTTPS push provider answering 202 to every POST; `client_ca`: it demands a
/// client certificate issued by that CA.
struct Server {
    addr: SocketAddr,
    /// Requests answered.
    answered: Arc<AtomicUsize>,
    /// How many certificates the client presented, one entry per request.
    clients: Arc<Mutex<Vec<Option<usize>>>>,
}

async fn serve(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Server {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let clients = Arc::new(Mutex::new(Vec::new()));
    let (a, c) = (answered.clone(), clients.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, answered, clients) = (acceptor.clone(), a.clone(), c.clone());
            tokio::spawn(async move {
                // A refused handshake ends here: the client sees it as no answer.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls.get_ref().1.peer_certificates().map(<[_]>::len);
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (answered, clients) = (answered.clone(), clients.clone());
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        assert!(!body.is_empty(), "a job body");
                        clients.lock().unwrap().push(peer);
                        answered.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .status(StatusCode::ACCEPTED)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        addr,
        answered,
        clients,
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn https_endpoint_verified_by_the_configured_ca_answers_and_an_unknown_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "push-ca");
    let (cert, key) = ca.leaf("provider", &["127.0.0.1", "localhost"], false);
    let server = serve(&cert, &key, None).await;

    // By IP address and by name: the certificate names both.
    for host in [
        server.addr.to_string(),
        format!("localhost:{}", server.addr.port()),
    ] {
        let tls = ClientTls {
            ca_file: Some(ca.file("push-ca.pem")),
            ..ClientTls::default()
        };
        let p = HttpProvider::with_tls(&format!("https://{host}/push"), TIMEOUT, &tls).unwrap();
        for job in ["job-1", "job-2"] {
            let a = p.post(job, br#"{"job_id":"x"}"#.to_vec()).await.unwrap();
            assert_eq!(a.status, 202, "{host}: {}", a.body);
        }
    }
    assert_eq!(server.answered.load(Ordering::SeqCst), 4);

    // The system's roots do not know the test's CA, nor does another CA: the
    // handshake fails and no request reaches the server.
    let url = format!("https://{}/push", server.addr);
    let other = Ca::new(dir.path(), "other-ca");
    let tls = ClientTls {
        ca_file: Some(other.file("other-ca.pem")),
        ..ClientTls::default()
    };
    for p in [
        HttpProvider::new(&url, TIMEOUT).unwrap(),
        HttpProvider::with_tls(&url, TIMEOUT, &tls).unwrap(),
    ] {
        let e = p.post("job-3", b"{}".to_vec()).await.unwrap_err();
        assert!(!e.timeout, "{}", e.message);
        assert!(
            e.message.contains(&url),
            "names the endpoint: {}",
            e.message
        );
    }
    assert_eq!(server.answered.load(Ordering::SeqCst), 4);

    // A certificate for another name is refused too.
    let (cert, key) = ca.leaf("elsewhere", &["push.example"], false);
    let wrong = serve(&cert, &key, None).await;
    let tls = ClientTls {
        ca_file: Some(ca.file("push-ca.pem")),
        ..ClientTls::default()
    };
    let p = HttpProvider::with_tls(&format!("https://{}/push", wrong.addr), TIMEOUT, &tls).unwrap();
    let e = p.post("job-4", b"{}".to_vec()).await.unwrap_err();
    assert!(!e.timeout, "{}", e.message);
    assert_eq!(wrong.answered.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_provider_that_demands_a_client_certificate_gets_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "push-ca");
    let clients_ca = Ca::new(dir.path(), "clients-ca");
    let (cert, key) = ca.leaf("provider", &["127.0.0.1"], false);
    let server = serve(&cert, &key, Some(&clients_ca.file("clients-ca.pem"))).await;
    let url = format!("https://{}/push", server.addr);

    // Without a certificate, or with one the provider's CA did not issue: refused.
    let (stranger, stranger_key) = ca.leaf("stranger", &["stranger"], true);
    for tls in [
        ClientTls {
            ca_file: Some(ca.file("push-ca.pem")),
            ..ClientTls::default()
        },
        ClientTls {
            ca_file: Some(ca.file("push-ca.pem")),
            client_cert_file: Some(stranger),
            client_key_file: Some(stranger_key),
        },
    ] {
        let p = HttpProvider::with_tls(&url, TIMEOUT, &tls).unwrap();
        let e = p.post("job-1", b"{}".to_vec()).await.unwrap_err();
        assert!(!e.timeout, "{}", e.message);
    }
    assert_eq!(server.answered.load(Ordering::SeqCst), 0);

    // With courier's certificate: accepted, and the server saw it.
    let (mine, mine_key) = clients_ca.leaf("courier-push", &["courier-push"], true);
    let tls = ClientTls {
        ca_file: Some(ca.file("push-ca.pem")),
        client_cert_file: Some(mine),
        client_key_file: Some(mine_key),
    };
    let p = HttpProvider::with_tls(&url, TIMEOUT, &tls).unwrap();
    let a = p.post("job-2", b"{}".to_vec()).await.unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(*server.clients.lock().unwrap(), vec![Some(1)]);
}
