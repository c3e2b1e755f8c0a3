//! Just enough HTTP/1.1 for Prometheus scrapes and Kubernetes `httpGet` probes: one `GET` or
//! `HEAD` per connection, the request head read up to [`MAX_HEAD`] bytes within
//! [`READ_TIMEOUT`] (a body is never read), the answer sent with `Content-Length` and
//! `Connection: close` within [`WRITE_TIMEOUT`], then the connection closed. Anything else is
//! refused with the matching status (400, 405, 408, 431).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to take the answer (one that never reads must not hold a
/// connection slot forever).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The request methods we serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// A parsed request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string after `?`, empty when absent.
    pub query: String,
}

impl Request {
    /// The value of query parameter `key` (the first one), if present. No percent-decoding:
    /// our parameters are plain numbers.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// A plain-text answer; a line feed is added to a body without one.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Parses the request line of a complete head (`METHOD TARGET HTTP/1.x`).
pub fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = |why: &str| Response::text(400, format!("bad request: {why}"));
    let text = std::str::from_utf8(head).map_err(|_| bad("not UTF-8"))?;
    let line = text.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(bad("only HTTP/1.0 and HTTP/1.1 are spoken here"));
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Err(Response::text(405, "only GET and HEAD are served")),
    };
    if !target.starts_with('/') {
        return Err(bad("the target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
    })
}

/// Reads the request head (up to the empty line). `Err` is the answer to send instead.
pub async fn read_request(stream: &mut TcpStream) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = find_head_end(&buf) {
                return parse_head(&buf[..end]);
            }
            if buf.len() >= MAX_HEAD {
                return Err(Response::text(431, "request head too large"));
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(Response::text(400, "incomplete request")),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(Response::text(408, "request head not received in time")))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The bytes of an answer (`head_only`: no body, for `HEAD`).
pub fn encode(resp: &Response, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    if resp.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(resp.body.as_bytes());
    }
    bytes
}

/// Sends the answer and closes the connection, within [`WRITE_TIMEOUT`] (errors: the
/// client went away; ignored).
pub async fn write_response(stream: &mut TcpStream, resp: &Response, head_only: bool) {
    let bytes = encode(resp, head_only);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = parse_head(b"GET /readyz?threshold=0&x HTTP/1.1\r\nHost: a").unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/readyz");
        assert_eq!(r.param("threshold"), Some("0"));
        assert_eq!(r.param("x"), Some(""));
        assert_eq!(r.param("y"), None);
        let r = parse_head(b"HEAD /metrics HTTP/1.0").unwrap();
        assert_eq!(
            (r.method, r.path.as_str(), r.query.as_str()),
            (Method::Head, "/metrics", "")
        );
        assert_eq!(parse_head(b"POST / HTTP/1.1").unwrap_err().status, 405);
        assert_eq!(parse_head(b"GET / HTTP/2").unwrap_err().status, 400);
        assert_eq!(parse_head(b"GET /a b HTTP/1.1").unwrap_err().status, 400);
        assert_eq!(
            parse_head(b"GET http://x/ HTTP/1.1").unwrap_err().status,
            400
        );
        assert_eq!(parse_head(b"\xff").unwrap_err().status, 400);
    }

    #[test]
    fn responses() {
        let r = Response::text(503, "podbgp is not ready");
        let text = String::from_utf8(encode(&r, false)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 20\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n\
             podbgp is not ready\n"
        );
        let head = String::from_utf8(encode(&r, true)).unwrap();
        assert!(head.ends_with(
            "Content-Length: 20\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
        let r = Response::text(405, "no");
        assert!(
            String::from_utf8(encode(&r, false))
                .unwrap()
                .contains("Allow: GET, HEAD\r\n")
        );
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
