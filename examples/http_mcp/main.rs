//! HTTP MCP: a minimal HTTP/1.1 origin server behind ccsd.
//!
//! ```text
//! cargo run --example http_mcp -- --config my.toml
//! ```
//!
//! It reads the same settings file as ccsd; give ccsd a listener with `framing = "http"`, so
//! that each packet is one whole request. Answers:
//! - `GET` of any path: `200 OK`, `text/plain`, body `hello from ccsd\n`;
//! - `HEAD`: the same headers without the body;
//! - `POST` and `PUT`: `200 OK` echoing the request body (a chunked body is decoded and sent
//!   back with a `Content-Length`);
//! - any other method: `405 Method Not Allowed`;
//! - a malformed request: `400 Bad Request` saying why, then the connection is closed.
//!
//! Connections are kept alive as HTTP/1.1 says (HTTP/1.0 only with `Connection: keep-alive`);
//! after a response to `Connection: close` the connection is closed once the response is written.

#[path = "../common/mod.rs"]
mod common;
mod request;

use std::io::Write;
use std::process::ExitCode;

use ccsd::mcp::service::{After, Service};

/// The body of every `GET`.
const HELLO: &[u8] = b"hello from ccsd\n";

/// The HTTP service; it keeps only a buffer for decoding chunked bodies.
#[derive(Debug, Default)]
struct Http {
    chunked_body: Vec<u8>,
}

/// A response about to be written.
struct Response<'a> {
    status: &'a str,
    content_type: &'a [u8],
    body: &'a [u8],
    /// Send the headers only (`HEAD`); `Content-Length` still gives the body's length.
    head_only: bool,
    /// An extra header line, without its line end.
    extra_header: Option<&'a str>,
}

impl Service for Http {
    const NAME: &'static str = "http_mcp";

    fn handle(&mut self, packet: &[u8], reply: &mut Vec<u8>) -> After {
        let req = match request::parse(packet, &mut self.chunked_body) {
            Ok(req) => req,
            Err(why) => {
                let mut body = [0u8; 128];
                let len = {
                    let mut cursor = &mut body[..];
                    let _ = writeln!(cursor, "bad request: {why}");
                    128 - cursor.len()
                };
                let response = Response {
                    status: "400 Bad Request",
                    content_type: b"text/plain",
                    body: &body[..len],
                    head_only: false,
                    extra_header: None,
                };
                write_response(reply, &response, After::Close, false);
                return After::Close;
            }
        };
        let after = if req.keep_alive {
            After::KeepOpen
        } else {
            After::Close
        };
        let response = match req.method {
            b"GET" | b"HEAD" => Response {
                status: "200 OK",
                content_type: b"text/plain",
                body: HELLO,
                head_only: req.method == b"HEAD",
                extra_header: None,
            },
            b"POST" | b"PUT" => Response {
                status: "200 OK",
                content_type: req.content_type.unwrap_or(b"application/octet-stream"),
                body: req.body,
                head_only: false,
                extra_header: None,
            },
            _ => Response {
                status: "405 Method Not Allowed",
                content_type: b"text/plain",
                body: b"method not allowed\n",
                head_only: false,
                extra_header: Some("Allow: GET, HEAD, POST, PUT"),
            },
        };
        write_response(reply, &response, after, req.http_1_0);
        after
    }
}

/// Appends `response` to `out`, with the `Connection` header `after` and the client's version
/// call for: `close` when closing, `keep-alive` for an HTTP/1.0 client kept open.
fn write_response(out: &mut Vec<u8>, response: &Response<'_>, after: After, http_1_0: bool) {
    let _ = write!(out, "HTTP/1.1 {}\r\nContent-Type: ", response.status);
    out.extend_from_slice(response.content_type);
    let _ = write!(out, "\r\nContent-Length: {}\r\n", response.body.len());
    if let Some(line) = response.extra_header {
        let _ = write!(out, "{line}\r\n");
    }
    match after {
        After::Close => out.extend_from_slice(b"Connection: close\r\n"),
        After::KeepOpen if http_1_0 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        After::KeepOpen => {}
    }
    out.extend_from_slice(b"\r\n");
    if !response.head_only {
        out.extend_from_slice(response.body);
    }
}

fn main() -> ExitCode {
    common::run(&mut Http::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(packet: &[u8]) -> (String, After) {
        let mut out = Vec::new();
        let after = Http::default().handle(packet, &mut out);
        (String::from_utf8(out).unwrap(), after)
    }

    #[test]
    fn get_answers_hello_and_keeps_the_connection() {
        assert_eq!(
            answer(b"GET /any/path HTTP/1.1\r\nHost: x\r\n\r\n"),
            (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\n\
                 hello from ccsd\n"
                    .into(),
                After::KeepOpen
            )
        );
    }

    #[test]
    fn head_sends_the_get_headers_without_body() {
        let (r, _) = answer(b"HEAD / HTTP/1.1\r\n\r\n");
        assert!(r.ends_with("Content-Length: 16\r\n\r\n"), "{r}");
    }

    #[test]
    fn post_and_put_echo_the_body_with_its_type() {
        let (r, _) = answer(b"PUT / HTTP/1.1\r\nContent-Type: a/b\r\nContent-Length: 3\r\n\r\nabc");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n"),
            "{r}"
        );
        assert!(r.ends_with("Content-Length: 3\r\n\r\nabc"), "{r}");
    }

    #[test]
    fn other_methods_get_405() {
        let (r, after) = answer(b"DELETE / HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: GET, HEAD, POST, PUT\r\n"), "{r}");
        assert_eq!(after, After::KeepOpen);
    }

    #[test]
    fn connection_close_and_http_1_0_close_after_the_response() {
        let (r, after) = answer(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
        assert_eq!(after, After::Close);
        assert_eq!(answer(b"GET / HTTP/1.0\r\n\r\n").1, After::Close);
        let (r, after) = answer(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(r.contains("\r\nConnection: keep-alive\r\n"), "{r}");
        assert_eq!(after, After::KeepOpen);
    }

    #[test]
    fn malformed_request_gets_400_and_closes() {
        let (r, after) = answer(b"GET / HTTP/9\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
        assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
        assert!(
            r.ends_with("bad request: not HTTP/1.0 or HTTP/1.1\n"),
            "{r}"
        );
        assert_eq!(after, After::Close);
    }
}
