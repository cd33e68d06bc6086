//! The C snippets of `docs/protocol.md` compile: every ```c block, in order, as one C11 file
//! with warnings as errors (the static asserts on byte order and lock-free atomics included).

use std::path::Path;
use std::process::Command;

#[test]
fn the_c_snippets_of_the_protocol_document_compile_as_one_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/protocol.md")).unwrap();
    let mut source = String::new();
    let mut in_c = false;
    for line in doc.lines() {
        match (in_c, line.trim_end()) {
            (false, "```c") => in_c = true,
            (true, "```") => in_c = false,
            (true, code) => {
                source += code;
                source.push('\n');
            }
            _ => {}
        }
    }
    assert!(source.contains("lane_attach") && source.contains("mcp_lock"));
    let dir = std::env::temp_dir().join(format!("ccsd-snippets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("protocol.c");
    std::fs::write(&file, &source).unwrap();
    let out = Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-function",
            "-c",
            "-o",
        ])
        .arg(dir.join("protocol.o"))
        .arg(&file)
        .output()
        .expect("run cc");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "the C snippets of docs/protocol.md do not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
