//! The two HTTP calls a client makes to the signaling service before its WebSocket: the
//! catalog (`GET /api/titles`) and a session token (`POST /api/token`). Plain HTTP/1.1 with
//! `Connection: close` over a TCP stream, every step bounded.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why an HTTP call failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Nothing answered (refused, unreachable, timed out, cut off).
    #[error("cannot reach the signaling service at {addr}: {why}")]
    Unreachable {
        /// Where we tried.
        addr: SocketAddr,
        /// What went wrong.
        why: String,
    },
    /// It answered with something that is not an HTTP response.
    #[error("the signaling service at {addr} sent something that is not HTTP: {head:?}")]
    NotHttp {
        /// Where we tried.
        addr: SocketAddr,
        /// The start of what it sent.
        head: String,
    },
}

/// A response: its status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

/// Sends `method path` with an optional JSON body to `addr`; bounded by `limit` in all.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    limit: Duration,
) -> Result<Response, HttpError> {
    let unreachable = |why: String| HttpError::Unreachable { addr, why };
    let call = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let body = json_body.unwrap_or("");
        let content = if json_body.is_some() {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
        } else {
            String::new()
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{content}Connection: close\r\n\r\n"
        );
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        parse(addr, &String::from_utf8_lossy(&raw))
    };
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| unreachable(format!("no answer within {limit:?}")))?
}

fn parse(addr: SocketAddr, raw: &str) -> Result<Response, HttpError> {
    let not_http = || HttpError::NotHttp {
        addr,
        head: raw.chars().take(80).collect(),
    };
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(not_http)?;
    let status = head
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_http)?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(not_http)?
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

/// Joins a chunked body's chunks.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r = parse(addr(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").expect("plain");
        assert_eq!((r.status, r.body.as_str()), (200, "{}"));
        let r = parse(
            addr(),
            "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!((r.status, r.body.as_str()), (403, "abcde"));
    }

    #[test]
    fn refuses_what_is_not_http() {
        for raw in ["", "hello", "SSH-2.0-x\r\n\r\n", "HTTP/1.1 abc\r\n\r\n"] {
            assert!(
                matches!(parse(addr(), raw), Err(HttpError::NotHttp { .. })),
                "{raw:?}"
            );
        }
        let broken = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse(addr(), broken).is_err());
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let e = request(addr, "GET", "/", None, Duration::from_secs(2))
            .await
            .expect_err("nothing listens");
        assert!(matches!(e, HttpError::Unreachable { .. }), "{e}");
    }
}
