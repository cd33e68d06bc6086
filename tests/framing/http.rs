//! The http framer: request heads, Content-Length and chunked bodies, limits, and the inputs that
//! could smuggle a request past a framer that reads them differently from the business process.

use crate::framer_checks;

use ccsd::framing::{self, FrameCheck, FrameError, Framer, HttpFramer, Progress};
use ccsd::settings::{ByteSize, ListenSettings, Settings};

use framer_checks::{
    assert_malformed_at_last_byte, assert_packets_found_at_every_split, refused_at_last_byte,
};

const MAX: usize = 1 << 20;

fn framer() -> HttpFramer {
    HttpFramer::new(8192, MAX)
}

#[test]
fn pipelined_requests_are_found_at_every_split_offset() {
    assert_packets_found_at_every_split(
        &framer(),
        &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=v\r\nhello\r\n0\r\nExpires: never\r\n\r\n",
            b"GET /lf HTTP/1.1\nHost: a\n\n",
            b"\r\nGET /after-empty-line HTTP/1.1\r\n\r\n",
            b"PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
        ],
    );
}

#[test]
fn a_body_that_looks_like_a_request_is_not_searched() {
    let body = b"GET /inner HTTP/1.1\r\n\r\n";
    let mut request =
        format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    request.extend_from_slice(body);
    assert_eq!(
        framer().check(&request),
        FrameCheck::Complete(request.len())
    );
}

#[test]
fn header_names_are_case_insensitive() {
    let request = b"POST / HTTP/1.1\r\ncOnTeNt-LeNgTh:3\r\n\r\nabc";
    assert_eq!(framer().check(request), FrameCheck::Complete(request.len()));
    let chunked = b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: Chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(framer().check(chunked), FrameCheck::Complete(chunked.len()));
}

#[test]
fn repeated_equal_content_lengths_are_one_length() {
    let request = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\nhi";
    assert_eq!(framer().check(request), FrameCheck::Complete(request.len()));
}

#[test]
fn content_length_and_transfer_encoding_together_are_malformed() {
    for head in [
        &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ] {
        assert_malformed_at_last_byte(&framer(), head);
    }
}

#[test]
fn content_lengths_that_differ_or_are_not_numbers_are_malformed() {
    for head in [
        &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: five\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n",
        b"POST / HTTP/1.1\r\nContent-Length:\r\n",
    ] {
        assert_malformed_at_last_byte(&framer(), head);
    }
}

#[test]
fn a_transfer_encoding_not_ending_in_chunked_is_malformed() {
    for head in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
    ] {
        assert_malformed_at_last_byte(&framer(), head);
    }
    let gzip_then_chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(
        framer().check(gzip_then_chunked),
        FrameCheck::Complete(gzip_then_chunked.len())
    );
}

#[test]
fn ambiguous_header_lines_are_malformed() {
    for head in [
        &b"GET / HTTP/1.1\r\nContent-Length : 5\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n",
    ] {
        assert_malformed_at_last_byte(&framer(), head);
    }
}

#[test]
fn bad_chunk_framing_is_malformed() {
    let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "x\r\n",
        "0x5\r\n",
        "5 x\r\n",
        "5\n",
        "5;a\rb\r\n",
        "3\r\nabcd",
        "3\r\nabc\n",
        "0\r\nTrailer: x\n",
    ] {
        assert_malformed_at_last_byte(&framer(), format!("{head}{body}").as_bytes());
    }
}

#[test]
fn a_head_of_exactly_http_max_header_passes_and_one_more_byte_is_oversize() {
    let framer = HttpFramer::new(64, MAX);
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(64 - 4, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(framer.check(&head), FrameCheck::Complete(64));

    let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long.resize(64, b'a');
    assert_eq!(
        refused_at_last_byte(&framer, &long),
        FrameError::Oversize {
            declared: 65,
            max: 64
        }
    );
}

#[test]
fn a_content_length_that_cannot_fit_is_oversize_when_the_head_ends() {
    let head = b"POST / HTTP/1.1\r\nContent-Length: 60\r\n\r\n";
    let exact = HttpFramer::new(8192, head.len() + 60);
    let mut request = head.to_vec();
    request.resize(head.len() + 60, b'b');
    assert_eq!(exact.check(&request), FrameCheck::Complete(request.len()));

    let short = HttpFramer::new(8192, head.len() + 59);
    assert_eq!(
        refused_at_last_byte(&short, head),
        FrameError::Oversize {
            declared: head.len() as u64 + 60,
            max: head.len() + 59
        }
    );
}

#[test]
fn a_chunk_that_cannot_fit_is_oversize_when_its_size_line_ends() {
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    // The chunk line, 16 bytes, its \r\n, the last chunk and the final \r\n.
    let request = [&head[..], b"10\r\n0123456789abcdef\r\n0\r\n\r\n"].concat();
    let exact = HttpFramer::new(8192, request.len());
    assert_eq!(exact.check(&request), FrameCheck::Complete(request.len()));

    let short = HttpFramer::new(8192, request.len() - 1);
    let size_line = head.len() + 4;
    assert_eq!(
        refused_at_last_byte(&short, &request[..size_line]),
        FrameError::Oversize {
            declared: request.len() as u64,
            max: request.len() - 1
        }
    );
}

#[test]
fn huge_lengths_saturate_instead_of_overflowing() {
    assert_eq!(
        framer().check(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        FrameCheck::Invalid(FrameError::Oversize {
            declared: u64::MAX,
            max: MAX
        })
    );
    let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n";
    assert!(matches!(
        framer().check(chunked),
        FrameCheck::Invalid(FrameError::Oversize { .. })
    ));
}

#[test]
fn http_max_header_defaults_to_8_kib_and_reaches_the_framer() {
    assert_eq!(ListenSettings::default().http_max_header, ByteSize(8 << 10));
    let listen = ListenSettings {
        framing: "http".to_owned(),
        http_max_header: ByteSize(100),
        ..ListenSettings::default()
    };
    let framer = framing::build(&listen).expect("http framer");
    assert_eq!(framer.name(), "http");
    let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long.resize(100, b'a');
    assert_eq!(
        framer.check(&long),
        FrameCheck::Invalid(FrameError::Oversize {
            declared: 101,
            max: 100
        })
    );
}

#[test]
fn http_max_header_below_64_bytes_is_refused_by_validation() {
    let err = Settings::from_toml_str("[[listen]]\nframing = \"http\"\nhttp_max_header = 63\n")
        .expect_err("too small");
    assert!(
        err.problems
            .iter()
            .any(|p| p.starts_with("listen[0].http_max_header:")),
        "{err}"
    );
    Settings::from_toml_str("[[listen]]\nframing = \"http\"\nhttp_max_header = \"16KiB\"\n")
        .expect("valid");
}

#[test]
fn a_header_name_with_a_byte_outside_rfc_9110_tchar_is_malformed() {
    for head in [
        &b"GET / HTTP/1.1\r\nHo\0st: a\r\n"[..],
        b"GET / HTTP/1.1\r\n\0: a\r\n",
        b"GET / HTTP/1.1\r\nX-\xc3\xa9: a\r\n",
        b"GET / HTTP/1.1\r\nX(y): a\r\n",
        b"GET / HTTP/1.1\r\nX\x7f: a\r\n",
        b"GET / HTTP/1.1\r\nX\"y: a\r\n",
    ] {
        assert_malformed_at_last_byte(&framer(), head);
    }
    let every_tchar = b"GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n";
    assert_eq!(
        framer().check(every_tchar),
        FrameCheck::Complete(every_tchar.len())
    );
}

/// Feeds `request` to `framer` in two reads, split at `split`, as a worker does; returns the
/// interim response asked for after each read.
fn interim_after_reads(
    framer: &HttpFramer,
    request: &[u8],
    split: usize,
) -> [Option<&'static [u8]>; 2] {
    let mut progress = Progress::default();
    let mut asked = [None, None];
    for (read, end) in [split, request.len()].into_iter().enumerate() {
        framer.check_from(&request[..end], &mut progress);
        asked[read] = progress.interim.take();
    }
    asked
}

const EXPECTING: &[u8] =
    b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn expect_100_continue_asks_for_an_interim_response_once_the_head_is_in_and_the_body_is_not() {
    let head = EXPECTING.len() - 5;
    let continue_ = Some(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]);
    // The head arrives, then the body: asked once, when the head is in.
    assert_eq!(
        interim_after_reads(&framer(), EXPECTING, head),
        [continue_, None]
    );
    assert_eq!(
        interim_after_reads(&framer(), EXPECTING, head + 2),
        [continue_, None]
    );
    // Half the head, then the rest with the body: the request is complete, nothing to ask.
    assert_eq!(
        interim_after_reads(&framer(), EXPECTING, head - 3),
        [None, None]
    );
    // Off by setting, and never for HTTP/1.0 (RFC 9110, section 10.1.1).
    let off = framer().with_continue(false);
    assert_eq!(interim_after_reads(&off, EXPECTING, head), [None, None]);
    let old = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(
        interim_after_reads(&framer(), old, old.len() - 1),
        [None, None]
    );
    let plain = b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(
        interim_after_reads(&framer(), plain, plain.len() - 1),
        [None, None]
    );
}

#[test]
fn http_continue_defaults_to_on_and_reaches_the_framer() {
    assert!(ListenSettings::default().http_continue);
    let listen = ListenSettings {
        framing: "http".to_owned(),
        http_continue: false,
        ..ListenSettings::default()
    };
    assert!(
        !HttpFramer::from_listen(&listen)
            .expect("builds")
            .sends_continue()
    );
    let settings =
        Settings::from_toml_str("[[listen]]\nframing = \"http\"\nhttp_continue = false\n")
            .expect("valid");
    assert!(!settings.listen[0].http_continue);
}

#[test]
fn a_long_chunk_extension_arriving_byte_by_byte_frames_as_in_one_read() {
    let mut request = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;".to_vec();
    request.resize(request.len() + 3000, b'x');
    request.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    let framer = framer();
    let mut progress = Progress::default();
    for end in 1..request.len() {
        assert_eq!(
            framer.check_from(&request[..end], &mut progress),
            FrameCheck::Incomplete
        );
    }
    assert_eq!(
        framer.check_from(&request, &mut progress),
        FrameCheck::Complete(request.len())
    );
}
