//! The resp framer: RESP2 arrays of bulk strings and inline commands, limits and bad input.

use crate::framer_checks;

use ccsd::framing::{
    FrameCheck, FrameError, Framer, RESP_MAX_ELEMENTS, RESP_MAX_INLINE, RespFramer,
};

use framer_checks::{
    assert_malformed_at_last_byte, assert_packets_found_at_every_split, refused_at_last_byte,
};

const MAX: usize = 1 << 20;

/// A request array of bulk strings, as a client library writes it.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn pipelined_arrays_and_inline_commands_are_found_at_every_split_offset() {
    let framer = RespFramer::new(MAX);
    let set = command(&[b"SET", b"key", b"a\r\nvalue\r\n"]);
    let get = command(&[b"GET", b"key"]);
    let empty_arg = command(&[b"ECHO", b""]);
    assert_packets_found_at_every_split(
        &framer,
        &[
            &set,
            b"PING\r\n",
            &get,
            b"*0\r\n",
            b"*-1\r\n",
            b"\r\n",
            &empty_arg,
            b"SET k v\n",
        ],
    );
}

#[test]
fn bulk_strings_are_binary_safe() {
    let framer = RespFramer::new(MAX);
    let packet = command(&[b"SET", b"k", b"*2\r\n$1\r\n\x00\xff"]);
    assert_eq!(framer.check(&packet), FrameCheck::Complete(packet.len()));
}

#[test]
fn elements_other_than_bulk_strings_are_malformed() {
    let framer = RespFramer::new(MAX);
    for bytes in [
        &b"*1\r\n:"[..],
        b"*1\r\n+",
        b"*2\r\n$1\r\na\r\n*",
        b"*1\r\nG",
    ] {
        assert_malformed_at_last_byte(&framer, bytes);
    }
}

#[test]
fn bad_counts_and_lengths_are_malformed_as_soon_as_a_byte_is_wrong() {
    let framer = RespFramer::new(MAX);
    for bytes in [
        &b"*x"[..],
        b"*\r",
        b"*01",
        b"*-2",
        b"*-1\n",
        b"*1 ",
        b"*1\rx",
        b"*1\r\n$-",
        b"*1\r\n$01",
        b"*1\r\n$a",
        b"*1\r\n$\r",
        b"*1\r\n$3\n",
    ] {
        assert_malformed_at_last_byte(&framer, bytes);
    }
}

#[test]
fn a_bulk_string_not_followed_by_crlf_is_malformed() {
    let framer = RespFramer::new(MAX);
    assert_malformed_at_last_byte(&framer, b"*1\r\n$2\r\nabc");
    assert_malformed_at_last_byte(&framer, b"*1\r\n$2\r\nab\rb");
}

#[test]
fn an_array_of_1048576_elements_is_accepted_and_one_more_is_malformed() {
    let framer = RespFramer::new(64 << 20);
    let count = format!("*{RESP_MAX_ELEMENTS}\r\n");
    assert_eq!(framer.check(count.as_bytes()), FrameCheck::Incomplete);
    let over = format!("*{}", RESP_MAX_ELEMENTS + 1);
    assert_malformed_at_last_byte(&framer, over.as_bytes());
}

#[test]
fn a_request_of_exactly_max_packet_passes() {
    let packet = command(&[b"SET", b"k", &[b'v'; 100]]);
    let framer = RespFramer::new(packet.len());
    assert_eq!(framer.check(&packet), FrameCheck::Complete(packet.len()));
}

#[test]
fn a_bulk_length_over_max_packet_is_oversize_when_its_line_ends() {
    let packet = command(&[b"SET", b"k", &[b'v'; 100]]);
    let max = packet.len() - 1;
    let framer = RespFramer::new(max);
    let header_end = packet.len() - 102;
    assert_eq!(
        refused_at_last_byte(&framer, &packet[..header_end]),
        FrameError::Oversize {
            declared: packet.len() as u64,
            max
        }
    );
}

#[test]
fn a_count_whose_shortest_elements_cannot_fit_is_oversize_at_once() {
    // Ten elements take at least 4 + 10 * 6 = 64 bytes.
    let framer = RespFramer::new(63);
    assert_eq!(
        refused_at_last_byte(&framer, b"*10\r\n"),
        FrameError::Oversize {
            declared: 65,
            max: 63
        }
    );
    assert_eq!(
        RespFramer::new(65).check(b"*10\r\n"),
        FrameCheck::Incomplete
    );
}

#[test]
fn a_bulk_length_above_max_packet_is_oversize_from_its_digits() {
    let framer = RespFramer::new(1000);
    assert_eq!(
        refused_at_last_byte(&framer, b"*1\r\n$1001"),
        FrameError::Oversize {
            declared: 1001,
            max: 1000
        }
    );
}

#[test]
fn an_inline_command_of_64_kib_passes_and_one_more_byte_is_oversize() {
    let framer = RespFramer::new(MAX);
    let mut line = vec![b'a'; RESP_MAX_INLINE - 2];
    line.extend_from_slice(b"\r\n");
    assert_eq!(framer.check(&line), FrameCheck::Complete(RESP_MAX_INLINE));
    assert_eq!(
        refused_at_last_byte(&framer, &vec![b'a'; RESP_MAX_INLINE]),
        FrameError::Oversize {
            declared: RESP_MAX_INLINE as u64 + 1,
            max: RESP_MAX_INLINE
        }
    );
}

#[test]
fn the_framer_names_itself_resp() {
    assert_eq!(RespFramer::new(MAX).name(), "resp");
    assert_eq!(RespFramer::new(MAX).max_packet(), MAX);
}
