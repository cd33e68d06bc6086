//! The length framer: packet boundaries for every field layout, oversize and malformed headers.

use crate::framer_checks;

use std::io;

use ccsd::framing::{self, FrameCheck, FrameError, Framer, LengthFramer};
use ccsd::settings::{ByteSize, Endian, LengthIncludes, ListenSettings};
use framer_checks::assert_packets_found_at_every_split;

const SIZES: [u8; 4] = [1, 2, 4, 8];
const ENDIANS: [Endian; 2] = [Endian::Big, Endian::Little];
const INCLUDES: [LengthIncludes; 3] = [
    LengthIncludes::Body,
    LengthIncludes::Field,
    LengthIncludes::All,
];

/// One field layout; builds packets the way a peer speaking it would.
#[derive(Debug, Clone, Copy)]
struct Layout {
    offset: usize,
    size: u8,
    endian: Endian,
    includes: LengthIncludes,
    adjust: i64,
}

impl Layout {
    fn framer(self, max_packet: usize) -> LengthFramer {
        LengthFramer::new(
            self.offset,
            self.size,
            self.endian,
            self.includes,
            self.adjust,
            max_packet,
        )
        .expect("valid layout")
    }

    fn header(self) -> usize {
        self.offset + usize::from(self.size)
    }

    /// The field value announcing a packet of `total` bytes, if the field can hold it.
    fn field_value(self, total: u64) -> Option<u64> {
        let counted_before = match self.includes {
            LengthIncludes::Body => self.header(),
            LengthIncludes::Field => self.offset,
            LengthIncludes::All => 0,
        };
        let value = i128::from(total) - counted_before as i128 - i128::from(self.adjust);
        let value = u64::try_from(value).ok()?;
        (self.size == 8 || value < 1 << (8 * u32::from(self.size))).then_some(value)
    }

    /// The offset prefix and the length field holding `value`.
    fn header_bytes(self, value: u64) -> Vec<u8> {
        let mut bytes = vec![0xA5; self.offset];
        let field = match self.endian {
            Endian::Big => value.to_be_bytes()[8 - usize::from(self.size)..].to_vec(),
            Endian::Little => value.to_le_bytes()[..usize::from(self.size)].to_vec(),
        };
        bytes.extend_from_slice(&field);
        bytes
    }

    /// A whole packet with `body_len` bytes after the header, or `None` if the layout cannot
    /// express it.
    fn packet(self, body_len: usize, fill: u8) -> Option<Vec<u8>> {
        let total = self.header() + body_len;
        let mut packet = self.header_bytes(self.field_value(total as u64)?);
        packet.resize(total, fill);
        Some(packet)
    }
}

/// Every combination of field size, byte order and includes mode, at offsets 0 and 3, with and
/// without an adjustment.
fn all_layouts() -> Vec<Layout> {
    let mut layouts = Vec::new();
    for size in SIZES {
        for endian in ENDIANS {
            for includes in INCLUDES {
                for offset in [0, 3] {
                    for adjust in [0, 2, -3] {
                        layouts.push(Layout {
                            offset,
                            size,
                            endian,
                            includes,
                            adjust,
                        });
                    }
                }
            }
        }
    }
    layouts
}

#[test]
fn pipelined_packets_are_found_at_every_split_point_for_every_layout() {
    for layout in all_layouts() {
        let framer = layout.framer(4096);
        let packets: Vec<Vec<u8>> = [0, 1, 3, 17, 100, 2]
            .into_iter()
            .enumerate()
            .filter_map(|(i, body_len)| layout.packet(body_len, i as u8))
            .collect();
        assert!(packets.len() >= 4, "{layout:?} expresses most test packets");
        let packets: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        assert_packets_found_at_every_split(&framer, &packets);
    }
}

#[test]
fn default_protocol_is_a_four_byte_big_endian_body_length() {
    let framer = framing::build(&ListenSettings::default()).expect("default framer");
    assert_eq!(framer.name(), "length");
    assert_eq!(framer.max_packet(), 16 << 20);
    assert_eq!(framer.check(&[0, 0, 1, 0]), FrameCheck::Incomplete);
    let mut packet = vec![0, 0, 1, 0];
    packet.extend_from_slice(&[7; 256]);
    assert_eq!(framer.check(&packet), FrameCheck::Complete(260));
    packet.push(9);
    assert_eq!(framer.check(&packet), FrameCheck::Complete(260));
}

#[test]
fn byte_order_decides_how_the_field_is_read() {
    let big = LengthFramer::new(0, 2, Endian::Big, LengthIncludes::All, 0, 1 << 20).unwrap();
    let little = LengthFramer::new(0, 2, Endian::Little, LengthIncludes::All, 0, 1 << 20).unwrap();
    let buf = vec![0x01, 0x02]
        .into_iter()
        .chain([0; 600])
        .collect::<Vec<u8>>();
    assert_eq!(big.check(&buf), FrameCheck::Complete(0x0102));
    assert_eq!(little.check(&buf), FrameCheck::Complete(0x0201));
}

#[test]
fn includes_mode_decides_what_the_value_counts() {
    // offset 2, 4-byte field, value 10.
    let buf = [
        0xFF, 0xFF, 0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    ];
    let framer = |includes| LengthFramer::new(2, 4, Endian::Big, includes, 0, 1024).unwrap();
    assert_eq!(
        framer(LengthIncludes::Body).check(&buf),
        FrameCheck::Complete(16)
    );
    assert_eq!(
        framer(LengthIncludes::Field).check(&buf),
        FrameCheck::Complete(12)
    );
    assert_eq!(
        framer(LengthIncludes::All).check(&buf),
        FrameCheck::Complete(10)
    );
}

#[test]
fn adjust_is_added_to_the_total_length() {
    let buf = [0, 4, 1, 2, 3, 4, 5, 6, 7, 8];
    let framer =
        |adjust| LengthFramer::new(0, 2, Endian::Big, LengthIncludes::Body, adjust, 64).unwrap();
    assert_eq!(framer(0).check(&buf), FrameCheck::Complete(6));
    assert_eq!(framer(2).check(&buf), FrameCheck::Complete(8));
    assert_eq!(framer(-4).check(&buf), FrameCheck::Complete(2));
}

#[test]
fn offset_bytes_are_part_of_the_packet_whatever_they_hold() {
    let framer = LengthFramer::new(3, 1, Endian::Big, LengthIncludes::Body, 0, 64).unwrap();
    assert_eq!(framer.check(&[0xFF, 0xFF, 0xFF]), FrameCheck::Incomplete);
    assert_eq!(
        framer.check(&[0xFF, 0xFF, 0xFF, 2, 0xAB]),
        FrameCheck::Incomplete
    );
    assert_eq!(
        framer.check(&[0xFF, 0xFF, 0xFF, 2, 0xAB, 0xCD]),
        FrameCheck::Complete(6)
    );
}

#[test]
fn fewer_bytes_than_the_header_are_incomplete() {
    for layout in all_layouts() {
        let framer = layout.framer(4096);
        let header = layout.header_bytes(u64::MAX >> (64 - 8 * u32::from(layout.size)));
        for received in 0..layout.header() {
            assert_eq!(
                framer.check(&header[..received]),
                FrameCheck::Incomplete,
                "{layout:?} with {received} bytes"
            );
        }
    }
}

#[test]
fn zero_length_body_is_a_header_only_packet() {
    for offset in [0, 5] {
        let framer =
            LengthFramer::new(offset, 4, Endian::Big, LengthIncludes::Body, 0, 64).unwrap();
        let mut buf = vec![0; offset + 4];
        buf.push(0x42);
        assert_eq!(
            framer.check(&buf),
            FrameCheck::Complete(offset + 4),
            "offset {offset}"
        );
    }
}

#[test]
fn a_packet_of_exactly_max_packet_bytes_passes() {
    const MAX: usize = 300;
    for layout in all_layouts() {
        let framer = layout.framer(MAX);
        let Some(value) = layout.field_value(MAX as u64) else {
            continue;
        };
        let header = layout.header_bytes(value);
        assert_eq!(framer.check(&header), FrameCheck::Incomplete, "{layout:?}");
        let mut packet = header;
        packet.resize(MAX, 0);
        assert_eq!(
            framer.check(&packet),
            FrameCheck::Complete(MAX),
            "{layout:?}"
        );
    }
}

#[test]
fn one_byte_over_max_packet_is_oversize_as_soon_as_the_header_arrives() {
    const MAX: usize = 300;
    for layout in all_layouts() {
        let framer = layout.framer(MAX);
        let Some(value) = layout.field_value(MAX as u64 + 1) else {
            continue;
        };
        assert_eq!(
            framer.check(&layout.header_bytes(value)),
            FrameCheck::Invalid(FrameError::Oversize {
                declared: MAX as u64 + 1,
                max: MAX
            }),
            "{layout:?}"
        );
    }
}

#[test]
fn a_length_smaller_than_the_header_is_malformed() {
    let malformed = FrameCheck::Invalid(FrameError::Malformed(
        "length field smaller than its own header",
    ));
    // The whole packet is said to be 5 bytes, but offset and field take 6.
    let all = LengthFramer::new(2, 4, Endian::Big, LengthIncludes::All, 0, 64).unwrap();
    assert_eq!(all.check(&[0, 0, 0, 0, 0, 5]), malformed);
    assert_eq!(all.check(&[0, 0, 0, 0, 0, 6]), FrameCheck::Complete(6));
    // The field is said to count 3 bytes including itself, but it is 4 bytes long.
    let field = LengthFramer::new(0, 4, Endian::Big, LengthIncludes::Field, 0, 64).unwrap();
    assert_eq!(field.check(&[0, 0, 0, 3]), malformed);
    // A negative adjustment can take the total below the header.
    let body = LengthFramer::new(0, 1, Endian::Big, LengthIncludes::Body, -2, 64).unwrap();
    assert_eq!(body.check(&[1]), malformed);
    assert_eq!(body.check(&[2]), FrameCheck::Complete(1));
}

#[test]
fn extreme_length_values_never_panic() {
    for includes in INCLUDES {
        for endian in ENDIANS {
            for offset in [0, 1024] {
                for adjust in [i64::MIN, -1, 0, 1, i64::MAX] {
                    let framer =
                        LengthFramer::new(offset, 8, endian, includes, adjust, 1 << 30).unwrap();
                    let mut buf = vec![0xFF; offset + 8];
                    let check = framer.check(&buf);
                    assert!(matches!(check, FrameCheck::Invalid(_)), "{check:?}");
                    buf[offset..].fill(0);
                    let check = framer.check(&buf);
                    assert!(!matches!(check, FrameCheck::Complete(0)), "{check:?}");
                }
            }
        }
    }
}

#[test]
fn u64_max_length_is_reported_as_oversize_saturated() {
    let framer = LengthFramer::new(0, 8, Endian::Big, LengthIncludes::Body, 0, 1 << 20).unwrap();
    assert_eq!(
        framer.check(&[0xFF; 8]),
        FrameCheck::Invalid(FrameError::Oversize {
            declared: u64::MAX,
            max: 1 << 20
        })
    );
}

#[test]
fn field_sizes_other_than_1_2_4_8_are_invalid_input() {
    for size in [0, 3, 5, 6, 7, 9, 16, 255] {
        let err = LengthFramer::new(0, size, Endian::Big, LengthIncludes::Body, 0, 64)
            .expect_err("bad size");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "size {size}");
    }
}

#[test]
fn a_max_packet_smaller_than_the_header_is_invalid_input() {
    let err =
        LengthFramer::new(4, 4, Endian::Big, LengthIncludes::Body, 0, 7).expect_err("too small");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = LengthFramer::new(
        usize::MAX,
        8,
        Endian::Big,
        LengthIncludes::Body,
        0,
        usize::MAX,
    )
    .expect_err("offset overflows");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(LengthFramer::new(4, 4, Endian::Big, LengthIncludes::Body, 0, 8).is_ok());
}

#[test]
fn from_listen_takes_the_length_keys() {
    let listen = ListenSettings {
        max_packet: ByteSize(100),
        length_offset: 1,
        length_size: 2,
        length_endian: Endian::Little,
        length_includes: LengthIncludes::All,
        length_adjust: 1,
        ..ListenSettings::default()
    };
    let framer = LengthFramer::from_listen(&listen).expect("valid listener");
    assert_eq!(framer.max_packet(), 100);
    let mut buf = vec![0xEE, 9, 0];
    buf.resize(10, 0);
    assert_eq!(framer.check(&buf), FrameCheck::Complete(10));
}

#[test]
fn build_picks_the_framer_by_name() {
    let framer = framing::build(&ListenSettings::default()).expect("length framer");
    assert_eq!(framer.name(), "length");
    let unknown = ListenSettings {
        framing: "smtp".to_owned(),
        ..ListenSettings::default()
    };
    let err = framing::build(&unknown).expect_err("unknown framing");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("\"smtp\""), "{err}");
}

#[test]
fn known_framings_are_the_buildable_ones() {
    assert_eq!(
        framing::known_framings(),
        ["http", "length", "line", "memcache", "resp"]
    );
    assert!(framing::is_known("length"));
    assert!(!framing::is_known("Length"));
    assert!(!framing::is_known(""));
    for name in framing::known_framings() {
        let listen = ListenSettings {
            framing: name.clone(),
            ..ListenSettings::default()
        };
        assert_eq!(framing::build(&listen).expect("buildable").name(), name);
    }
}

#[test]
fn one_framer_can_be_shared_by_worker_threads() {
    let framer = framing::build(&ListenSettings::default()).expect("length framer");
    let workers: Vec<_> = (0..4u8)
        .map(|i| {
            let framer = std::sync::Arc::clone(&framer);
            std::thread::spawn(move || framer.check(&[0, 0, 0, 1, i]))
        })
        .collect();
    for worker in workers {
        assert_eq!(worker.join().expect("worker"), FrameCheck::Complete(5));
    }
}

#[test]
fn frame_errors_describe_themselves() {
    let oversize = FrameError::Oversize {
        declared: 20,
        max: 10,
    };
    assert_eq!(
        oversize.to_string(),
        "packet of 20 bytes exceeds the maximum of 10 bytes"
    );
    assert_eq!(
        FrameError::Malformed("bad magic").to_string(),
        "malformed packet: bad magic"
    );
}
