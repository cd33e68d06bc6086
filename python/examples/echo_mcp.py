"""Echo MCP in Python: answers every client packet with the same bytes.

    PYTHONPATH=python python3 python/examples/echo_mcp.py ccsd.toml [at-least-once]
"""
import sys

import ccsd_mcp


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} SETTINGS.toml [at-least-once]")
    delivery = ccsd_mcp.AT_LEAST_ONCE if sys.argv[2:] == ["at-least-once"] else ccsd_mcp.AT_MOST_ONCE
    try:
        mcp = ccsd_mcp.attach(sys.argv[1], delivery=delivery)
    except ccsd_mcp.McpError as e:
        sys.exit(f"py_echo_mcp: {e}")
    print(f"py_echo_mcp attached: {mcp.request_lanes} request lanes", file=sys.stderr, flush=True)
    with mcp:
        for req in mcp:
            if req.kind == ccsd_mcp.DATA:
                mcp.reply(req, req.payload)
            elif req.kind == ccsd_mcp.DISCONNECT:
                print(f"py_echo_mcp: disconnect {req.flow:#x} reason {req.code}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
