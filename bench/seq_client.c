// A sequential HTTP client with a small footprint of its own: N keep-alive-free POSTs, one after
// the other, each on a new connection to 127.0.0.1:PORT. It prints the mean time per request and
// how many answers were 2xx. For comparing topologies at one request in flight, where a heavier
// client's own time per request (hey: 120-180 us of CPU) dilutes the servers' difference.
// Build: cc -O2 -o /tmp/seq_client bench/seq_client.c
// Run:   seq_client PORT PATH COUNT BODY ["Header: value\r\n"]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: seq_client PORT PATH COUNT BODY [\"Header: value\\r\\n\"]\n");
        return 2;
    }
    int port = atoi(argv[1]), count = atoi(argv[3]);
    const char *path = argv[2], *body = argv[4], *extra = argc > 5 ? argv[5] : "";
    char request[4096];
    int length = snprintf(request, sizeof request,
                          "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                          "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                          path, extra, strlen(body), body);
    if (length <= 0 || length >= (int)sizeof request) {
        fprintf(stderr, "seq_client: the request does not fit in %zu bytes\n", sizeof request);
        return 2;
    }
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    char buffer[65536];
    int ok = 0, other = 0;
    double start = now_us();
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
            perror("seq_client: connect to 127.0.0.1");
            return 1;
        }
        if (write(fd, request, length) != length) {
            perror("seq_client: write");
            return 1;
        }
        ssize_t n, got = 0;
        char status = '?';
        while ((n = read(fd, buffer, sizeof buffer)) > 0) {
            if (got == 0 && n >= 12) status = buffer[9];
            got += n;
        }
        if (status == '2') ok++; else other++;
        close(fd);
    }
    printf("%.1f us/request, %d 2xx, %d other\n", (now_us() - start) / count, ok, other);
    return other == 0 ? 0 : 1;
}
