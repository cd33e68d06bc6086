//! The bulk: every connection of a process (descriptors and state bytes) in few messages
//! (`docs/hot-restart.md`, "Bulk"). A header message with both counts and a sealed memfd holding
//! the bytes, then the descriptors in batches of at most [`MAX_FDS_PER_MESSAGE`]. The receiver
//! believes no count beyond [`MAX_BULK_FDS`] and [`MAX_BULK_BYTES`] and the memfd's real size.

use std::fs::File;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, SealFlags};

use super::{
    CONTROL_SPACE, ChannelError, HandoverConn, MAX_FDS_PER_MESSAGE, Received, Step, check_at_most,
};

/// The most descriptors a bulk may announce.
pub(crate) const MAX_BULK_FDS: u64 = 1 << 20;
/// The most bytes a bulk may announce (16 GiB).
pub(crate) const MAX_BULK_BYTES: u64 = 16 << 30;
/// The first four bytes of a bulk's header message.
pub(super) const BULK_MAGIC: [u8; 4] = *b"CCSB";
/// The first four bytes of each of a bulk's descriptor batches.
pub(super) const BATCH_MAGIC: [u8; 4] = *b"CCSF";
/// The bulk framing version written and the only one read.
pub(super) const BULK_VERSION: u16 = 1;
/// Bytes of a bulk header: magic, version `u16`, zero `u16`, descriptors `u64`, bytes `u64`.
pub(super) const BULK_HEADER_LEN: usize = 24;
/// Bytes of a batch message: magic, batch index `u32`, descriptors in it `u32`.
pub(super) const BATCH_LEN: usize = 12;
/// The seals a bulk's memfd must carry: its size and bytes are fixed.
pub(super) const BULK_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

impl HandoverConn {
    /// Sends `bytes` and `fds` as a bulk: a header message with both counts and a sealed memfd
    /// holding the bytes, then the descriptors in batches of at most [`MAX_FDS_PER_MESSAGE`].
    pub(crate) fn send_bulk(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ChannelError> {
        check_at_most("descriptors in a bulk", fds.len() as u64, MAX_BULK_FDS)?;
        check_at_most("bytes in a bulk", bytes.len() as u64, MAX_BULK_BYTES)?;
        let memfd = sealed_memfd(bytes).map_err(|source| ChannelError::Io {
            step: Step::Memfd,
            source,
        })?;
        let mut header = Vec::with_capacity(BULK_HEADER_LEN);
        header.extend_from_slice(&BULK_MAGIC);
        header.extend_from_slice(&BULK_VERSION.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(&(fds.len() as u64).to_le_bytes());
        header.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.send(&header, &[memfd.as_fd()])?;
        for (index, batch) in fds.chunks(MAX_FDS_PER_MESSAGE).enumerate() {
            let mut msg = [0; BATCH_LEN];
            msg[..4].copy_from_slice(&BATCH_MAGIC);
            msg[4..8].copy_from_slice(&(index as u32).to_le_bytes());
            msg[8..].copy_from_slice(&(batch.len() as u32).to_le_bytes());
            self.send(&msg, batch)?;
        }
        Ok(())
    }

    /// Receives a bulk sent by [`send_bulk`](HandoverConn::send_bulk), all of it within
    /// `timeout` (`None`: no limit). Counts beyond [`MAX_BULK_FDS`] or [`MAX_BULK_BYTES`], a
    /// memfd that is not sealed or whose size differs from the header, and batches out of order
    /// or of the wrong size are refused.
    pub(crate) fn recv_bulk(&self, timeout: Option<Duration>) -> Result<Received, ChannelError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
        // Exactly as long as a header: a longer message arrives cut and is refused.
        let mut header = [0; BULK_HEADER_LEN];
        let (len, header_fds) = self.recv_into(deadline, &mut header, &mut space)?;
        let (fd_count, byte_len) = read_bulk_header(&header[..len])?;
        let [memfd] =
            <[OwnedFd; 1]>::try_from(header_fds).map_err(|_| ChannelError::BadFraming {
                reason: "a bulk header must carry exactly one descriptor, the memfd",
            })?;
        check_at_most("descriptors in a bulk", fd_count, MAX_BULK_FDS)?;
        check_at_most("bytes in a bulk", byte_len, MAX_BULK_BYTES)?;
        let bytes = read_memfd(memfd, byte_len)?;
        // Bounded by MAX_BULK_FDS above.
        let mut fds = Vec::with_capacity(fd_count as usize);
        let mut index: u32 = 0;
        while (fds.len() as u64) < fd_count {
            let mut head = [0; BATCH_LEN];
            let (len, batch_fds) = self.recv_into(deadline, &mut head, &mut space)?;
            let expected = (fd_count - fds.len() as u64).min(MAX_FDS_PER_MESSAGE as u64);
            if len != BATCH_LEN || head[..4] != BATCH_MAGIC {
                return Err(ChannelError::BadFraming {
                    reason: "a bulk's descriptor batch has the wrong size or magic",
                });
            };
            let found_index = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            let declared = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
            if found_index != index {
                return Err(ChannelError::BadFraming {
                    reason: "a bulk's descriptor batches arrive out of order",
                });
            }
            if u64::from(declared) != expected || batch_fds.len() as u64 != expected {
                return Err(ChannelError::BadFraming {
                    reason: "a bulk's descriptor batch carries a number other than the header implies",
                });
            }
            fds.extend(batch_fds);
            index += 1;
        }
        Ok(Received { bytes, fds })
    }
}

/// A memfd holding `bytes`, sealed so that neither its size nor its bytes can change.
pub(super) fn sealed_memfd(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        "ccsd-handover",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    rustix::fs::fcntl_add_seals(&file, BULK_SEALS | SealFlags::SEAL)?;
    Ok(OwnedFd::from(file))
}

/// The descriptor and byte counts of a bulk header.
pub(super) fn read_bulk_header(bytes: &[u8]) -> Result<(u64, u64), ChannelError> {
    let Some(head) = <&[u8; BULK_HEADER_LEN]>::try_from(bytes)
        .ok()
        .filter(|head| head[..4] == BULK_MAGIC)
    else {
        return Err(ChannelError::BadFraming {
            reason: "a bulk header has the wrong size or magic",
        });
    };
    if u16::from_le_bytes([head[4], head[5]]) != BULK_VERSION {
        return Err(ChannelError::BadFraming {
            reason: "a bulk header of another version",
        });
    }
    let mut fd_count = [0; 8];
    let mut byte_len = [0; 8];
    fd_count.copy_from_slice(&head[8..16]);
    byte_len.copy_from_slice(&head[16..]);
    Ok((u64::from_le_bytes(fd_count), u64::from_le_bytes(byte_len)))
}

/// The bytes of a bulk's memfd, which must be sealed and hold exactly `len` bytes.
pub(super) fn read_memfd(memfd: OwnedFd, len: u64) -> Result<Vec<u8>, ChannelError> {
    let memfd_err = ChannelError::io(Step::Memfd);
    let seals = rustix::fs::fcntl_get_seals(&memfd).map_err(memfd_err)?;
    if !seals.contains(BULK_SEALS) {
        return Err(ChannelError::BadFraming {
            reason: "a bulk's memfd is not sealed against shrinking, growing and writing",
        });
    }
    let size = rustix::fs::fstat(&memfd)
        .map_err(ChannelError::io(Step::Memfd))?
        .st_size;
    if u64::try_from(size) != Ok(len) {
        return Err(ChannelError::BadFraming {
            reason: "a bulk's memfd size differs from its header",
        });
    }
    let len = usize::try_from(len).map_err(|_| ChannelError::TooLarge {
        what: "bytes in a bulk",
        found: len,
        max: usize::MAX as u64,
    })?;
    // Sealed at exactly this size: the allocation is what the peer really wrote.
    let mut bytes = vec![0; len];
    File::from(memfd)
        .read_exact_at(&mut bytes, 0)
        .map_err(|source| ChannelError::Io {
            step: Step::Memfd,
            source,
        })?;
    Ok(bytes)
}
