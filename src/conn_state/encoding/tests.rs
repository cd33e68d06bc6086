//! The byte form of [`ConnState`]: round trips, ages, and every refusal.

use super::*;
use crate::conn_state::ListenerIdentity;
use crate::framing::Progress;

/// The writer's clock in these tests: about 11.5 days after boot.
const NOW: u64 = 1_000_000_000_000_000;

/// A state with every field set to something other than its default.
fn full() -> ConnState {
    ConnState {
        flow: FlowId::new(7, 3, 12, 345),
        peer: "[2001:db8::17]:40001".parse().unwrap(),
        listener: ListenerIdentity {
            index: 2,
            framing: "resp".to_owned(),
            local: "10.0.0.1:6379".parse().unwrap(),
        },
        opened_ns: NOW - 90_000_000_000,
        last_active_ns: Some(NOW - 2_000_000),
        unfinished: b"*2\r\n$3\r\nGET\r\n$5\r\nke".to_vec(),
        unfinished_since_ns: NOW - 1_500_000,
        progress: Progress {
            scanned: 12,
            notes: [1, 2, 3],
            interim: None,
        },
        unsent: b"+OK\r\n$5\r\nvalue\r\n".to_vec(),
        unsent_timing: UnsentTiming {
            queued: 4_000,
            entries: vec![
                ReplyTiming {
                    end: 3_989,
                    echo0_ns: NOW - 700_000,
                    replies: 1,
                },
                ReplyTiming {
                    end: 4_000,
                    echo0_ns: NOW - 600_000,
                    replies: 3,
                },
            ],
        },
        outstanding: 5,
        paused: true,
        close_after_flush: true,
        rate_window: RateWindow {
            start_ns: NOW - 400_000_000,
            count: 17,
        },
        listener_rate_paid: true,
        half_closed_since_ns: Some(NOW - 3_000),
        awaits_proxy_header: true,
        pinned: true,
        packets_in: 123_456,
        bytes_in: 9_876_543,
    }
}

/// A state with every optional part empty.
fn minimal() -> ConnState {
    ConnState {
        flow: FlowId(1),
        peer: "127.0.0.1:1".parse().unwrap(),
        listener: ListenerIdentity {
            index: 0,
            framing: "line".to_owned(),
            local: "127.0.0.1:7000".parse().unwrap(),
        },
        ..ConnState::blank()
    }
}

fn encoded(state: &ConnState) -> Vec<u8> {
    let mut out = Vec::new();
    state.encode(NOW, &mut out);
    out
}

/// What decoding `state`'s bytes gives back: everything but the framer's progress.
fn carried(state: &ConnState) -> ConnState {
    ConnState {
        progress: Progress::default(),
        ..state.clone()
    }
}

/// The byte form of a state from its fields: `(tag, value)`, with the default header.
fn from_fields(fields: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, MAGIC);
    for (tag, value) in fields {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
    }
    let total = out.len() as u64;
    out[8..16].copy_from_slice(&total.to_le_bytes());
    out
}

/// The fields of `bytes` (one encoded state), in order.
fn fields_of(bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut rest = &bytes[HEADER_LEN..];
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let tag = u16::from_le_bytes([rest[0], rest[1]]);
        let len = u64::from_le_bytes(rest[2..10].try_into().unwrap()) as usize;
        fields.push((tag, rest[10..10 + len].to_vec()));
        rest = &rest[10 + len..];
    }
    fields
}

#[test]
fn a_state_with_every_field_set_comes_back_whole_except_the_framer_progress() {
    let state = full();
    let bytes = encoded(&state);
    assert_eq!(&bytes[..4], b"CCSC");
    assert_eq!(ConnState::decode(&bytes, NOW), Ok(carried(&state)));
    let tags: Vec<u16> = fields_of(&bytes).iter().map(|(tag, _)| *tag).collect();
    assert_eq!(tags.len(), FIELDS.len(), "every field written once");
}

#[test]
fn a_minimal_state_comes_back_whole() {
    let state = minimal();
    assert_eq!(ConnState::decode(&encoded(&state), NOW), Ok(state));
}

#[test]
fn timestamps_travel_as_ages_and_shift_to_the_readers_clock() {
    let state = full();
    let bytes = encoded(&state);
    let later = 5_000_000_000;
    let read = ConnState::decode(&bytes, NOW + later).unwrap();
    assert_eq!(read.opened_ns, state.opened_ns + later);
    assert_eq!(read.last_active_ns, state.last_active_ns.map(|t| t + later));
    assert_eq!(read.unfinished_since_ns, state.unfinished_since_ns + later);
    assert_eq!(
        read.rate_window.start_ns,
        state.rate_window.start_ns + later
    );
    assert_eq!(
        read.half_closed_since_ns,
        state.half_closed_since_ns.map(|t| t + later)
    );
    for (read, sent) in read
        .unsent_timing
        .entries
        .iter()
        .zip(&state.unsent_timing.entries)
    {
        assert_eq!(read.echo0_ns, sent.echo0_ns + later);
        assert_eq!(read.end, sent.end, "stream offsets are not times");
    }
    assert_eq!(read.unsent_timing.queued, state.unsent_timing.queued);
    assert_eq!(read.rate_window.count, state.rate_window.count);

    // A reader whose clock is younger than an age saturates at 0 instead of wrapping.
    let early = ConnState::decode(&bytes, 1_000).unwrap();
    assert_eq!(early.opened_ns, 0);
    assert_eq!(early.half_closed_since_ns, Some(0));
}

#[test]
fn none_stays_none_and_a_future_timestamp_travels_as_age_zero() {
    let mut state = full();
    state.last_active_ns = None;
    state.half_closed_since_ns = None;
    state.opened_ns = NOW + 10;
    let read = ConnState::decode(&encoded(&state), NOW).unwrap();
    assert_eq!(
        (read.last_active_ns, read.half_closed_since_ns),
        (None, None)
    );
    assert_eq!(read.opened_ns, NOW);
}

#[test]
fn an_unknown_mandatory_field_is_refused_and_an_unknown_skippable_one_skipped() {
    let mut fields = fields_of(&encoded(&full()));
    fields.insert(3, (SKIPPABLE | 0x0777, b"from a newer ccsd".to_vec()));
    assert_eq!(
        ConnState::decode(&from_fields(&fields), NOW),
        Ok(carried(&full()))
    );
    fields.push((0x0777, vec![1]));
    assert_eq!(
        ConnState::decode(&from_fields(&fields), NOW),
        Err(StateError::UnknownMandatoryField { tag: 0x0777 })
    );
}

#[test]
fn fields_are_read_in_any_order() {
    let mut fields = fields_of(&encoded(&full()));
    fields.reverse();
    assert_eq!(
        ConnState::decode(&from_fields(&fields), NOW),
        Ok(carried(&full()))
    );
}

#[test]
fn a_bad_magic_or_another_major_version_is_refused() {
    let mut bytes = encoded(&full());
    bytes[0] = b'X';
    assert_eq!(
        ConnState::decode(&bytes, NOW),
        Err(StateError::BadMagic { found: *b"XCSC" })
    );
    let mut newer = encoded(&full());
    newer[4..6].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(
        ConnState::decode(&newer, NOW),
        Err(StateError::UnsupportedVersion { major: 2 })
    );
    let mut next_minor = encoded(&full());
    next_minor[6..8].copy_from_slice(&9u16.to_le_bytes());
    assert_eq!(
        ConnState::decode(&next_minor, NOW),
        Ok(carried(&full())),
        "the minor version changes nothing for a reader"
    );
}

#[test]
fn every_truncation_is_refused() {
    let bytes = encoded(&full());
    for len in 0..bytes.len() {
        let refused = ConnState::decode(&bytes[..len], NOW);
        assert!(
            matches!(refused, Err(StateError::Truncated { .. })),
            "{len} bytes: {refused:?}"
        );
    }
}

#[test]
fn a_field_cut_short_within_the_declared_length_is_refused_naming_it() {
    let mut bytes = from_fields(&fields_of(&encoded(&full())));
    // Declare the last field (load, 16 bytes) longer than what is left.
    let at = bytes.len() - 16 - 8;
    bytes[at..at + 8].copy_from_slice(&17u64.to_le_bytes());
    assert_eq!(
        ConnState::decode(&bytes, NOW),
        Err(StateError::Truncated { what: "load" })
    );
    let mut huge = encoded(&minimal());
    huge[HEADER_LEN + 2..HEADER_LEN + 10].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        ConnState::decode(&huge, NOW),
        Err(StateError::Truncated { what: "flow" })
    );
}

#[test]
fn trailing_bytes_and_a_total_length_shorter_than_the_header_are_refused() {
    let mut bytes = encoded(&full());
    bytes.extend_from_slice(b"xy");
    assert_eq!(
        ConnState::decode(&bytes, NOW),
        Err(StateError::TrailingBytes { extra: 2 })
    );
    let mut short = encoded(&full());
    short[8..16].copy_from_slice(&15u64.to_le_bytes());
    assert!(matches!(
        ConnState::decode(&short, NOW),
        Err(StateError::OutOfRange {
            field: "header",
            ..
        })
    ));
}

#[test]
fn a_duplicate_field_is_refused_naming_it() {
    let mut fields = fields_of(&encoded(&full()));
    let pinned = fields.iter().find(|(tag, _)| *tag == 18).unwrap().clone();
    fields.push(pinned);
    assert_eq!(
        ConnState::decode(&from_fields(&fields), NOW),
        Err(StateError::DuplicateField { field: "pinned" })
    );
}

#[test]
fn each_missing_mandatory_field_is_refused_and_missing_skippable_ones_default() {
    let all = fields_of(&encoded(&full()));
    for field in FIELDS {
        let without: Vec<_> = all
            .iter()
            .filter(|(tag, _)| *tag != field.tag())
            .cloned()
            .collect();
        let read = ConnState::decode(&from_fields(&without), NOW);
        if field.skippable() {
            assert!(read.is_ok(), "{}: {read:?}", field.name());
        } else {
            assert_eq!(
                read,
                Err(StateError::MissingField {
                    field: field.name()
                })
            );
        }
    }
    let without_optional: Vec<_> = all
        .iter()
        .filter(|(tag, _)| tag & SKIPPABLE == 0)
        .cloned()
        .collect();
    let read = ConnState::decode(&from_fields(&without_optional), NOW).unwrap();
    assert_eq!((read.packets_in, read.bytes_in), (0, 0));
    assert_eq!(
        read.unsent_timing,
        UnsentTiming {
            queued: full().unsent.len() as u64,
            entries: Vec::new()
        },
        "untimed: the unsent bytes are all that was queued"
    );
}

/// Replaces the value of field `tag` in `state`'s bytes.
fn with_value(state: &ConnState, tag: u16, value: &[u8]) -> Result<ConnState, StateError> {
    let mut fields = fields_of(&encoded(state));
    fields.iter_mut().find(|(t, _)| *t == tag).unwrap().1 = value.to_vec();
    ConnState::decode(&from_fields(&fields), NOW)
}

#[test]
fn wrong_lengths_are_refused_naming_the_field() {
    let state = full();
    let cases: [(Field, &[u8]); 7] = [
        (Field::Flow, &[1, 0, 0, 0]),
        (Field::Peer, &[4, 1, 2, 3, 4, 5]),
        (Field::ListenerLocal, &[6, 1, 2, 3]),
        (Field::LastActive, &[0; 4]),
        (Field::Paused, &[0, 0]),
        (Field::RateWindow, &[0; 8]),
        (Field::UnsentTiming, &[0; 8 + 19]),
    ];
    for (field, value) in cases {
        assert_eq!(
            with_value(&state, field.tag(), value),
            Err(StateError::WrongLength {
                field: field.name(),
                len: value.len() as u64
            })
        );
    }
}

#[test]
fn values_out_of_range_are_refused_naming_the_field() {
    let state = full();
    let refused = |tag: u16, value: &[u8]| match with_value(&state, tag, value) {
        Err(StateError::OutOfRange { field, .. }) => field,
        other => panic!("tag {tag}: {other:?}"),
    };
    assert_eq!(refused(2, &[9, 1, 2, 3, 4, 5, 6]), "peer", "address family");
    assert_eq!(refused(12, &[2]), "paused", "a flag");
    assert_eq!(refused(1, &0u64.to_le_bytes()), "flow", "flow 0");
    assert_eq!(refused(4, b""), "listener_framing");
    assert_eq!(refused(4, &[0xff, 0xfe]), "listener_framing", "not UTF-8");

    let timing = |queued: u64, entries: &[(u64, u32)]| {
        let mut value = queued.to_le_bytes().to_vec();
        for (end, replies) in entries {
            value.extend_from_slice(&end.to_le_bytes());
            value.extend_from_slice(&0u64.to_le_bytes());
            value.extend_from_slice(&replies.to_le_bytes());
        }
        value
    };
    let t = Field::UnsentTiming.tag();
    let unsent = state.unsent.len() as u64;
    assert_eq!(refused(t, &timing(unsent - 1, &[])), "unsent_timing");
    assert_eq!(refused(t, &timing(100, &[(50, 0)])), "unsent_timing");
    assert_eq!(
        refused(t, &timing(100, &[(60, 1), (50, 1)])),
        "unsent_timing"
    );
    assert_eq!(refused(t, &timing(100, &[(101, 1)])), "unsent_timing");

    let long_header = vec![b'P'; MAX_HEADER + 1];
    assert_eq!(refused(8, &long_header), "unfinished");
    let mut no_header_awaited = state.clone();
    no_header_awaited.awaits_proxy_header = false;
    assert!(with_value(&no_header_awaited, 8, &long_header).is_ok());
}

#[test]
fn a_timing_list_longer_than_a_worker_keeps_joins_its_last_entry() {
    let mut state = full();
    state.unsent_timing.queued = 1_000;
    let entries = |n: u64| -> Vec<ReplyTiming> {
        (0..n)
            .map(|i| ReplyTiming {
                end: 10 * i,
                echo0_ns: NOW - 1_000 + i,
                replies: 2,
            })
            .collect()
    };
    state.unsent_timing.entries = entries(MAX_TIMING_ENTRIES as u64);
    assert_eq!(
        ConnState::decode(&encoded(&state), NOW),
        Ok(carried(&state))
    );

    let longer = MAX_TIMING_ENTRIES as u64 + 8;
    state.unsent_timing.entries = entries(longer);
    let read = ConnState::decode(&encoded(&state), NOW).unwrap();
    let kept = &read.unsent_timing.entries;
    assert_eq!(kept.len(), MAX_TIMING_ENTRIES);
    assert_eq!(
        kept[..MAX_TIMING_ENTRIES - 1],
        entries(longer)[..MAX_TIMING_ENTRIES - 1]
    );
    assert_eq!(
        kept[MAX_TIMING_ENTRIES - 1],
        ReplyTiming {
            end: 10 * (longer - 1),
            echo0_ns: NOW - 1_000 + MAX_TIMING_ENTRIES as u64 - 1,
            replies: 2 * 9,
        },
        "the last kept entry stands for the last nine, with the earliest echo0"
    );
    assert_eq!(
        kept.iter().map(|e| u64::from(e.replies)).sum::<u64>(),
        2 * longer,
        "no reply is lost from the count"
    );
}

#[test]
fn a_list_carries_many_states_and_refuses_its_framing_or_each_state_alone() {
    let states = [full(), minimal(), full()];
    let mut bytes = Vec::new();
    encode_list(&states, NOW, &mut bytes);
    assert_eq!(&bytes[..4], b"CCSL");
    let list = decode_list(&bytes, NOW).unwrap();
    assert_eq!(list.len(), 3);
    let read: Vec<_> = list.collect();
    assert_eq!(
        read,
        states.iter().map(|s| Ok(carried(s))).collect::<Vec<_>>()
    );

    let mut empty = Vec::new();
    encode_list([], NOW, &mut empty);
    assert_eq!(decode_list(&empty, NOW).unwrap().count(), 0);

    for len in 0..bytes.len() {
        assert!(decode_list(&bytes[..len], NOW).is_err(), "{len} bytes");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        decode_list(&longer, NOW).err(),
        Some(StateError::TrailingBytes { extra: 1 })
    );
    let mut huge_count = bytes.clone();
    huge_count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        decode_list(&huge_count, NOW).err(),
        Some(in_list(
            3,
            StateError::Truncated {
                what: "state header"
            }
        ))
    );

    // A state whose fields are refused is refused alone; the others still come.
    let mut one_bad = Vec::new();
    put_header(&mut one_bad, LIST_MAGIC);
    one_bad[8..16].copy_from_slice(&2u64.to_le_bytes());
    let mut fields = fields_of(&encoded(&minimal()));
    fields.push((0x0777, Vec::new()));
    one_bad.extend_from_slice(&from_fields(&fields));
    minimal().encode(NOW, &mut one_bad);
    let read: Vec<_> = decode_list(&one_bad, NOW).unwrap().collect();
    assert_eq!(
        read,
        [
            Err(in_list(
                0,
                StateError::UnknownMandatoryField { tag: 0x0777 }
            )),
            Ok(minimal())
        ]
    );
    let refusal = read[0].clone().unwrap_err();
    assert!(std::error::Error::source(&refusal).is_some());
    assert_eq!(
        refusal.to_string(),
        "connection state 0 of the list is refused"
    );
}

/// splitmix64: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn flag(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn bytes(&mut self, max: u64) -> Vec<u8> {
        (0..self.below(max + 1))
            .map(|_| self.next() as u8)
            .collect()
    }

    /// A time at or before `NOW`; sometimes `NOW` itself or 0.
    fn time(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => NOW,
            _ => NOW - self.below(NOW),
        }
    }

    fn addr(&mut self) -> SocketAddr {
        let port = self.next() as u16;
        if self.flag() {
            SocketAddr::from((Ipv4Addr::from(self.next() as u32), port))
        } else {
            let ip = Ipv6Addr::from(u128::from(self.next()) << 64 | u128::from(self.next()));
            SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                self.next() as u32,
                self.next() as u32,
            ))
        }
    }

    /// Any state a worker could hold.
    fn state(&mut self) -> ConnState {
        let unsent = self.bytes(64);
        let queued = unsent.len() as u64 + self.below(1 << 40);
        let mut ends: Vec<u64> = (0..self.below(MAX_TIMING_ENTRIES as u64 + 1))
            .map(|_| self.below(queued + 1))
            .collect();
        ends.sort_unstable();
        let entries = ends
            .into_iter()
            .map(|end| ReplyTiming {
                end,
                echo0_ns: self.time(),
                replies: 1 + self.below(u64::from(u32::MAX)) as u32,
            })
            .collect();
        let framings = ["line", "length", "memcache", "resp", "http", "a custom one"];
        ConnState {
            flow: FlowId(1 + self.below(u64::MAX)),
            peer: self.addr(),
            listener: ListenerIdentity {
                index: self.below(1 << 20) as usize,
                framing: framings[self.below(framings.len() as u64) as usize].to_owned(),
                local: self.addr(),
            },
            opened_ns: self.time(),
            last_active_ns: self.flag().then(|| self.time()),
            unfinished: self.bytes(64),
            unfinished_since_ns: self.time(),
            progress: Progress::default(),
            unsent,
            unsent_timing: UnsentTiming { queued, entries },
            outstanding: self.next(),
            paused: self.flag(),
            close_after_flush: self.flag(),
            rate_window: RateWindow {
                start_ns: self.time(),
                count: self.next(),
            },
            listener_rate_paid: self.flag(),
            half_closed_since_ns: self.flag().then(|| self.time()),
            awaits_proxy_header: self.flag(),
            pinned: self.flag(),
            packets_in: self.next(),
            bytes_in: self.next(),
        }
    }
}

#[test]
fn random_states_come_back_whole_and_decoding_allocates_at_most_the_input() {
    let mut rng = Rng(0x5eed);
    for round in 0..3_000 {
        let state = rng.state();
        let bytes = encoded(&state);
        let read = ConnState::decode(&bytes, NOW);
        assert_eq!(read.as_ref(), Ok(&state), "round {round}");
        let read = read.unwrap();
        assert!(
            read.allocated_bytes() <= bytes.len(),
            "round {round}: {} bytes allocated from {}",
            read.allocated_bytes(),
            bytes.len()
        );
    }
}

#[test]
fn no_single_byte_change_makes_decoding_panic_or_yield_an_inconsistent_state() {
    let bytes = encoded(&full());
    for at in 0..bytes.len() {
        for value in [0, 1, 2, 4, 6, 0x7f, 0x80, 0xff] {
            let mut changed = bytes.clone();
            changed[at] = value;
            if let Ok(state) = ConnState::decode(&changed, NOW) {
                assert_eq!(
                    ConnState::decode(&encoded(&state), NOW),
                    Ok(state),
                    "byte {at} = {value}"
                );
            }
        }
    }
}

#[test]
fn errors_say_which_field_and_why() {
    let refused = with_value(&full(), 2, &[5, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "connection state: field `peer`: address family is neither 4 nor 6"
    );
    assert_eq!(
        StateError::MissingField { field: "flow" }.to_string(),
        "connection state: mandatory field `flow` is missing"
    );
}

/// The example of `docs/connection-state.md`: the bytes of its text block, comments dropped.
fn documented_example() -> Vec<u8> {
    let doc = include_str!("../../../docs/connection-state.md");
    let block = doc
        .split("<!-- example bytes: checked by src/conn_state/encoding/tests.rs -->\n```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the example block");
    block
        .lines()
        .flat_map(|line| line.split('#').next().unwrap_or("").split_whitespace())
        .map(|byte| u8::from_str_radix(byte, 16).expect("a hex byte"))
        .collect()
}

#[test]
fn the_example_in_the_docs_is_what_encode_writes() {
    let state = ConnState {
        flow: FlowId::new(1, 0, 0, 5),
        peer: "127.0.0.1:40000".parse().unwrap(),
        listener: ListenerIdentity {
            index: 0,
            framing: "line".to_owned(),
            local: "127.0.0.1:7000".parse().unwrap(),
        },
        opened_ns: NOW - 2_000_000_000,
        last_active_ns: Some(NOW - 1_000_000),
        unfinished: b"he".to_vec(),
        unfinished_since_ns: NOW - 500_000,
        outstanding: 1,
        rate_window: RateWindow {
            start_ns: NOW - 2_000_000_000,
            count: 1,
        },
        packets_in: 1,
        bytes_in: 6,
        ..ConnState::blank()
    };
    let example = documented_example();
    assert_eq!(encoded(&state), example);
    assert_eq!(ConnState::decode(&example, NOW), Ok(state));
}
