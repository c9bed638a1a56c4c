//! The push provider over HTTP/1.1 or HTTPS (hyper with rustls, pooled keep-alive
//! connections): one POST per job with a JSON body and the job id as
//! `Idempotency-Key`. An `https://` endpoint is verified against the system's
//! roots or a CA file of the operator's, and courier can present a client
//! certificate (mutual TLS), as providers and private relays ask.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_processors::push::{Answer, NoAnswer, PushProvider};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri, header};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Most of a provider's answer body kept for a dead letter.
const MAX_ANSWER: usize = 2_048;

/// How an `https://` endpoint is trusted and how courier identifies itself to
/// it (the `[push]` keys of the same names). Every file is PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates that verify the endpoint instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Certificate chain presented to the endpoint; with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// Private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
}

impl ClientTls {
    /// Whether any key is set (they only mean something for `https://`).
    fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert_file.is_some() || self.client_key_file.is_some()
    }

    /// The rustls configuration: roots, then the client certificate if any.
    /// Errors name the key and the file.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let client = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                cert.as_path(),
                key.as_path(),
                "push.client_cert_file and push.client_key_file",
            )),
            _ => {
                return Err(
                    "push.client_cert_file and push.client_key_file go together: \
                            set both or neither"
                        .into(),
                );
            }
        };
        crate::tls::client_config("push.ca_file", self.ca_file.as_deref(), client)
    }
}

/// POSTs jobs to one endpoint.
pub struct HttpProvider {
    endpoint: String,
    uri: Uri,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpProvider {
    /// A provider for `endpoint` (`http://` or `https://host:port/path`) with a
    /// per-request deadline; an `https://` endpoint is verified against the
    /// system's roots.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, String> {
        Self::with_tls(endpoint, timeout, &ClientTls::default())
    }

    /// A provider for `endpoint` with a per-request deadline, trusting and
    /// identifying itself as `tls` says. Anything else than an HTTP(S) URL, or
    /// TLS settings for a plain-HTTP endpoint, is refused with the reason.
    pub fn with_tls(endpoint: &str, timeout: Duration, tls: &ClientTls) -> Result<Self, String> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| format!("push.endpoint `{endpoint}` is not a URL: {e}"))?;
        let config = match uri.scheme_str() {
            Some("https") => tls.client_config()?,
            Some("http") if tls.is_set() => {
                return Err(format!(
                    "push.endpoint `{endpoint}` is plain http, so push.ca_file,                      push.client_cert_file and push.client_key_file would do nothing:                      use https:// or unset them"
                ));
            }
            // Never used: the client only speaks TLS to https:// URLs.
            Some("http") => crate::tls::unused_client_config()?,
            _ => {
                return Err(format!(
                    "push.endpoint `{endpoint}` must start with http:// or https://"
                ));
            }
        };
        if uri.host().is_none() {
            return Err(format!("push.endpoint `{endpoint}` has no host"));
        }
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        // The TLS connector hands https:// to rustls over this TCP connector.
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpProvider {
            endpoint: endpoint.to_string(),
            uri,
            client,
            timeout,
        })
    }
}

/// `Retry-After` as delta-seconds; the HTTP-date form is not honoured (the caller
/// then backs off as for a 5xx).
fn retry_after(v: Option<&header::HeaderValue>) -> Option<Duration> {
    let secs: u64 = v?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[async_trait]
impl PushProvider for HttpProvider {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn post(&self, job_id: &str, body: Vec<u8>) -> Result<Answer, NoAnswer> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", job_id)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| NoAnswer {
                timeout: false,
                message: format!("building the request for job {job_id}: {e}"),
            })?;
        let call = async {
            let response = self.client.request(request).await.map_err(|e| NoAnswer {
                timeout: false,
                message: format!("POST {}: {e}", self.endpoint),
            })?;
            let status = response.status().as_u16();
            let retry_after = retry_after(response.headers().get(header::RETRY_AFTER));
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| NoAnswer {
                    timeout: false,
                    message: format!("reading the answer of POST {}: {e}", self.endpoint),
                })?
                .to_bytes();
            let mut body =
                String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ANSWER)]).into_owned();
            if bytes.len() > MAX_ANSWER {
                body.push('…');
            }
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(NoAnswer {
                timeout: true,
                message: format!(
                    "POST {}: no answer within {} ms",
                    self.endpoint,
                    self.timeout.as_millis()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        let t = Duration::from_secs(1);
        assert!(HttpProvider::new("http://127.0.0.1:1/push", t).is_ok());
        assert!(HttpProvider::new("https://push.example/x", t).is_ok());
        let e = HttpProvider::new("ftp://x/y", t).err().unwrap();
        assert!(e.contains("must start with http:// or https://"), "{e}");
        let e = HttpProvider::new("not a url", t).err().unwrap();
        assert!(e.contains("is not a URL"), "{e}");
    }

    #[test]
    fn tls_settings_that_cannot_apply_are_refused_with_the_key() {
        let t = Duration::from_secs(1);
        let dir = tempfile::tempdir().unwrap();
        let ca = ClientTls {
            ca_file: Some(dir.path().join("ca.pem")),
            ..ClientTls::default()
        };
        let e = HttpProvider::with_tls("http://127.0.0.1:1/push", t, &ca)
            .err()
            .unwrap();
        assert!(
            e.contains("plain http") && e.contains("push.ca_file"),
            "{e}"
        );
        let e = HttpProvider::with_tls("https://127.0.0.1:1/push", t, &ca)
            .err()
            .unwrap();
        assert!(e.contains("push.ca_file") && e.contains("ca.pem"), "{e}");
        std::fs::write(dir.path().join("ca.pem"), "not pem").unwrap();
        let e = HttpProvider::with_tls("https://127.0.0.1:1/push", t, &ca)
            .err()
            .unwrap();
        assert!(e.contains("no PEM certificate"), "{e}");
        let half = ClientTls {
            client_cert_file: Some(dir.path().join("c.pem")),
            ..ClientTls::default()
        };
        let e = HttpProvider::with_tls("https://127.0.0.1:1/push", t, &half)
            .err()
            .unwrap();
        assert!(e.contains("set both or neither"), "{e}");
    }

    #[test]
    fn retry_after_takes_seconds_and_ignores_dates() {
        let v = |s: &str| header::HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after(Some(&v(" 3 "))), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(&v("Wed, 21 Oct 2026 07:28:00 GMT"))), None);
        assert_eq!(retry_after(None), None);
    }
}
