//! The framer registry: the built-in framings by name, and framers users register themselves.

use std::io;
use std::sync::Arc;

use ccsd::framing::{
    self, FrameCheck, FrameError, Framer, FramerFactory, FramerRegistry, LineFramer, Progress,
};
use ccsd::settings::ListenSettings;

fn listen(framing: &str) -> ListenSettings {
    ListenSettings {
        framing: framing.to_owned(),
        ..ListenSettings::default()
    }
}

/// A factory for a line framer that ignores the listener's settings.
fn fixed_line_factory(max_packet: usize) -> FramerFactory {
    Arc::new(move |_: &ListenSettings| Ok(Arc::new(LineFramer::new(max_packet)) as Arc<dyn Framer>))
}

#[test]
fn the_builtin_registry_builds_every_known_framing_under_its_name() {
    let registry = FramerRegistry::builtin();
    assert_eq!(registry.names(), framing::known_framings());
    assert_eq!(
        registry.names(),
        ["http", "length", "line", "memcache", "resp"]
    );
    for name in &framing::known_framings() {
        assert!(registry.contains(name));
        assert!(framing::is_known(name));
        assert_eq!(registry.build(&listen(name)).expect("built").name(), name);
        assert_eq!(framing::build(&listen(name)).expect("built").name(), name);
    }
}

#[test]
fn an_unknown_framing_is_invalid_input_naming_it_and_the_known_ones() {
    let err = FramerRegistry::builtin()
        .build(&listen("smtp"))
        .expect_err("unknown");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "unknown framing \"smtp\", known framings: http, length, line, memcache, resp"
    );
    assert!(!framing::is_known("smtp"));
    assert!(!framing::is_known("HTTP"));
}

#[test]
fn an_empty_registry_knows_nothing_until_a_framer_is_registered() {
    let mut registry = FramerRegistry::empty();
    assert!(registry.names().is_empty());
    assert!(!registry.contains("length"));
    assert!(registry.build(&listen("length")).is_err());

    registry.register("lines", fixed_line_factory(10));
    assert!(registry.contains("lines"));
    let framer = registry.build(&listen("lines")).expect("registered");
    assert_eq!(framer.check(b"hi\n"), FrameCheck::Complete(3));
    assert_eq!(framer.max_packet(), 10);
}

#[test]
fn registering_a_name_again_replaces_its_factory() {
    let mut registry = FramerRegistry::builtin();
    registry.register("length", fixed_line_factory(7));
    assert_eq!(registry.names().len(), 5);
    let framer = registry.build(&listen("length")).expect("replaced");
    assert_eq!(framer.name(), "line");
    assert_eq!(framer.max_packet(), 7);
    // The built-in registry itself is unchanged.
    assert_eq!(
        framing::build(&listen("length")).expect("built").name(),
        "length"
    );
}

#[test]
fn user_framings_extend_a_clone_without_touching_the_original() {
    let builtin = FramerRegistry::builtin();
    let mut extended = builtin.clone();
    extended.register("custom", fixed_line_factory(5));
    assert_eq!(
        extended.names(),
        ["custom", "http", "length", "line", "memcache", "resp"]
    );
    assert!(!builtin.contains("custom"));
}

#[test]
fn a_factory_error_reaches_the_caller() {
    let mut registry = FramerRegistry::empty();
    registry.register(
        "picky",
        Arc::new(|_: &ListenSettings| Err(io::Error::new(io::ErrorKind::InvalidInput, "no"))),
    );
    let err = registry
        .build(&listen("picky"))
        .expect_err("factory refuses");
    assert_eq!(err.to_string(), "no");
}

#[test]
fn debug_output_lists_the_registered_names() {
    assert_eq!(
        format!("{:?}", FramerRegistry::builtin()),
        "FramerRegistry { names: [\"http\", \"length\", \"line\", \"memcache\", \"resp\"] }"
    );
}

#[test]
fn the_contract_check_catches_a_framer_that_splits_differently_by_read_size() {
    /// Takes whatever has arrived as one packet: the packets depend on how reads split.
    #[derive(Debug)]
    struct Greedy;
    impl Framer for Greedy {
        fn name(&self) -> &'static str {
            "greedy"
        }
        fn check(&self, buf: &[u8]) -> FrameCheck {
            if buf.is_empty() {
                FrameCheck::Incomplete
            } else {
                FrameCheck::Complete(buf.len())
            }
        }
        fn max_packet(&self) -> usize {
            100
        }
    }
    let broken = framing::check_contract(&Greedy, b"ab").expect_err("breaks the contract");
    assert!(broken.contains("Complete(2)"), "{broken}");
    framing::check_contract(&LineFramer::new(100), b"ab\ncd\n").expect("keeps it");
}

#[test]
fn the_contract_check_catches_a_framer_whose_resumed_answer_differs_from_one_shot() {
    /// Resumes a line search past the bytes it has seen, but records one byte too many: a `\n`
    /// arriving right after a read boundary is missed when the packet arrives in pieces.
    #[derive(Debug)]
    struct Skipping;
    impl Framer for Skipping {
        fn name(&self) -> &'static str {
            "skipping"
        }
        fn check(&self, buf: &[u8]) -> FrameCheck {
            self.check_from(buf, &mut Progress::default())
        }
        fn check_from(&self, buf: &[u8], progress: &mut Progress) -> FrameCheck {
            let from = progress.scanned.min(buf.len());
            match buf[from..].iter().position(|&b| b == b'\n') {
                Some(i) => FrameCheck::Complete(from + i + 1),
                None => {
                    progress.scanned = (buf.len() + 1).min(100);
                    FrameCheck::Incomplete
                }
            }
        }
        fn max_packet(&self) -> usize {
            100
        }
    }
    let broken = framing::check_contract(&Skipping, b"ab\ncd\n").expect_err("breaks it");
    assert!(broken.contains("check_from gave Incomplete"), "{broken}");
}

#[test]
fn a_stateless_framer_keeps_the_contract_through_the_default_check_from() {
    /// Packets end with a NUL byte; rescans from the start on every call.
    #[derive(Debug)]
    struct Nul;
    impl Framer for Nul {
        fn name(&self) -> &'static str {
            "nul"
        }
        fn check(&self, buf: &[u8]) -> FrameCheck {
            match buf.iter().take(10).position(|&b| b == 0) {
                Some(end) => FrameCheck::Complete(end + 1),
                None if buf.len() >= 10 => FrameCheck::Invalid(FrameError::Oversize {
                    declared: 11,
                    max: 10,
                }),
                None => FrameCheck::Incomplete,
            }
        }
        fn max_packet(&self) -> usize {
            10
        }
    }
    let mut progress = Progress::default();
    assert_eq!(Nul.check_from(b"ab", &mut progress), FrameCheck::Incomplete);
    assert_eq!(
        progress,
        Progress::default(),
        "a stateless framer leaves it alone"
    );
    assert_eq!(
        Nul.check_from(b"ab\0cd", &mut progress),
        FrameCheck::Complete(3)
    );
    framing::check_contract(&Nul, b"ab\0cd\0efghijklmn").expect("keeps it");
}
