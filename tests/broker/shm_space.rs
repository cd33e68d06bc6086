//! A lanes' directory too small for the lanes: the start is refused with exit 2 and one line
//! naming the directory, the space needed and the space free; a directory that fills up after the
//! start never kills ccsd or MCP with SIGBUS, because every lane's space is reserved when it is
//! created. Each test mounts a small private tmpfs and skips (saying so) where it cannot.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestEnv, connect, packet, read_n};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct SmallTmpfs {
    dir: PathBuf,
}

impl SmallTmpfs {
    /// `None` (after printing why) where this process may not mount.
    fn mount(env: &TestEnv, size: &str) -> Option<SmallTmpfs> {
        let dir = env.dir.join("shm");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=1777"),
                "tmpfs",
            ])
            .arg(&dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallTmpfs { dir }),
            Ok(out) => {
                println!(
                    "skipped: cannot mount a tmpfs here ({})",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("skipped: cannot run mount(8): {e}");
                None
            }
        }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Points `env`'s lanes at `dir` with lanes of `capacity` and packets of at most `max_packet`.
fn use_lanes_in(env: &TestEnv, dir: &Path, capacity: &str, max_packet: &str) {
    let toml = std::fs::read_to_string(&env.config).unwrap();
    let toml = toml
        .replacen(
            "dir = \"/dev/shm\"",
            &format!(
                "dir = {:?}\ncapacity = {capacity:?}",
                dir.display().to_string()
            ),
            1,
        )
        .replacen(
            "[[listen]]\n",
            &format!("[[listen]]\nmax_packet = {max_packet:?}\n"),
            1,
        );
    std::fs::write(&env.config, toml).unwrap();
}

#[test]
fn a_lanes_directory_too_small_refuses_the_start_naming_the_space_needed_and_free() {
    let env = TestEnv::new(2, "", "");
    let Some(tmpfs) = SmallTmpfs::mount(&env, "8m") else {
        return;
    };
    // Two workers: three request lanes and the response lane, 4 MiB + 512 header bytes each.
    use_lanes_in(&env, &tmpfs.dir, "4MiB", "64KiB");
    let needed = 4 * ((4 << 20) + 512);
    let empty = rustix::fs::statvfs(&tmpfs.dir).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&env.config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    let expected = format!(
        "  queues.dir: {}: not enough space for the lanes: 16.0 MiB ({needed} bytes) needed, 8.0 MiB ({} bytes) free",
        tmpfs.dir.display(),
        empty.f_bavail * empty.f_frsize
    );
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.lines().any(|l| l.starts_with(&expected)),
        "{expected}\n{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&env.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let vfs = rustix::fs::statvfs(&tmpfs.dir).unwrap();
    let free = vfs.f_bavail * vfs.f_frsize;
    let expected = format!(
        "ccsd: queue: {}: not enough space for the lanes: 16.0 MiB ({needed} bytes) needed, 8.0 MiB ({free} bytes) free",
        tmpfs.dir.display()
    );
    assert!(
        stderr.lines().any(|l| l.starts_with(&expected)),
        "{expected}\n{stderr}"
    );
    // Refused before any lane was made: only the instance lock is there.
    let names: Vec<String> = std::fs::read_dir(&tmpfs.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [format!("{}.lock", env.name)]);
}

#[test]
fn a_full_lanes_directory_after_the_start_never_kills_ccsd_or_mcp() {
    let env = TestEnv::new(1, "", "");
    let Some(tmpfs) = SmallTmpfs::mount(&env, "8m") else {
        return;
    };
    // One worker: two request lanes and the response lane, 2 MiB each: 6 MiB of 8.
    use_lanes_in(&env, &tmpfs.dir, "2MiB", "64KiB");
    let mut ccsd = env.start_ccsd();
    let mut mcp = env.start_mcp("echo_mcp");

    // Someone else fills the tmpfs to the last byte.
    let mut filler = std::fs::File::create(tmpfs.dir.join("filler")).unwrap();
    let chunk = vec![0xa5u8; 4096];
    while filler.write_all(&chunk).is_ok() {}
    let vfs = rustix::fs::statvfs(&tmpfs.dir).unwrap();
    assert_eq!(vfs.f_bavail, 0, "the tmpfs should be full");

    // Twice around every lane: each of its pages is written and read.
    let mut client = connect(ccsd.addr());
    let body = vec![b'x'; 60 << 10];
    for i in 0..80u32 {
        let mut p = body.clone();
        p[..4].copy_from_slice(&i.to_be_bytes());
        let sent = packet(&p);
        client.write_all(&sent).unwrap();
        assert_eq!(read_n(&mut client, sent.len()), sent, "echo {i}");
    }
    assert!(ccsd.child.try_wait().unwrap().is_none(), "ccsd died");
    assert!(mcp.child.try_wait().unwrap().is_none(), "echo_mcp died");
    drop(client);
    ccsd.kill();
    mcp.kill();
}

#[test]
fn sparse_lanes_in_a_full_directory_refuse_mcp_and_ccsd_instead_of_a_sigbus() {
    let env = TestEnv::new(1, "", "");
    let Some(tmpfs) = SmallTmpfs::mount(&env, "8m") else {
        return;
    };
    use_lanes_in(&env, &tmpfs.dir, "2MiB", "64KiB");
    let mut ccsd = env.start_ccsd();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&ccsd.child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(ccsd.exit_code(), Some(0));

    // The lanes made sparse past their header page (as an older ccsd left them), then the
    // tmpfs filled by someone else.
    for lane in [format!("{}.rsp", env.name), format!("{}.req.0", env.name)] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(tmpfs.dir.join(lane))
            .unwrap();
        let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        rustix::fs::fallocate(&file, flags, 4096, 2 << 20).unwrap();
    }
    // The MCP lock as the MCP that ran beside that ccsd left it.
    std::fs::write(
        tmpfs.dir.join(format!("{}.mcp.lock", env.name)),
        format!("{:>10}\n", std::process::id()),
    )
    .unwrap();
    let mut filler = std::fs::File::create(tmpfs.dir.join("filler")).unwrap();
    let chunk = vec![0xa5u8; 4096];
    while filler.write_all(&chunk).is_ok() {}

    let dir_full = format!("{}: not enough space for the lanes: ", tmpfs.dir.display());
    // Under timeout(1): an MCP that attached anyway would serve forever.
    let mcp = Command::new("timeout")
        .arg(common::WAIT.as_secs().to_string())
        .arg(common::example_bin("echo_mcp"))
        .arg("--config")
        .arg(&env.config)
        .output()
        .unwrap();
    assert_eq!(mcp.status.code(), Some(2), "{mcp:?}");
    let stderr = String::from_utf8_lossy(&mcp.stderr);
    assert!(stderr.contains(&dir_full), "{stderr}");

    let ccsd = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&env.config)
        .output()
        .unwrap();
    assert_eq!(ccsd.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&ccsd.stderr);
    assert!(stderr.contains(&dir_full), "{stderr}");
}
