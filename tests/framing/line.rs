//! The line framer: one packet per `\n`-terminated line, at most `max_packet` bytes.

use crate::framer_checks;

use ccsd::framing::{self, FrameCheck, FrameError, Framer, LineFramer};
use ccsd::settings::{ByteSize, ListenSettings};

use framer_checks::{assert_packets_found_at_every_split, oversize, refused_at_last_byte};

#[test]
fn pipelined_lines_are_found_at_every_split_offset() {
    let framer = LineFramer::new(64);
    assert_packets_found_at_every_split(
        &framer,
        &[
            b"PING\r\n",
            b"\n",
            b"\r\n",
            b"hello world\n",
            b"\x00\xff binary\n",
            b"x\n",
        ],
    );
}

#[test]
fn carriage_return_before_the_newline_stays_in_the_packet() {
    let framer = LineFramer::new(64);
    assert_eq!(framer.check(b"a\r\nb"), FrameCheck::Complete(3));
    assert_eq!(framer.check(b"a\rb\n"), FrameCheck::Complete(4));
    assert_eq!(framer.check(b"a\r"), FrameCheck::Incomplete);
}

#[test]
fn a_line_of_exactly_max_packet_bytes_passes() {
    let framer = LineFramer::new(16);
    let mut line = vec![b'a'; 15];
    line.push(b'\n');
    assert_eq!(framer.check(&line), FrameCheck::Complete(16));
    line.extend_from_slice(b"next");
    assert_eq!(framer.check(&line), FrameCheck::Complete(16));
}

#[test]
fn max_packet_bytes_without_a_newline_are_oversize_at_once() {
    let framer = LineFramer::new(16);
    let err = refused_at_last_byte(&framer, &[b'a'; 16]);
    assert_eq!(
        err,
        FrameError::Oversize {
            declared: 17,
            max: 16
        }
    );
    assert_eq!(framer.check(&[b'a'; 1000]), oversize(17, 16));
}

#[test]
fn the_newline_past_max_packet_is_never_looked_for() {
    let framer = LineFramer::new(4);
    assert_eq!(framer.check(b"abcd\n"), oversize(5, 4));
    assert_eq!(framer.check(b"abc\n"), FrameCheck::Complete(4));
}

#[test]
fn build_makes_a_line_framer_from_max_packet() {
    let listen = ListenSettings {
        framing: "line".to_owned(),
        max_packet: ByteSize(100),
        ..ListenSettings::default()
    };
    let framer = framing::build(&listen).expect("line framer");
    assert_eq!(framer.name(), "line");
    assert_eq!(framer.max_packet(), 100);
}
