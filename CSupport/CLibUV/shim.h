// The one C header DyninkaLoop sees: libuv plus small casts that Swift cannot express tersely.
#ifndef DYNINKA_CLIBUV_SHIM_H
#define DYNINKA_CLIBUV_SHIM_H

#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline uv_handle_t *dyn_tcp_handle(uv_tcp_t *h) { return (uv_handle_t *)h; }
static inline uv_stream_t *dyn_tcp_stream(uv_tcp_t *h) { return (uv_stream_t *)h; }
static inline uv_handle_t *dyn_timer_handle(uv_timer_t *h) { return (uv_handle_t *)h; }
static inline uv_handle_t *dyn_async_handle(uv_async_t *h) { return (uv_handle_t *)h; }
static inline uv_handle_t *dyn_signal_handle(uv_signal_t *h) { return (uv_handle_t *)h; }
static inline uv_handle_t *dyn_check_handle(uv_check_t *h) { return (uv_handle_t *)h; }
static inline uv_handle_t *dyn_prepare_handle(uv_prepare_t *h) { return (uv_handle_t *)h; }
static inline const struct sockaddr *dyn_sockaddr(const struct sockaddr_storage *s) {
    return (const struct sockaddr *)s;
}

/// Sets SO_LINGER to zero so that close() sends RST and leaves no TIME_WAIT entry.
static inline int dyn_tcp_set_linger_zero(uv_tcp_t *h) {
    uv_os_fd_t fd;
    int r = uv_fileno((uv_handle_t *)h, &fd);
    if (r != 0) return r;
    struct linger l = { 1, 0 };
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0 ? 0 : UV_EINVAL;
}

/// A TCP socket for `family` with SO_REUSEADDR and SO_REUSEPORT set, so that a replacement
/// process can bind the same port while the old one drains; with `freebind`, also IP_FREEBIND,
/// so that it can bind an address the machine does not have yet (a moving service's new host
/// listens before its address arrives). Returns the fd, or -1.
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78 /* linux/in6.h; glibc's netinet/in.h lacks it */
#endif
static inline int dyn_reuseport_socket(int family, int freebind) {
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0
        || (freebind && setsockopt(fd, family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP,
                                   family == AF_INET6 ? IPV6_FREEBIND : IP_FREEBIND, &one, sizeof one) != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

/// TCP_DEFER_ACCEPT: wake the accept only once the client's first bytes are in, saving a loop
/// iteration per connection (every hop sends its request right after connecting).
static inline int dyn_tcp_defer_accept(uv_tcp_t *h) {
    uv_os_fd_t fd;
    int r = uv_fileno((uv_handle_t *)h, &fd);
    if (r != 0) return r;
    int seconds = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds) == 0 ? 0 : UV_EINVAL;
}

/// Closes the socket of a TCP handle the loop never watched (it never read through the loop,
/// and every write went out at once), so that libuv's close skips its epoll_ctl(EPOLL_CTL_DEL):
/// a socket never added to epoll has nothing to remove and no stale event to drop, and libuv
/// leaves a watcher whose fd is -1 alone. The caller knows it never started watching; the
/// watcher's own masks are checked too. Returns 1 when it closed the socket, 0 otherwise.
static inline int dyn_tcp_close_unwatched(uv_tcp_t *h) {
    if (h->io_watcher.fd < 0 || h->io_watcher.pevents != 0 || h->io_watcher.events != 0) return 0;
    int fd = h->io_watcher.fd;
    h->io_watcher.fd = -1;
    close(fd);
    return 1;
}

/// libuv's own readiness callback of a listening stream, kept for the accept errors only it
/// knows how to handle (EMFILE and ENFILE: its reserve-descriptor trick sheds the connection).
static uv__io_cb dyn_libuv_server_io = NULL;
/// accept4 calls made by `dyn_server_io_counted` on this thread (a loop runs on one thread), for tests.
static __thread unsigned long dyn_accept_calls_made = 0;

/// The most connections a listener takes per readiness event, so that other events get their turn.
#define DYN_ACCEPT_BATCH 32

/// A listener's readiness callback that accepts exactly the connections its queue holds. libuv's
/// accepts until accept4 fails with EAGAIN, and that failure is dear: the kernel makes the new
/// socket and its inode before it looks at the queue (3.2 us a call on the 2-core VM of
/// bench/results, against 0.14 us for getppid; bench/syscall_cost.c measures both). With
/// connections coming one at a time, as they do on a hop, that is one failed call per
/// connection. Asking the listener how many wait (TCP_INFO: `tcpi_unacked` is the accept queue's
/// length on a listening socket) costs 0.35 us and one call per event, however many wait. epoll
/// is level-triggered: what is left beyond the batch wakes the loop again at once. The
/// connection callback is libuv's, so `uv_accept` takes the socket as usual.
static inline void dyn_server_io_counted(uv_loop_t *loop, uv__io_t *w, unsigned int events) {
    uv_stream_t *stream = (uv_stream_t *)((char *)w - offsetof(uv_stream_t, io_watcher));
    if (stream->accepted_fd != -1 || stream->connection_cb == NULL) return;
    struct tcp_info info;
    socklen_t length = sizeof info;
    unsigned waiting = 1; /* readable: at least one, unless the kernel cannot say */
    if (getsockopt(w->fd, IPPROTO_TCP, TCP_INFO, &info, &length) == 0 && length >= offsetof(struct tcp_info, tcpi_unacked) + sizeof info.tcpi_unacked)
        waiting = info.tcpi_unacked;
    /* A count of 0 on a readable listener (a connection that left the queue in between): one
       try anyway, so that every readiness epoll reports gets an accept. */
    if (waiting == 0) waiting = 1;
    if (waiting > DYN_ACCEPT_BATCH) waiting = DYN_ACCEPT_BATCH;
    for (unsigned taken = 0; taken < waiting; taken++) {
        dyn_accept_calls_made++;
        int fd;
        /* accept4 through syscall(2): its glibc prototype needs _GNU_SOURCE, which would give
           this module other glibc declarations than Swift's Glibc module has. */
        do { fd = (int)syscall(SYS_accept4, w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            int error = errno;
            if (error == EAGAIN || error == EWOULDBLOCK || error == ECONNABORTED) return;
            /* libuv's handling sheds what waits (EMFILE, ENFILE: its reserve descriptor) and
               tells the callback only when that fails too, so the callback hears of it here. */
            stream->connection_cb(stream, -error);
            if (!uv_is_closing((uv_handle_t *)stream))
                __atomic_load_n(&dyn_libuv_server_io, __ATOMIC_RELAXED)(loop, w, events);
            return;
        }
        stream->accepted_fd = fd;
        stream->connection_cb(stream, 0);
        if (stream->accepted_fd != -1) { /* the callback did not take it */
            close(stream->accepted_fd);
            stream->accepted_fd = -1;
        }
        if (uv_is_closing((uv_handle_t *)stream) || w->fd < 0) return; /* the callback closed the listener */
    }
}

/// Makes a listening handle (after `uv_listen`) accept what its queue holds and no more; see
/// `dyn_server_io_counted`. Returns 0, or UV_EINVAL when the handle is not listening.
static inline int dyn_tcp_accept_counted(uv_tcp_t *h) {
    if (h->io_watcher.cb == NULL || h->connection_cb == NULL) return UV_EINVAL;
    if (h->io_watcher.cb == dyn_server_io_counted) return 0;
    /* Every listener of the process has the same libuv callback; loops on several threads
       (tests) may all store it. */
    uv__io_cb libuv = __atomic_load_n(&dyn_libuv_server_io, __ATOMIC_RELAXED);
    if (libuv == NULL) {
        libuv = h->io_watcher.cb;
        __atomic_store_n(&dyn_libuv_server_io, libuv, __ATOMIC_RELAXED);
    }
    if (h->io_watcher.cb != libuv) return UV_EINVAL;
    h->io_watcher.cb = dyn_server_io_counted;
    return 0;
}

/// The accept4 calls `dyn_server_io_counted` has made on this thread.
static inline unsigned long dyn_accept_calls(void) { return dyn_accept_calls_made; }

/// Takes one connection from the listening handle's accept queue without waiting: its socket
/// (close-on-exec), or -1 when none is waiting. For draining the queue just before the listener
/// closes, which would reset every connection still in it.
static inline int dyn_accept_pending(uv_tcp_t *h) {
    uv_os_fd_t listener;
    if (uv_fileno((uv_handle_t *)h, &listener) != 0) return -1;
    int fd = accept(listener, NULL, NULL);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

/// Starts a non-blocking TCP connect and returns the socket, or a negative errno. The connect
/// may still be in progress when this returns; on loopback the handshake usually completes
/// inside the call, so a write right after it succeeds (libuv's own connect would wait for a
/// writable event and ask SO_ERROR first: a loop iteration and two syscalls per connection).
///
/// TCP_DEFER_ACCEPT on a connecting socket makes the kernel hold the handshake's last ACK for
/// a moment and send it with the first bytes written: the request carries it, one segment less
/// per connection (`tcp_rcv_synsent_state_process`). The caller writes at once, so nothing waits.
static inline int dyn_tcp_connect_start(const struct sockaddr_storage *address) {
    socklen_t length = address->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(address->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)address, length) != 0 && errno != EINPROGRESS) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

/// Writes what the kernel takes now of the last bytes before a close, with MSG_MORE: they wait
/// in the socket for the close, whose FIN then leaves in the same segment (`tcp_send_fin` tacks
/// it onto an unsent tail), and the peer, seeing data and FIN together, sends no ACK of its own
/// before it closes. Only for a write the caller follows with a close at once, on a socket with
/// no unread bytes (a close with unread bytes resets and drops what waits). Returns the bytes
/// written, UV_EAGAIN when none could be, or a negative errno; like `uv_try_write`, it refuses
/// while the stream has writes queued.
static inline int dyn_tcp_try_write_closing(uv_tcp_t *h, const uv_buf_t *bufs, unsigned count) {
    if (h->connect_req != NULL || h->write_queue_size != 0) return UV_EAGAIN;
    uv_os_fd_t fd;
    int r = uv_fileno((uv_handle_t *)h, &fd);
    if (r != 0) return r;
    struct msghdr message = { 0 };
    message.msg_iov = (struct iovec *)bufs; /* uv_buf_t is laid out as struct iovec on Unix */
    message.msg_iovlen = count;
    ssize_t n;
    do { n = sendmsg(fd, &message, MSG_MORE | MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    if (n >= 0) return (int)n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
}

#endif
