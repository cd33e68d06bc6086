use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;

use rustix::fs::{MemfdFlags, Stat};
use rustix::io::FdFlags;

use super::bulk::{BATCH_MAGIC, BULK_MAGIC, BULK_VERSION, MAX_BULK_FDS, sealed_memfd};
use super::*;

/// Both ends of a connected SEQPACKET pair, non-blocking and close-on-exec as accepted ones are.
fn pair() -> (HandoverConn, HandoverConn) {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair");
    (HandoverConn { fd: a }, HandoverConn { fd: b })
}

/// A path in the temp dir unique to this test and process, nothing there.
fn temp_path(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "ccsd-handovertest-{tag}-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// `count` descriptors of distinct files (memfds, one inode each).
fn files(count: usize) -> Vec<OwnedFd> {
    named_files(count, "ccsd-handovertest")
}

/// `count` memfds named `name`, to be counted by [`open_named`].
fn named_files(count: usize, name: &str) -> Vec<OwnedFd> {
    (0..count)
        .map(|_| rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC).unwrap())
        .collect()
}

/// How many descriptors of this process are memfds named `name` (other tests running meanwhile
/// open and close their own).
fn open_named(name: &str) -> usize {
    let target = format!("/memfd:{name} ");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|link| link.to_string_lossy().starts_with(&target))
        .count()
}

fn borrowed(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}

fn identity(fd: BorrowedFd<'_>) -> (u64, u64) {
    let stat: Stat = rustix::fs::fstat(fd).unwrap();
    (stat.st_dev, stat.st_ino)
}

/// Every received descriptor is close-on-exec, a descriptor of its own, and the same file as the
/// one sent at its position.
fn assert_same_files(sent: &[OwnedFd], received: &[OwnedFd]) {
    assert_eq!(received.len(), sent.len());
    for (sent, received) in sent.iter().zip(received) {
        assert_ne!(sent.as_raw_fd(), received.as_raw_fd());
        assert_eq!(identity(sent.as_fd()), identity(received.as_fd()));
        let flags = rustix::io::fcntl_getfd(received).unwrap();
        assert!(flags.contains(FdFlags::CLOEXEC), "received without CLOEXEC");
    }
}

#[test]
fn messages_with_0_1_and_253_descriptors_arrive_whole_and_close_on_exec() {
    let (a, b) = pair();
    for count in [0, 1, MAX_FDS_PER_MESSAGE] {
        let sent = files(count);
        let msg = format!("message with {count} descriptors").into_bytes();
        a.send(&msg, &borrowed(&sent)).unwrap();
        let got = b.recv(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(got.bytes, msg);
        assert_same_files(&sent, &got.fds);
    }
    // And the other way.
    b.send(b"back", &[]).unwrap();
    assert_eq!(a.recv(Some(Duration::from_secs(5))).unwrap().bytes, b"back");
}

#[test]
fn more_than_253_descriptors_or_64_kib_are_refused_before_sending() {
    let (a, b) = pair();
    let sent = files(MAX_FDS_PER_MESSAGE + 1);
    let err = a.send(b"x", &borrowed(&sent)).unwrap_err();
    assert!(
        matches!(
            err,
            ChannelError::TooLarge {
                found: 254,
                max: 253,
                ..
            }
        ),
        "{err}"
    );
    let err = a.send(&vec![7; MAX_MESSAGE + 1], &[]).unwrap_err();
    assert!(matches!(err, ChannelError::TooLarge { .. }), "{err}");
    a.send(&vec![7; MAX_MESSAGE], &[]).unwrap();
    let got = b.recv(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(got.bytes.len(), MAX_MESSAGE);
    // Nothing else was sent.
    let err = b.recv(Some(Duration::from_millis(20))).unwrap_err();
    assert!(
        matches!(err, ChannelError::TimedOut { step: Step::Recv }),
        "{err}"
    );
}

#[test]
fn a_bulk_of_1000_descriptors_and_a_mebibyte_arrives_whole() {
    let (a, b) = pair();
    let sent = files(1000);
    let bytes: Vec<u8> = (0..1_048_583u32).map(|i| (i * 31 % 251) as u8).collect();
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| a.send_bulk(&bytes, &borrowed(&sent)));
        let got = b.recv_bulk(Some(Duration::from_secs(10))).unwrap();
        sender.join().unwrap().unwrap();
        assert_eq!(got.bytes, bytes);
        assert_same_files(&sent, &got.fds);
    });
    // Exactly header + ceil(1000 / 253) = 4 batches were sent: nothing is left.
    let err = b.recv(Some(Duration::from_millis(20))).unwrap_err();
    assert!(matches!(err, ChannelError::TimedOut { .. }), "{err}");
}

#[test]
fn an_empty_bulk_arrives_empty() {
    let (a, b) = pair();
    a.send_bulk(&[], &[]).unwrap();
    let got = b.recv_bulk(Some(Duration::from_secs(5))).unwrap();
    assert!(got.bytes.is_empty() && got.fds.is_empty());
}

#[test]
fn a_bulk_header_claiming_more_than_the_bounds_is_refused() {
    let (a, b) = pair();
    let memfd = sealed_memfd(b"abc").unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&BULK_MAGIC);
    header.extend_from_slice(&BULK_VERSION.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&(MAX_BULK_FDS + 1).to_le_bytes());
    header.extend_from_slice(&3u64.to_le_bytes());
    a.send(&header, &[memfd.as_fd()]).unwrap();
    let err = b.recv_bulk(Some(Duration::from_secs(5))).unwrap_err();
    assert!(matches!(err, ChannelError::TooLarge { .. }), "{err}");
}

#[test]
fn a_bulk_memfd_of_another_size_than_announced_is_refused() {
    let (a, b) = pair();
    let memfd = sealed_memfd(b"abc").unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&BULK_MAGIC);
    header.extend_from_slice(&BULK_VERSION.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&0u64.to_le_bytes());
    header.extend_from_slice(&(1u64 << 30).to_le_bytes());
    a.send(&header, &[memfd.as_fd()]).unwrap();
    let err = b.recv_bulk(Some(Duration::from_secs(5))).unwrap_err();
    assert!(
        matches!(err, ChannelError::BadFraming { reason } if reason.contains("size")),
        "{err}"
    );
}

#[test]
fn a_bulk_memfd_that_is_not_sealed_is_refused() {
    let (a, b) = pair();
    let memfd = File::from(rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC).unwrap());
    (&memfd).write_all(b"abc").unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&BULK_MAGIC);
    header.extend_from_slice(&BULK_VERSION.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&0u64.to_le_bytes());
    header.extend_from_slice(&3u64.to_le_bytes());
    a.send(&header, &[memfd.as_fd()]).unwrap();
    let err = b.recv_bulk(Some(Duration::from_secs(5))).unwrap_err();
    assert!(
        matches!(err, ChannelError::BadFraming { reason } if reason.contains("sealed")),
        "{err}"
    );
}

#[test]
fn a_bulk_batch_with_fewer_descriptors_than_announced_is_refused() {
    let (a, b) = pair();
    let memfd = sealed_memfd(b"").unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&BULK_MAGIC);
    header.extend_from_slice(&BULK_VERSION.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&2u64.to_le_bytes());
    header.extend_from_slice(&0u64.to_le_bytes());
    a.send(&header, &[memfd.as_fd()]).unwrap();
    let sent = files(1);
    let mut batch = Vec::new();
    batch.extend_from_slice(&BATCH_MAGIC);
    batch.extend_from_slice(&0u32.to_le_bytes());
    batch.extend_from_slice(&1u32.to_le_bytes());
    a.send(&batch, &borrowed(&sent)).unwrap();
    let err = b.recv_bulk(Some(Duration::from_secs(5))).unwrap_err();
    assert!(matches!(err, ChannelError::BadFraming { .. }), "{err}");
}

#[test]
fn descriptors_beyond_the_control_buffer_give_truncated_and_none_leak() {
    let (a, b) = pair();
    let name = "ccsd-handovertest-ctrunc";
    let sent = named_files(10, name);
    a.send(b"ten", &borrowed(&sent)).unwrap();
    // Room for 2 descriptors only.
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut buf = [0; 16];
    let deadline = Some(Instant::now() + Duration::from_secs(5));
    let err = b.recv_into(deadline, &mut buf, &mut space).unwrap_err();
    assert!(matches!(err, ChannelError::Truncated), "{err}");
    assert_eq!(open_named(name), 10, "a received descriptor was kept open");
}

#[test]
fn a_message_longer_than_the_receive_buffer_gives_truncated() {
    let (a, b) = pair();
    let name = "ccsd-handovertest-trunc";
    let sent = named_files(3, name);
    // Past what `send` allows, straight through the socket.
    let big = vec![1u8; MAX_MESSAGE + 10];
    let sent_fds = borrowed(&sent);
    let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&sent_fds)));
    rustix::net::sendmsg(
        &a.fd,
        &[IoSlice::new(&big)],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap();
    let err = b.recv(Some(Duration::from_secs(5))).unwrap_err();
    assert!(matches!(err, ChannelError::Truncated), "{err}");
    assert_eq!(open_named(name), 3, "a received descriptor was kept open");
}

#[test]
fn the_peer_closing_gives_closed_and_silence_gives_timed_out() {
    let (a, b) = pair();
    let err = b.recv(Some(Duration::from_millis(20))).unwrap_err();
    assert!(
        matches!(err, ChannelError::TimedOut { step: Step::Recv }),
        "{err}"
    );
    a.send(b"last words", &[]).unwrap();
    drop(a);
    assert_eq!(b.recv(None).unwrap().bytes, b"last words");
    let err = b.recv(None).unwrap_err();
    assert!(matches!(err, ChannelError::Closed), "{err}");
    let err = b.send(b"anyone?", &[]).unwrap_err();
    assert!(matches!(err, ChannelError::Closed), "{err}");
}

#[test]
fn a_peer_of_another_uid_is_refused() {
    let (a, _b) = pair();
    let ours = rustix::process::geteuid();
    check_peer(&a.fd, ours).expect("our own uid passes");
    let other = Uid::from_raw(ours.as_raw().wrapping_add(1));
    let err = check_peer(&a.fd, other).unwrap_err();
    assert!(
        matches!(err, ChannelError::ForeignPeer { uid } if uid == ours.as_raw()),
        "{err}"
    );
}

#[test]
fn listener_and_connect_talk_and_the_socket_file_is_0600_and_removed_on_drop() {
    let path = temp_path("listen");
    let listener = HandoverListener::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(listener.accept().unwrap().is_none(), "nobody waits yet");
    let client = HandoverConn::connect(&path, Duration::from_secs(5)).unwrap();
    let server = loop {
        wait_for(
            &listener.fd,
            PollFlags::IN,
            Some(Instant::now() + Duration::from_secs(5)),
            Step::Accept,
        )
        .unwrap();
        if let Some(server) = listener.accept().unwrap() {
            break server;
        }
    };
    let sent = files(2);
    client.send(b"hello", &borrowed(&sent)).unwrap();
    let got = server.recv(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(got.bytes, b"hello");
    assert_same_files(&sent, &got.fds);
    server.send(b"offer", &[]).unwrap();
    assert_eq!(
        client.recv(Some(Duration::from_secs(5))).unwrap().bytes,
        b"offer"
    );
    drop(listener);
    assert!(!path.exists(), "the socket file outlives its listener");
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_not() {
    let path = temp_path("stale");
    // A stale socket: bound, then its listener gone.
    drop(UnixListener::bind(&path).unwrap());
    let live = HandoverListener::bind(&path).expect("replaces the stale socket");
    let err = HandoverListener::bind(&path).expect_err("a live socket is not replaced");
    assert!(
        matches!(&err, ChannelError::Io { step: Step::Bind, source } if source.kind() == io::ErrorKind::AddrInUse),
        "{err}"
    );
    assert!(err.to_string().contains("listens on it"), "{err}");
    // The refused bind left the live one's file alone.
    assert!(path.exists());
    drop(live);
    assert!(!path.exists());
}

#[test]
fn a_stale_socket_of_another_user_is_left_alone() {
    let path = temp_path("foreign");
    drop(UnixListener::bind(&path).unwrap());
    let other = Uid::from_raw(rustix::process::geteuid().as_raw().wrapping_add(1));
    let err = remove_if_stale(&path, SocketType::SEQPACKET, Some(other)).expect_err("not ours");
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert!(path.exists());
    remove_if_stale(
        &path,
        SocketType::SEQPACKET,
        Some(rustix::process::geteuid()),
    )
    .expect("ours and stale");
    assert!(!path.exists());
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let path = temp_path("file");
    std::fs::write(&path, b"precious").unwrap();
    let err = HandoverListener::bind(&path).expect_err("not a socket");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn connecting_where_nobody_listens_fails_at_connect() {
    let path = temp_path("nobody");
    let err = HandoverConn::connect(&path, Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(
            err,
            ChannelError::Io {
                step: Step::Connect,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

#[test]
fn connecting_to_a_listener_whose_queue_stays_full_times_out() {
    let path = temp_path("full");
    let _listener = HandoverListener::bind(&path).unwrap();
    // Nobody accepts: the queue fills after a few connections, then connect waits and gives up.
    let mut waiting = Vec::new();
    let err = loop {
        match HandoverConn::connect(&path, Duration::from_millis(50)) {
            Ok(conn) => waiting.push(conn),
            Err(err) => break err,
        }
        assert!(
            waiting.len() <= 2 * BACKLOG as usize,
            "the queue never fills"
        );
    };
    assert!(
        matches!(
            err,
            ChannelError::TimedOut {
                step: Step::Connect
            }
        ),
        "{err}"
    );
    assert!(
        waiting.len() >= BACKLOG as usize,
        "{} connected",
        waiting.len()
    );
}
