//! The push provider over plain HTTP/1.1 (hyper, pooled keep-alive connections):
//! one POST per job with a JSON body and the job id as `Idempotency-Key`.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_processors::push::{Answer, NoAnswer, PushProvider};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Most of a provider's answer body kept for a dead letter.
const MAX_ANSWER: usize = 2_048;

/// POSTs jobs to one endpoint.
pub struct HttpProvider {
    endpoint: String,
    uri: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpProvider {
    /// A provider for `endpoint` (`http://host:port/path`) with a per-request
    /// deadline. Anything else than a plain-HTTP URL is refused with the reason.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, String> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| format!("push.endpoint `{endpoint}` is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "push.endpoint `{endpoint}`: https needs TLS, which this build leaves out \
                     (no OpenSSL here); use http:// (e.g. a local relay)"
                ));
            }
            _ => {
                return Err(format!(
                    "push.endpoint `{endpoint}` must start with http://"
                ));
            }
        }
        if uri.host().is_none() {
            return Err(format!("push.endpoint `{endpoint}` has no host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
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
    fn only_plain_http_urls_are_accepted() {
        let t = Duration::from_secs(1);
        assert!(HttpProvider::new("http://127.0.0.1:1/push", t).is_ok());
        let e = HttpProvider::new("https://push.example/x", t)
            .err()
            .unwrap();
        assert!(e.contains("https needs TLS"), "{e}");
        let e = HttpProvider::new("ftp://x/y", t).err().unwrap();
        assert!(e.contains("must start with http://"), "{e}");
        let e = HttpProvider::new("not a url", t).err().unwrap();
        assert!(e.contains("is not a URL"), "{e}");
    }

    #[test]
    fn retry_after_takes_seconds_and_ignores_dates() {
        let v = |s: &str| header::HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after(Some(&v(" 3 "))), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(&v("Wed, 21 Oct 2026 07:28:00 GMT"))), None);
        assert_eq!(retry_after(None), None);
    }
}
