// The kernel's price of the calls a hop makes around accept, in ns per call, on 127.0.0.1 only.
// Build and run: cc -O2 -o /tmp/syscall_cost bench/syscall_cost.c && taskset -c 1 /tmp/syscall_cost
// - accept4 on an empty queue (what libuv's accept loop ends with): the kernel makes the new
//   socket and its inode before it looks at the queue;
// - getsockopt(TCP_INFO) on a listener, whose tcpi_unacked is the accept queue's length (what the
//   hosts ask instead, see dyn_server_io_counted in CSupport/CLibUV/shim.h);
// - epoll_ctl ADD + DEL of a socket, and getppid as the floor of a system call.
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
    enum { N = 200000 };
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 16) != 0) {
        perror("syscall_cost: listen on 127.0.0.1");
        return 1;
    }
    int epoll = epoll_create1(0);
    int other = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

    double t0 = now_ns();
    for (int i = 0; i < N; i++) (void)accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    double t1 = now_ns();
    struct tcp_info info;
    for (int i = 0; i < N; i++) {
        socklen_t length = sizeof info;
        (void)getsockopt(listener, IPPROTO_TCP, TCP_INFO, &info, &length);
    }
    double t2 = now_ns();
    for (int i = 0; i < N; i++) {
        struct epoll_event event = { .events = EPOLLIN, .data.fd = other };
        (void)epoll_ctl(epoll, EPOLL_CTL_ADD, other, &event);
        (void)epoll_ctl(epoll, EPOLL_CTL_DEL, other, &event);
    }
    double t3 = now_ns();
    for (int i = 0; i < N; i++) (void)getppid();
    double t4 = now_ns();
    printf("accept4 on an empty queue   %6.0f ns\n", (t1 - t0) / N);
    printf("getsockopt(TCP_INFO)        %6.0f ns (queue length %u)\n", (t2 - t1) / N, info.tcpi_unacked);
    printf("epoll_ctl ADD + DEL         %6.0f ns\n", (t3 - t2) / N);
    printf("getppid                     %6.0f ns\n", (t4 - t3) / N);
    close(other);
    close(epoll);
    close(listener);
    return 0;
}
