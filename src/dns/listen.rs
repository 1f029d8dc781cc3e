//! Binding the listening sockets. The server takes sockets already bound, so tests can
//! bind port 0 and read the port back.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Receive buffer asked for each UDP socket: bursts wait in the kernel instead of being
/// dropped (the kernel caps it at net.core.rmem_max).
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Binds a blocking UDP socket with SO_REUSEPORT, so that several sockets (one per
/// worker thread) can share an address and the kernel spreads queries across them.
pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// How often a port-0 bind is retried when the port the kernel picked for UDP is
/// already taken for TCP (the two port spaces are separate; tests bind many servers).
const PICK_ATTEMPTS: usize = 32;

/// Binds `count` UDP sockets and one TCP listener on one address. With port 0, the
/// first socket's port is used by the others, so both protocols share it as on a real
/// server; if the kernel's pick is already taken for TCP, another port is picked.
pub fn bind_all(addr: SocketAddr, count: usize) -> io::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match bind_on(addr, count) {
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse && attempt < PICK_ATTEMPTS => {
                continue;
            }
            result => return result,
        }
    }
}

fn bind_on(addr: SocketAddr, count: usize) -> io::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let first = bind_udp(addr)?;
    let bound = first.local_addr()?;
    let mut udp = vec![first];
    for _ in 1..count {
        udp.push(bind_udp(bound)?);
    }
    let tcp = bind_tcp(bound)?;
    Ok((udp, tcp))
}
