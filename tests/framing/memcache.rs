//! The memcache framer: command lines, storage commands with their data blocks, limits.

use crate::framer_checks;

use ccsd::framing::{FrameCheck, FrameError, Framer, MEMCACHE_MAX_LINE, MemcacheFramer};

use framer_checks::{
    assert_malformed_at_last_byte, assert_packets_found_at_every_split, oversize,
    refused_at_last_byte,
};

const MAX: usize = 1 << 20;

#[test]
fn pipelined_commands_and_data_blocks_are_found_at_every_split_offset() {
    let framer = MemcacheFramer::new(MAX);
    assert_packets_found_at_every_split(
        &framer,
        &[
            b"get a b c\r\n",
            b"set k 0 0 5\r\nhello\r\n",
            b"gets k\r\n",
            b"add k 1 60 0 noreply\r\n\r\n",
            b"cas k 0 0 3 42\r\nabc\r\n",
            b"append k 0 0 2\nxy\r\n",
            b"incr n 1\n",
            b"ms k 4 T60 F5\r\nabcd\r\n",
            b"version\r\n",
        ],
    );
}

#[test]
fn a_data_block_may_hold_newlines_and_command_words() {
    let framer = MemcacheFramer::new(MAX);
    let packet: &[u8] = b"set k 0 0 13\r\nget x\r\nquit\r\n\r\n";
    assert_eq!(framer.check(packet), FrameCheck::Complete(packet.len()));
    assert_packets_found_at_every_split(&framer, &[packet, b"get k\r\n"]);
}

#[test]
fn every_storage_command_carries_a_data_block() {
    let framer = MemcacheFramer::new(MAX);
    for command in ["set", "add", "replace", "append", "prepend"] {
        let packet = format!("{command} key 0 0 3\r\nabc\r\n");
        assert_eq!(
            framer.check(packet.as_bytes()),
            FrameCheck::Complete(packet.len()),
            "{command}"
        );
        let noreply = format!("{command} key 0 0 3 noreply\r\nabc\r\n");
        assert_eq!(
            framer.check(noreply.as_bytes()),
            FrameCheck::Complete(noreply.len()),
            "{command} noreply"
        );
    }
    let cas = b"cas key 0 0 3 99 noreply\r\nabc\r\n";
    assert_eq!(framer.check(cas), FrameCheck::Complete(cas.len()));
}

#[test]
fn other_and_unknown_commands_are_one_line() {
    let framer = MemcacheFramer::new(MAX);
    for line in [
        "get k\r\n",
        "gat 60 k\r\n",
        "delete k noreply\r\n",
        "touch k 60\r\n",
        "stats\r\n",
        "flush_all\r\n",
        "verbosity 1\r\n",
        "quit\r\n",
        "bogus 1 2 3\r\n",
        "SET k 0 0 5\r\n",
        "\r\n",
        "   \n",
    ] {
        let stream = format!("{line}hello\r\n");
        assert_eq!(
            framer.check(stream.as_bytes()),
            FrameCheck::Complete(line.len()),
            "{line:?}"
        );
    }
}

#[test]
fn extra_spaces_between_tokens_are_ignored() {
    let framer = MemcacheFramer::new(MAX);
    let packet = b"  set   k  0 0   2  \r\nhi\r\n";
    assert_eq!(framer.check(packet), FrameCheck::Complete(packet.len()));
}

#[test]
fn storage_lines_without_a_numeric_byte_count_are_malformed() {
    let framer = MemcacheFramer::new(MAX);
    for line in [
        "set k 0 0\r\n",
        "set k 0 0 abc\r\n",
        "set k 0 0 -1\r\n",
        "set k 0 0 +5\r\n",
        "set k 0 0 5x\r\n",
        "cas k 0 0 5\r\n",
        "set k 0 0 5 noreply extra\r\n",
        "cas k 0 0 5 1 noreply extra\r\n",
        "ms k\r\n",
        "ms k x\r\n",
        "set\n",
    ] {
        assert_malformed_at_last_byte(&framer, line.as_bytes());
    }
}

#[test]
fn a_data_block_not_followed_by_crlf_is_malformed_at_the_first_wrong_byte() {
    let framer = MemcacheFramer::new(MAX);
    assert_malformed_at_last_byte(&framer, b"set k 0 0 2\r\nabc");
    assert_malformed_at_last_byte(&framer, b"set k 0 0 2\r\nab\rx");
    assert_malformed_at_last_byte(&framer, b"set k 0 0 2\r\nab\n");
}

#[test]
fn a_command_line_of_2048_bytes_passes_and_one_more_byte_is_oversize() {
    let framer = MemcacheFramer::new(MAX);
    let mut line = b"get ".to_vec();
    line.resize(MEMCACHE_MAX_LINE - 2, b'k');
    line.extend_from_slice(b"\r\n");
    assert_eq!(framer.check(&line), FrameCheck::Complete(MEMCACHE_MAX_LINE));

    let mut long = b"get ".to_vec();
    long.resize(MEMCACHE_MAX_LINE, b'k');
    assert_eq!(
        refused_at_last_byte(&framer, &long),
        FrameError::Oversize {
            declared: 2049,
            max: MEMCACHE_MAX_LINE
        }
    );
}

#[test]
fn a_storage_command_of_exactly_max_packet_passes() {
    let framer = MemcacheFramer::new(40);
    // 14-byte line + 24 bytes of data + \r\n = 40.
    let mut packet = b"set k 0 0 24\r\n".to_vec();
    packet.extend_from_slice(&[b'v'; 24]);
    packet.extend_from_slice(b"\r\n");
    assert_eq!(packet.len(), 40);
    assert_eq!(framer.check(&packet), FrameCheck::Complete(40));
}

#[test]
fn a_data_block_over_max_packet_is_oversize_when_its_command_line_ends() {
    let framer = MemcacheFramer::new(40);
    // 14 + 25 + 2 = 41 bytes, refused before any data arrives.
    assert_eq!(
        refused_at_last_byte(&framer, b"set k 0 0 25\r\n"),
        FrameError::Oversize {
            declared: 41,
            max: 40
        }
    );
    assert_eq!(
        framer.check(b"set k 0 0 99999999999999999999999\r\n"),
        oversize(u64::MAX, 40)
    );
}

#[test]
fn a_max_packet_below_2048_also_bounds_the_command_line() {
    let framer = MemcacheFramer::new(10);
    assert_eq!(framer.check(b"get 12345\n"), FrameCheck::Complete(10));
    assert_eq!(
        refused_at_last_byte(&framer, b"get 123456"),
        FrameError::Oversize {
            declared: 11,
            max: 10
        }
    );
}

#[test]
fn the_framer_names_itself_memcache() {
    assert_eq!(MemcacheFramer::new(MAX).name(), "memcache");
    assert_eq!(MemcacheFramer::new(MAX).max_packet(), MAX);
}
