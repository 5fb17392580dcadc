//! The node's HTTP endpoint: the RTT probe and the Prometheus metrics.
//!
//! Clients time a `GET /probe` before asking signaling for a session, so assignment can
//! prefer the node with the shortest round trip; it answers `204 No Content` with CORS headers
//! (the page is served by signaling, on another origin). `GET /metrics` answers the node's
//! metrics in the Prometheus text format. It never reads more than one small request per
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head read before answering.
const MAX_REQUEST_BYTES: usize = 2048;

const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\
Access-Control-Allow-Origin: *\r\n\
Cache-Control: no-store\r\n\
Timing-Allow-Origin: *\r\n\
Connection: close\r\n\r\n";

const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Binds the probe endpoint; serve it with [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Renders the metrics page.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Answers probes (and metrics, with `metrics`) until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Option<MetricsFn>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, metrics.clone()));
            }
            Err(e) => {
                tracing::warn!("probe endpoint: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: Option<MetricsFn>) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while len < buf.len() {
            match stream.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        return true;
                    }
                }
            }
        }
        false
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let head = &buf[..len];
    let page;
    let reply = if head.starts_with(b"GET /probe") || head.starts_with(b"OPTIONS /probe") {
        NO_CONTENT
    } else if let (true, Some(render)) = (head.starts_with(b"GET /metrics "), &metrics) {
        let body = render();
        page = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        page.as_bytes()
    } else {
        NOT_FOUND
    };
    let _ = stream.write_all(reply).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_probe_with_cors_and_404_otherwise() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics: MetricsFn = Arc::new(|| "stratus_node_sessions 0\n".to_string());
        let server = tokio::spawn(serve(listener, Some(metrics)));
        for (path, want) in [("/probe", "204"), ("/other", "404"), ("/metrics", "200")] {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut out = String::new();
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                s.read_to_string(&mut out),
            )
            .await
            .expect("in time")
            .expect("read");
            assert!(out.starts_with(&format!("HTTP/1.1 {want}")), "{out}");
            if want == "204" {
                assert!(out.contains("Access-Control-Allow-Origin: *"));
            }
            if want == "200" {
                assert!(out.ends_with("stratus_node_sessions 0\n"), "{out}");
            }
        }
        server.abort();
    }
}
