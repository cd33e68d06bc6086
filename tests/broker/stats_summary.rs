//! The one-line stats summary in the log: at info level every `stats.log_interval`.

use crate::common;

use common::{TestEnv, connect, packet, round_trip};

#[test]
fn the_summary_line_is_logged_at_info_level_every_log_interval() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("stats", "log_interval = \"50ms\"");
    let mut ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"counted"), packet(b"counted"));

    let line = ccsd.wait_for_line("1 packets in, 1 replies out");
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("1 open"), "{line}");
}
