//! TLS client configurations (rustls, no OpenSSL) for the sinks that reach a
//! server over the network: the push provider (`https://`) and Cassandra
//! (client-to-node encryption). One place decides the crypto provider, how roots
//! are found and how a client certificate is loaded.

use std::path::Path;
use std::sync::Arc;

use courier_pipeline::secret::expand_home;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// rustls's builder with courier's crypto provider, named rather than left to the
/// process-wide default: a second provider somewhere in the dependency tree could
/// otherwise make that default ambiguous.
fn builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS protocol versions: {e}"))
}

/// A client configuration that trusts the certificates of the PEM file `ca_file`
/// (`ca_key` names the setting in errors, e.g. `push.ca_file`) or, without one,
/// the system's roots; and presents `client` (certificate chain file, key file,
/// and the two settings' names) when given.
pub fn client_config(
    ca_key: &str,
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path, &str)>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let path = expand_home(path);
            for cert in read_certs(ca_key, &path)? {
                roots.add(cert).map_err(|e| {
                    format!(
                        "{ca_key} {}: not a usable CA certificate: {e}",
                        path.display()
                    )
                })?;
            }
        }
        None => {
            // Unreadable entries of the system store are skipped: one bad file
            // there must not stop courier reaching a server the others verify.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(format!(
                    "TLS: no CA certificates in the system's store (install ca-certificates) \
                     and no {ca_key}"
                ));
            }
        }
    }
    let builder = builder()?.with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key, keys)) => {
            let (cert, key) = (expand_home(cert), expand_home(key));
            let chain = read_certs(keys, &cert)?;
            let key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| format!("{keys}: {}: no private key read: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{keys}: {e}"))
        }
    }
}

/// A configuration that is never used to connect (a plain-HTTP endpoint), so it
/// needs no roots.
pub fn unused_client_config() -> Result<rustls::ClientConfig, String> {
    Ok(builder()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// Every certificate of a PEM file, at least one.
fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}
