//! The HTTP example MCP (`examples/http_mcp`) behind the real ccsd on a `framing = "http"`
//! listener: curl, and raw sockets for pipelining, chunked bodies and `Connection: close`.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{Proc, TestEnv, assert_closed, connect, run_ok, tool};

/// ccsd with one HTTP listener and http_mcp serving it.
struct HttpServer {
    // Fields drop in order: the MCP and ccsd are stopped before the environment is removed.
    _mcp: Proc,
    ccsd: Proc,
    _env: TestEnv,
}

impl HttpServer {
    fn start() -> HttpServer {
        let env = TestEnv::new(2, "framing = \"http\"", "");
        let ccsd = env.start_ccsd();
        let mcp = env.start_mcp("http_mcp");
        HttpServer {
            _mcp: mcp,
            ccsd,
            _env: env,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.ccsd.addr()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }
}

/// One response read off a connection.
struct Response {
    /// The status line and headers, each line ending in `\r\n`, without the empty line.
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response; `head_only` for the answer to `HEAD`, which has no body.
fn read_response(r: &mut BufReader<TcpStream>, head_only: bool) -> Response {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read response head");
        assert!(line.ends_with("\r\n"), "truncated head: {head}{line:?}");
        if line == "\r\n" {
            break;
        }
        head += &line;
    }
    let mut response = Response {
        head,
        body: Vec::new(),
    };
    if !head_only {
        let len: usize = response
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        response.body = vec![0; len];
        r.read_exact(&mut response.body)
            .expect("read response body");
    }
    response
}

fn reader(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(connect(addr))
}

/// curl, silent except for errors.
fn curl() -> std::process::Command {
    let mut cmd = tool("curl", "curl");
    cmd.args(["-s", "-S"]);
    cmd
}

#[test]
fn curl_get_of_any_path_returns_the_hello_body() {
    let server = HttpServer::start();
    for path in ["/", "/some/where?x=1"] {
        let body = run_ok(curl().arg(server.url(path)));
        assert_eq!(body, "hello from ccsd\n");
    }
}

#[test]
fn curl_post_and_put_bodies_are_echoed() {
    let server = HttpServer::start();
    let body = run_ok(
        curl()
            .args(["--data-binary", "posted bytes\nline two"])
            .arg(server.url("/echo")),
    );
    assert_eq!(body, "posted bytes\nline two");
    let body = run_ok(
        curl()
            .args(["-X", "PUT", "--data-binary", "put body"])
            .arg(server.url("/")),
    );
    assert_eq!(body, "put body");
}

#[test]
fn curl_reuses_one_kept_alive_connection_for_two_urls() {
    let server = HttpServer::start();
    // `%{num_connects}` is how many new connections each transfer needed.
    let out = run_ok(
        curl()
            .args(["-o", "/dev/null", "-w", "%{num_connects}\n"])
            .arg(server.url("/a"))
            .args(["-o", "/dev/null"])
            .arg(server.url("/b")),
    );
    assert_eq!(out, "1\n0\n");
}

#[test]
fn pipelined_requests_get_responses_in_order_on_one_connection() {
    let server = HttpServer::start();
    let mut r = reader(server.addr());
    r.get_mut()
        .write_all(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
              HEAD /3 HTTP/1.1\r\nHost: x\r\n\r\n\
              DELETE /4 HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    let get = read_response(&mut r, false);
    assert!(get.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", get.head);
    assert_eq!(get.header("Content-Type"), Some("text/plain"));
    assert_eq!(get.body, b"hello from ccsd\n");
    assert_eq!(read_response(&mut r, false).body, b"abc");
    let head = read_response(&mut r, true);
    assert_eq!(head.header("Content-Length"), Some("16"));
    let delete = read_response(&mut r, false);
    assert!(
        delete
            .head
            .starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{}",
        delete.head
    );
    r.get_mut()
        .write_all(b"GET /5 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).body, b"hello from ccsd\n");
}

#[test]
fn chunked_post_is_decoded_and_echoed_with_a_length() {
    let server = HttpServer::start();
    let mut r = reader(server.addr());
    let request = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                    6\r\nhello \r\n7;ext=1\r\nchunked\r\n0\r\nX-Trailer: t\r\n\r\n";
    // Split across writes, inside the chunk data and inside the chunk size line.
    for part in [&request[..60], &request[60..75], &request[75..]] {
        r.get_mut().write_all(part).unwrap();
    }
    let response = read_response(&mut r, false);
    assert_eq!(response.header("Content-Length"), Some("13"));
    assert_eq!(response.body, b"hello chunked");
}

#[test]
fn connection_close_gets_the_response_then_the_connection_closes() {
    let server = HttpServer::start();
    let mut r = reader(server.addr());
    r.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut r, false);
    assert_eq!(response.header("Connection"), Some("close"));
    assert_eq!(response.body, b"hello from ccsd\n");
    assert_closed(r.get_mut());
}

#[test]
fn http_1_0_without_keep_alive_is_closed_after_the_response() {
    let server = HttpServer::start();
    let mut r = reader(server.addr());
    r.get_mut().write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut r, false);
    assert_eq!(response.header("Connection"), Some("close"));
    assert_closed(r.get_mut());
}

#[test]
fn malformed_request_gets_400_then_the_connection_closes() {
    let server = HttpServer::start();
    let mut r = reader(server.addr());
    r.get_mut()
        .write_all(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n")
        .unwrap();
    let response = read_response(&mut r, false);
    assert!(
        response.head.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{}",
        response.head
    );
    assert_eq!(response.header("Connection"), Some("close"));
    assert_closed(r.get_mut());
}
