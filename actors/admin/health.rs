//! The node's health for load balancers and probes: `health` on the line protocol and
//! `GET /health` over HTTP, both answered without a token (they tell only whether this node
//! wants new connections), and `drain`, which makes the node stop wanting them.
//!
//! A node is `UP serving` while it accepts connections and MCP reads its lanes; `DOWN draining`
//! once it drains (admin `drain`, see `src/runtime/drain.rs`, or a graceful stop began);
//! `DOWN mcp` while the MCP watch finds MCP missing or stalled (so a node whose MCP is not up yet,
//! or gone, gets no new clients). A balancer's check matches `UP` at the start of the line.

use super::{AdminAction, AdminView};

/// Whether the node drains: the view says so, or a `drain` earlier in this turn asked for it
/// (`actions` are carried out, and the view renewed, once the client's lines are answered).
fn is_draining(view: &AdminView<'_>, actions: &[AdminAction]) -> bool {
    view.main.admin.draining != 0 || actions.contains(&AdminAction::Drain)
}

/// The health line (without its line end) and whether the node is up.
fn health(view: &AdminView<'_>, actions: &[AdminAction]) -> (&'static str, bool) {
    if is_draining(view, actions) {
        ("DOWN draining", false)
    } else if view.main.mcp_watch.mcp_alive == 0 {
        ("DOWN mcp", false)
    } else {
        ("UP serving", true)
    }
}

/// The answer to the `health` line command.
pub(super) fn health_line(view: &AdminView<'_>, actions: &[AdminAction]) -> String {
    format!("{}\r\n", health(view, actions).0)
}

/// The HTTP status and body of `GET /health`: 200 when up, else 503.
pub(super) fn health_http(view: &AdminView<'_>) -> (&'static str, String) {
    match health(view, &[]) {
        (line, true) => ("200 OK", format!("{line}\n")),
        (line, false) => ("503 Service Unavailable", format!("{line}\n")),
    }
}

/// The `drain` command: the first asks the main loop to mark the node draining
/// ([`AdminAction::Drain`]); later ones only say it is under way.
pub(super) fn drain(view: &AdminView<'_>, actions: &mut Vec<AdminAction>) -> String {
    if is_draining(view, actions) {
        return "OK already draining\r\n".into();
    }
    actions.push(AdminAction::Drain);
    "OK draining: health answers DOWN draining; connections are still accepted and served until the stop (SIGTERM)\r\n".into()
}
