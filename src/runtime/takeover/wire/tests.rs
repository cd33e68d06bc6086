use std::net::{Ipv6Addr, SocketAddrV6};

use super::*;

fn hello() -> Handover {
    Handover::Hello {
        pid: 4242,
        version: "0.1.0".into(),
        queue_dir: "/dev/shm".into(),
        queue_name: "ccsd-t1".into(),
        lane_capacity: 1 << 24,
    }
}

fn offer() -> Handover {
    Handover::Offer {
        pid: 77,
        epoch: 0xBEEF,
        listeners: vec![
            ListenerOffer {
                proto: Proto::Tcp,
                local: "127.0.0.1:7000".parse().unwrap(),
                name: Some("game".into()),
            },
            ListenerOffer {
                proto: Proto::Udp,
                local: SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7001, 5, 2)),
                name: None,
            },
        ],
        lanes: vec![
            LaneOffer {
                role: LaneRole::Request { index: 0 },
                path: "/dev/shm/ccsd-t1-req-0".into(),
                position: 123_456_789,
            },
            LaneOffer {
                role: LaneRole::Request { index: 3 },
                path: "/dev/shm/ccsd-t1-req-3".into(),
                position: 0,
            },
            LaneOffer {
                role: LaneRole::Response,
                path: "/dev/shm/ccsd-t1-resp".into(),
                position: u64::MAX,
            },
        ],
        connections: 10_000,
    }
}

/// One of every message kind.
fn every_message() -> Vec<Handover> {
    vec![
        hello(),
        Handover::Refused {
            reason: "lane capacity differs: 16777216 here, 65536 there".into(),
        },
        offer(),
        Handover::Offer {
            pid: 1,
            epoch: 0,
            listeners: Vec::new(),
            lanes: Vec::new(),
            connections: 0,
        },
        Handover::Ready { adopted: 9_999 },
        Handover::Commit,
        Handover::Abort {
            reason: "timed out waiting for Ready".into(),
        },
    ]
}

/// `message` with one more field at the end of its body.
fn with_field(message: &Handover, tag: u16, value: &[u8]) -> Vec<u8> {
    let mut bytes = message.encode();
    put(&mut bytes, tag, value);
    bytes
}

fn conns() -> Vec<ConnOffer> {
    vec![
        ConnOffer {
            lane: 0,
            state: b"CCSC state bytes".to_vec(),
        },
        ConnOffer {
            lane: 7,
            state: Vec::new(),
        },
        ConnOffer {
            lane: u32::MAX,
            state: vec![0xAB; 1000],
        },
    ]
}

#[test]
fn every_message_reads_back_as_written() {
    for message in every_message() {
        let bytes = message.encode();
        assert_eq!(&bytes[..4], b"CCSH");
        assert_eq!(Handover::decode(&bytes), Ok(message));
    }
}

#[test]
fn every_cut_of_every_message_is_refused() {
    for message in every_message() {
        let bytes = message.encode();
        for len in 0..bytes.len() {
            let got = Handover::decode(&bytes[..len]);
            // A cut at a field boundary reads as a message missing its last field.
            assert!(
                matches!(
                    got,
                    Err(WireError::Truncated { .. } | WireError::MissingField { .. })
                ),
                "{message:?} cut at {len} of {}: {got:?}",
                bytes.len()
            );
        }
    }
}

#[test]
fn an_unknown_skippable_field_is_skipped_anywhere() {
    for message in every_message() {
        let bytes = with_field(&message, SKIPPABLE | 99, b"from a newer ccsd");
        assert_eq!(Handover::decode(&bytes), Ok(message));
    }
    // Inside a listener: the group holds an extra skippable field.
    let Handover::Offer { listeners, .. } = offer() else {
        unreachable!()
    };
    let mut group = Vec::new();
    put(&mut group, 1, &[1]);
    put_with(&mut group, 2, |a| put_addr(a, listeners[0].local));
    put(&mut group, SKIPPABLE | 5, b"backlog 1024");
    let mut bytes = Handover::Offer {
        pid: 1,
        epoch: 2,
        listeners: Vec::new(),
        lanes: Vec::new(),
        connections: 3,
    }
    .encode();
    put(&mut bytes, 3, &group);
    let Ok(Handover::Offer { listeners: got, .. }) = Handover::decode(&bytes) else {
        panic!("refused: {:?}", Handover::decode(&bytes));
    };
    assert_eq!(
        got,
        vec![ListenerOffer {
            name: None,
            ..listeners[0].clone()
        }]
    );
}

#[test]
fn an_unknown_mandatory_field_is_refused_naming_where() {
    for message in every_message() {
        let bytes = with_field(&message, 99, b"must understand");
        let got = Handover::decode(&bytes);
        assert!(
            matches!(got, Err(WireError::UnknownMandatoryField { tag: 99, .. })),
            "{got:?}"
        );
    }
    let mut group = Vec::new();
    put(&mut group, 1, &[1, 0, 0, 0, 0]);
    put(&mut group, 2, b"/dev/shm/lane");
    put(&mut group, 3, &0u64.to_le_bytes());
    put(&mut group, 4, b"per-worker reply lane owner");
    let bytes = with_field(&offer(), 4, &group);
    assert_eq!(
        Handover::decode(&bytes),
        Err(WireError::UnknownMandatoryField {
            within: "offer.lane",
            tag: 4
        })
    );
    let err = Handover::decode(&bytes).unwrap_err().to_string();
    assert!(err.contains("offer.lane") && err.contains("4"), "{err}");
}

#[test]
fn an_unknown_kind_a_newer_major_version_and_bad_magic_are_refused() {
    let mut bytes = Handover::Commit.encode();
    bytes[8..10].copy_from_slice(&7u16.to_le_bytes());
    assert_eq!(
        Handover::decode(&bytes),
        Err(WireError::UnknownKind { kind: 7 })
    );
    let mut bytes = hello().encode();
    bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(
        Handover::decode(&bytes),
        Err(WireError::UnsupportedVersion { major: 2 })
    );
    // A newer minor version is read: what it adds carries its own skippable bit.
    let mut bytes = hello().encode();
    bytes[6..8].copy_from_slice(&9u16.to_le_bytes());
    assert_eq!(Handover::decode(&bytes), Ok(hello()));
    let mut bytes = hello().encode();
    bytes[..4].copy_from_slice(b"CCSC");
    assert_eq!(
        Handover::decode(&bytes),
        Err(WireError::BadMagic { found: *b"CCSC" })
    );
}

#[test]
fn an_oversized_message_is_refused() {
    let bytes = with_field(&Handover::Commit, SKIPPABLE | 1, &vec![0; MAX_MESSAGE]);
    assert!(matches!(
        Handover::decode(&bytes),
        Err(WireError::Oversized {
            max: MAX_MESSAGE,
            ..
        })
    ));
}

#[test]
fn duplicate_missing_and_malformed_fields_are_refused_by_name() {
    let bytes = with_field(&Handover::Ready { adopted: 1 }, 1, &2u32.to_le_bytes());
    assert_eq!(
        Handover::decode(&bytes),
        Err(WireError::DuplicateField {
            field: "ready.adopted"
        })
    );
    let bytes = Handover::Commit.encode();
    let mut ready = bytes.clone();
    ready[8..10].copy_from_slice(&(Kind::Ready as u16).to_le_bytes());
    assert_eq!(
        Handover::decode(&ready),
        Err(WireError::MissingField {
            field: "ready.adopted"
        })
    );
    let mut bytes = Handover::Commit.encode();
    bytes[8..10].copy_from_slice(&(Kind::Ready as u16).to_le_bytes());
    put(&mut bytes, 1, &[1, 2, 3]);
    assert_eq!(
        Handover::decode(&bytes),
        Err(WireError::WrongLength {
            field: "ready.adopted",
            len: 3
        })
    );
    let mut listener = Vec::new();
    put(&mut listener, 1, &[3]);
    put_with(&mut listener, 2, |a| {
        put_addr(a, "10.0.0.1:80".parse().unwrap());
    });
    let bytes = with_field(&offer(), 3, &listener);
    assert!(matches!(
        Handover::decode(&bytes),
        Err(WireError::OutOfRange {
            field: "offer.listener.proto",
            ..
        })
    ));
    let mut lane = Vec::new();
    put(&mut lane, 1, &[2]);
    put(&mut lane, 2, b"/dev/shm/a\0b");
    put(&mut lane, 3, &0u64.to_le_bytes());
    let bytes = with_field(&offer(), 4, &lane);
    assert!(matches!(
        Handover::decode(&bytes),
        Err(WireError::OutOfRange {
            field: "offer.lane.path",
            ..
        })
    ));
    let mut refused = Handover::Refused { reason: "x".into() }.encode();
    *refused.last_mut().unwrap() = 0xFF;
    assert!(matches!(
        Handover::decode(&refused),
        Err(WireError::OutOfRange {
            field: "refused.reason",
            ..
        })
    ));
}

#[test]
fn connection_records_read_back_as_written() {
    let bytes = encode_conns(&conns());
    assert_eq!(&bytes[..4], b"CCSO");
    assert_eq!(decode_conns(&bytes, 3), Ok(conns()));
    assert_eq!(decode_conns(&encode_conns(&[]), 0), Ok(Vec::new()));
}

#[test]
fn more_connection_records_than_allowed_are_refused_before_reading_them() {
    let bytes = encode_conns(&conns());
    assert_eq!(
        decode_conns(&bytes, 2),
        Err(WireError::TooMany { count: 3, max: 2 })
    );
    // A count far beyond the input is found out by the input, not by an allocation.
    let mut lying = bytes.clone();
    lying[8..16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(
        decode_conns(&lying, usize::MAX),
        Err(WireError::Truncated { .. })
    ));
}

#[test]
fn every_cut_of_connection_records_and_trailing_bytes_are_refused() {
    let bytes = encode_conns(&conns());
    for len in 0..bytes.len() {
        let got = decode_conns(&bytes[..len], 10);
        assert!(
            matches!(got, Err(WireError::Truncated { .. })),
            "cut at {len}: {got:?}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        decode_conns(&longer, 10),
        Err(WireError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn connection_records_skip_unknown_skippable_fields_and_refuse_mandatory_ones() {
    let mut bytes = encode_conns(&conns()[..1]);
    // Grow the one record by a field, and its length with it.
    let mut field = Vec::new();
    put(&mut field, SKIPPABLE | 3, b"per-connection extra");
    let record_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    bytes[16..24].copy_from_slice(&(record_len + field.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&field);
    assert_eq!(decode_conns(&bytes, 1), Ok(conns()[..1].to_vec()));
    let end = bytes.len() - field.len();
    bytes[end] = 3;
    bytes[end + 1] = 0;
    assert_eq!(
        decode_conns(&bytes, 1),
        Err(WireError::UnknownMandatoryField {
            within: "connection record",
            tag: 3
        })
    );
}
