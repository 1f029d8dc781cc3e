//! Batched datagram I/O: `recvmmsg` takes every query waiting on a socket in one system
//! call, `sendmmsg` sends every answer in one (as NSD and Knot do). A profile of the
//! one-datagram loop put a fifth of the server's CPU in sleeping and waking once per
//! query.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams taken per system call.
pub const BATCH: usize = 32;
/// A query larger than this is not a query spfd can answer; it is dropped (the flag
/// MSG_TRUNC says so).
const QUERY_MAX: usize = 4096;

/// Buffers for one batch: the queries received, their senders, and the answers.
pub struct Batch {
    queries: Vec<[u8; QUERY_MAX]>,
    lens: [usize; BATCH],
    truncated: [bool; BATCH],
    senders: Vec<libc::sockaddr_storage>,
    sender_lens: [libc::socklen_t; BATCH],
    received: usize,
    /// One answer per query (empty: nothing to send).
    pub answers: Vec<Vec<u8>>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            queries: vec![[0u8; QUERY_MAX]; BATCH],
            lens: [0; BATCH],
            truncated: [false; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            senders: vec![unsafe { zeroed() }; BATCH],
            sender_lens: [0; BATCH],
            received: 0,
            answers: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
        }
    }
}

impl Batch {
    /// Blocks until at least one datagram arrives (or the socket's read timeout passes),
    /// then takes whatever else is waiting, up to [`BATCH`].
    pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: self.queries[i].as_mut_ptr().cast(),
            iov_len: QUERY_MAX,
        });
        // SAFETY: mmsghdr is plain old data; the pointers set below outlive the call.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, h) in headers.iter_mut().enumerate() {
            h.msg_hdr.msg_name = (&mut self.senders[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points into buffers owned by `self` and `iovecs`, which
        // live until the call returns; the kernel writes at most the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        for (i, h) in headers.iter().take(self.received).enumerate() {
            self.lens[i] = h.msg_len as usize;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.sender_lens[i] = h.msg_hdr.msg_namelen;
        }
        Ok(self.received)
    }

    /// The `i`th datagram and its sender; `None` for one too large to be a query or
    /// from an address that cannot be answered.
    pub fn query(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.received || self.truncated[i] {
            return None;
        }
        let src = socket_addr(&self.senders[i], self.sender_lens[i]).filter(|a| a.port() != 0)?;
        Some((&self.queries[i][..self.lens[i]], src))
    }

    pub fn received(&self) -> usize {
        self.received
    }

    /// Sends every non-empty answer to the sender of its query, in as few system calls
    /// as the kernel allows.
    pub fn send(&mut self, socket: &UdpSocket) {
        // On the stack, not in a Vec: nothing allocated per batch.
        // SAFETY: iovec and mmsghdr are plain old data; all zeroes is a valid value.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut count = 0;
        for i in 0..self.received {
            if self.answers[i].is_empty() {
                continue;
            }
            iovecs[count] = libc::iovec {
                iov_base: self.answers[i].as_mut_ptr().cast(),
                iov_len: self.answers[i].len(),
            };
            let h = &mut headers[count].msg_hdr;
            h.msg_name = (&mut self.senders[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.sender_lens[i];
            h.msg_iov = &mut iovecs[count];
            h.msg_iovlen = 1;
            count += 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the first `count` headers point into `iovecs` and `self`, which
            // outlive the call; the kernel reads at most the lengths given.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers[sent..count].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                // This datagram could not be sent (the client went away): skip it.
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
    }
}

/// The sender's address as the kernel wrote it.
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is that long.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let v6 = SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id);
            Some(SocketAddr::V6(v6))
        }
        _ => None,
    }
}
