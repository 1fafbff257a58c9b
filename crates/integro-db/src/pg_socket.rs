//! TCP_NODELAY on the connections to PostgreSQL. sqlx 0.9.0 stopped setting
//! it (launchbadge/sqlx#4335; fixed by #4336, not released yet), and without
//! it a statement larger than the socket's send buffer (a batch of webhooks'
//! rows) leaves in two writes, the second held by Nagle's algorithm until the
//! server's delayed ACK, which capped the webhook ingest on PostgreSQL
//! (ADR 0011). sqlx gives no access to its socket, so each new connection
//! looks its socket up among the process's open descriptors. Remove once the
//! sqlx in use sets TCP_NODELAY itself.

/// Sets TCP_NODELAY on every TCP socket of this process connected to `port`
/// (the database server's). Setting it twice, or on another connection to
/// that port, is harmless; a socket that refuses it keeps Nagle's algorithm.
pub fn set_nodelay_to_port(port: u16) {
    for_each_socket_to(port, |socket| {
        let _ = socket.set_tcp_nodelay(true);
    });
}

/// Calls `f` with each TCP socket of this process connected to `port`.
#[cfg(target_os = "linux")]
fn for_each_socket_to(port: u16, mut f: impl FnMut(socket2::SockRef<'_>)) {
    use std::os::fd::{BorrowedFd, RawFd};

    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in fds.flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
            .filter(|_| is_socket)
        else {
            continue;
        };
        // SAFETY: the descriptor was open a moment ago and is only borrowed
        // for a few socket options. Should another thread close it meanwhile
        // (and the number be reused), the calls fail or act on that other
        // descriptor's socket options; neither touches memory.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let to_port = socket
            .peer_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .is_some_and(|addr| addr.port() == port);
        if to_port {
            f(socket);
        }
    }
}

/// Elsewhere the connections keep Nagle's algorithm (slower, not wrong).
#[cfg(not(target_os = "linux"))]
fn for_each_socket_to(_port: u16, _f: impl FnMut(socket2::SockRef<'_>)) {}

/// How many TCP sockets of this process are connected to `port`, and how
/// many of them have TCP_NODELAY (for the tests).
#[doc(hidden)]
pub fn nodelay_to_port(port: u16) -> (usize, usize) {
    let (mut total, mut with) = (0, 0);
    for_each_socket_to(port, |socket| {
        total += 1;
        with += usize::from(socket.tcp_nodelay().unwrap_or(false));
    });
    (total, with)
}
