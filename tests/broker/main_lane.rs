//! The main thread's request lane: ccsd creates one request lane per worker plus one for its main
//! thread, and tells MCP so in the response lane's header.

use crate::common;

use ccsd::mcp::McpEndpoint;
use common::{TestEnv, WAIT};

#[test]
fn mcp_finds_one_request_lane_per_worker_and_one_for_the_main_thread() {
    let env = TestEnv::new(3, "", "");
    let _ccsd = env.start_ccsd();
    let settings = env.settings();
    let mcp = McpEndpoint::attach_wait(&settings, WAIT).unwrap();
    assert_eq!(mcp.request_lanes(), 4);
    assert!(settings.request_lane_path(3).exists());
    assert!(!settings.request_lane_path(4).exists());
    // The MCP watch looks at the main thread's lane too: MCP is up once it reads all four.
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 1);
}
