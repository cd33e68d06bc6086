//! `include/ccsd_mcp.h` and the library agree: the header compiles cleanly as C11 and C++, and
//! a C program built from it prints the size and every field offset of `ccsd_mcp_record` and the
//! value of every constant, which must be the library's own.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use ccsd_mcp::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compiles `program` (C) against the header and runs it; its standard output.
fn run_c(program: &str, name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ccsd-mcp-header-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&source, program).unwrap();
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(root().join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().expect("run the program");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Every `#define CCSD_MCP_*` name in the header.
fn header_constants() -> Vec<String> {
    let header = std::fs::read_to_string(root().join("include/ccsd_mcp.h")).unwrap();
    header
        .lines()
        .filter_map(|l| l.strip_prefix("#define CCSD_MCP_"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| *name != "H")
        .map(|name| format!("CCSD_MCP_{name}"))
        .collect()
}

#[test]
fn record_layout_in_the_header_is_the_librarys() {
    let fields = [
        "flow",
        "timestamp_ns",
        "echo",
        "payload",
        "payload_len",
        "listen_port",
        "peer_port",
        "peer_addr",
        "kind",
        "code",
        "transport",
        "reserved",
    ];
    let mut program = String::from(
        "#include <ccsd_mcp.h>\n#include <stdio.h>\n#include <stddef.h>\nint main(void) {\n\
         printf(\"size %zu\\n\", sizeof(ccsd_mcp_record));\n",
    );
    for f in fields {
        program += &format!("printf(\"{f} %zu\\n\", offsetof(ccsd_mcp_record, {f}));\n");
    }
    program += "return 0;\n}\n";
    let expected = [
        ("size", size_of::<CcsdMcpRecord>()),
        ("flow", offset_of!(CcsdMcpRecord, flow)),
        ("timestamp_ns", offset_of!(CcsdMcpRecord, timestamp_ns)),
        ("echo", offset_of!(CcsdMcpRecord, echo)),
        ("payload", offset_of!(CcsdMcpRecord, payload)),
        ("payload_len", offset_of!(CcsdMcpRecord, payload_len)),
        ("listen_port", offset_of!(CcsdMcpRecord, listen_port)),
        ("peer_port", offset_of!(CcsdMcpRecord, peer_port)),
        ("peer_addr", offset_of!(CcsdMcpRecord, peer_addr)),
        ("kind", offset_of!(CcsdMcpRecord, kind)),
        ("code", offset_of!(CcsdMcpRecord, code)),
        ("transport", offset_of!(CcsdMcpRecord, transport)),
        ("reserved", offset_of!(CcsdMcpRecord, reserved)),
    ]
    .map(|(name, v)| format!("{name} {v}\n"))
    .concat();
    assert_eq!(run_c(&program, "layout"), expected);
}

#[test]
fn every_constant_in_the_header_has_the_librarys_value() {
    use ccsd::record::{CloseMode, CustomOp, Kind, Reason, Transport};
    let mut known: Vec<(&str, i64)> = vec![
        ("CCSD_MCP_OK", CCSD_MCP_OK.into()),
        ("CCSD_MCP_E_INVALID", CCSD_MCP_E_INVALID.into()),
        ("CCSD_MCP_E_NOT_READY", CCSD_MCP_E_NOT_READY.into()),
        ("CCSD_MCP_E_BUSY", CCSD_MCP_E_BUSY.into()),
        ("CCSD_MCP_E_LANE", CCSD_MCP_E_LANE.into()),
        ("CCSD_MCP_E_TOO_LARGE", CCSD_MCP_E_TOO_LARGE.into()),
        ("CCSD_MCP_E_IO", CCSD_MCP_E_IO.into()),
        ("CCSD_MCP_E_SETTINGS", CCSD_MCP_E_SETTINGS.into()),
        ("CCSD_MCP_E_INTERNAL", CCSD_MCP_E_INTERNAL.into()),
        ("CCSD_MCP_DATA", Kind::Data as i64),
        ("CCSD_MCP_CONNECT", Kind::Connect as i64),
        ("CCSD_MCP_DISCONNECT", Kind::Disconnect as i64),
        ("CCSD_MCP_CLOSE", Kind::Close as i64),
        ("CCSD_MCP_CUSTOM", Kind::Custom as i64),
        ("CCSD_MCP_TRANSPORT_NONE", Transport::None as i64),
        ("CCSD_MCP_TRANSPORT_TCP", Transport::Tcp as i64),
        ("CCSD_MCP_TRANSPORT_UDP", Transport::Udp as i64),
        (
            "CCSD_MCP_CLOSE_AFTER_FLUSH",
            CCSD_MCP_CLOSE_AFTER_FLUSH.into(),
        ),
        ("CCSD_MCP_CLOSE_FORCE", CCSD_MCP_CLOSE_FORCE.into()),
        ("CCSD_MCP_OP_CLOSE_PORT", CustomOp::ClosePort.code().into()),
        (
            "CCSD_MCP_OP_CLOSE_PORT_NOW",
            CustomOp::ClosePortNow.code().into(),
        ),
        ("CCSD_MCP_OP_BROADCAST", CustomOp::Broadcast.code().into()),
        ("CCSD_MCP_AT_MOST_ONCE", CCSD_MCP_AT_MOST_ONCE.into()),
        ("CCSD_MCP_AT_LEAST_ONCE", CCSD_MCP_AT_LEAST_ONCE.into()),
    ];
    assert_eq!(CCSD_MCP_CLOSE_AFTER_FLUSH, CloseMode::AfterFlush as i32);
    assert_eq!(CCSD_MCP_CLOSE_FORCE, CloseMode::Force as i32);
    for reason in Reason::ALL {
        let name = format!("CCSD_MCP_REASON_{}", reason.name().to_uppercase());
        known.push((Box::leak(name.into_boxed_str()), reason as i64));
    }
    let names = header_constants();
    let mut listed: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
    let mut declared: Vec<&str> = names.iter().map(String::as_str).collect();
    listed.sort_unstable();
    declared.sort_unstable();
    assert_eq!(declared, listed, "the header's constants are the library's");

    let mut program = String::from("#include <ccsd_mcp.h>\n#include <stdio.h>\nint main(void) {\n");
    for (name, _) in &known {
        program += &format!("printf(\"{name} %lld\\n\", (long long)({name}));\n");
    }
    program += "return 0;\n}\n";
    let expected: String = known.iter().map(|(n, v)| format!("{n} {v}\n")).collect();
    assert_eq!(run_c(&program, "constants"), expected);
}

#[test]
fn the_header_compiles_as_cpp_too() {
    let dir = std::env::temp_dir().join(format!("ccsd-mcp-cpp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("use.cpp");
    std::fs::write(
        &source,
        "#include <ccsd_mcp.h>\nint main() { ccsd_mcp_record r{}; return r.kind; }\n",
    )
    .unwrap();
    let out = Command::new("c++")
        .args([
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(root().join("include"))
        .arg(&source)
        .output()
        .expect("run c++");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "c++: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_python_module_declares_the_same_record_layout() {
    let python = root().join("python");
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import ccsd_mcp as m\n\
             print('size', __import__('ctypes').sizeof(m.Record))\n\
             for name, _ in m.Record._fields_: print(name, getattr(m.Record, name).offset)",
        )
        .env("PYTHONPATH", &python)
        .env(
            "LIBCCSD_MCP_PATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/libccsd_mcp.so"),
        )
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = [
        ("size", size_of::<CcsdMcpRecord>()),
        ("flow", offset_of!(CcsdMcpRecord, flow)),
        ("timestamp_ns", offset_of!(CcsdMcpRecord, timestamp_ns)),
        ("echo", offset_of!(CcsdMcpRecord, echo)),
        ("payload", offset_of!(CcsdMcpRecord, payload)),
        ("payload_len", offset_of!(CcsdMcpRecord, payload_len)),
        ("listen_port", offset_of!(CcsdMcpRecord, listen_port)),
        ("peer_port", offset_of!(CcsdMcpRecord, peer_port)),
        ("peer_addr", offset_of!(CcsdMcpRecord, peer_addr)),
        ("kind", offset_of!(CcsdMcpRecord, kind)),
        ("code", offset_of!(CcsdMcpRecord, code)),
        ("transport", offset_of!(CcsdMcpRecord, transport)),
        ("reserved", offset_of!(CcsdMcpRecord, reserved)),
    ]
    .map(|(name, v)| format!("{name} {v}\n"))
    .concat();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}
