//! A minimal HTTP/1.1 client over plain sockets for the gateway's clients: one
//! request per connection (`Connection: close`), so a kill of the server shows
//! as an error on exactly the request it cut.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<u64>,
    pub body: String,
}

/// `METHOD PATH` with a bearer token, a JSON body and extra headers. `Err` when
/// the connection failed or was cut before a whole answer.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<Answer, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    // A server that hangs is a finding, not a reason to hang the harness.
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(raw: &str) -> Result<Answer, String> {
    let (head, rest) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("cut before the end of the headers ({} bytes)", raw.len()))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else {
        let n: usize = headers
            .get("content-length")
            .and_then(|n| n.parse().ok())
            .unwrap_or(rest.len());
        if rest.len() < n {
            return Err(format!("cut after {} of {n} body bytes", rest.len()));
        }
        rest[..n].to_string()
    };
    let retry_after = headers.get("retry-after").and_then(|s| s.parse().ok());
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

fn dechunk(mut s: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").ok_or("cut inside a chunk header")?;
        let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(out);
        }
        if rest.len() < n + 2 {
            return Err("cut inside a chunk".into());
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_answers_and_refuses_cut_ones() {
        let a = parse("HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((a.status, a.body.as_str()), (201, "{}"));
        assert!(parse("HTTP/1.1 201 Created\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(parse("HTTP/1.1 201 Cr").is_err());
        let c = parse("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(c.body, "ok");
    }
}
