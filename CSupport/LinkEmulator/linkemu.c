// dyninka-linkemu: the test bed's link delay. The kernel here has no netem, so the bed's router
// namespace sends each delayed direction of a link to an NFQUEUE (iptables ... -j NFQUEUE
// --queue-num N) and this program holds every queued packet for the link's delay before it
// lets it pass. Loss and rate are done by the kernel (iptables statistic, tc htb); only time is
// done here.
//
//   dyninka-linkemu CONFIG
//
// CONFIG has one line per queue: "QUEUE DELAY_MS JITTER_MS" (decimals allowed; # comments).
// SIGHUP re-reads it: new queues are bound, changed delays apply to packets that arrive from
// then on. SIGTERM/SIGINT let every held packet go and exit.
//
// Jitter draws each packet's delay uniformly from DELAY +- JITTER, but a packet never leaves
// before the one queued ahead of it (no reordering; TCP would read reordering as loss), so with
// jitter the mean delay is a little above DELAY. Only packet ids cross into user space
// (NFQNL_COPY_META): the payload is never copied.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_QUEUES 1024

struct held {
    uint64_t due;
    uint32_t id;
};

struct queue {
    int number;
    int bound;
    struct nfq_q_handle *handle;
    double delay_ms, jitter_ms;
    struct held *ring;
    size_t capacity, head, count;
    uint64_t last_due;
    unsigned long long passed;
};

static struct queue queues[MAX_QUEUES];
static int queue_count;
static const char *config_path;
static volatile sig_atomic_t reload_requested, stop_requested;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static double uniform(void) {  // xorshift64*, in [0, 1)
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static struct queue *find(int number) {
    for (int i = 0; i < queue_count; i++)
        if (queues[i].number == number) return &queues[i];
    return NULL;
}

static int push(struct queue *q, uint32_t id, uint64_t due) {
    if (q->count == q->capacity) {
        size_t capacity = q->capacity ? q->capacity * 2 : 1024;
        struct held *ring = malloc(capacity * sizeof *ring);
        if (!ring) return -1;
        for (size_t i = 0; i < q->count; i++) ring[i] = q->ring[(q->head + i) % q->capacity];
        free(q->ring);
        q->ring = ring;
        q->capacity = capacity;
        q->head = 0;
    }
    q->ring[(q->head + q->count) % q->capacity] = (struct held){due, id};
    q->count++;
    return 0;
}

static int on_packet(struct nfq_q_handle *handle, struct nfgenmsg *message, struct nfq_data *data, void *context) {
    (void)message;
    struct queue *q = context;
    struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(data);
    if (!header) return 0;
    uint32_t id = ntohl(header->packet_id);
    double ms = q->delay_ms + (q->jitter_ms > 0 ? (uniform() * 2 - 1) * q->jitter_ms : 0);
    if (ms < 0) ms = 0;
    uint64_t due = now_ns() + (uint64_t)(ms * 1e6);
    if (due < q->last_due) due = q->last_due;  // never overtake the packet ahead
    q->last_due = due;
    if (ms == 0 && q->count == 0) {
        q->passed++;
        return nfq_set_verdict(handle, id, NF_ACCEPT, 0, NULL);
    }
    if (push(q, id, due) != 0) return nfq_set_verdict(handle, id, NF_ACCEPT, 0, NULL);
    return 0;
}

static int load_config(struct nfq_handle *h) {
    FILE *f = fopen(config_path, "r");
    if (!f) {
        fprintf(stderr, "dyninka-linkemu: cannot read %s: %s\n", config_path, strerror(errno));
        return -1;
    }
    char line[256];
    int number_line = 0;
    while (fgets(line, sizeof line, f)) {
        number_line++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        int number;
        double delay, jitter;
        int fields = sscanf(line, "%d %lf %lf", &number, &delay, &jitter);
        if (fields <= 0) continue;
        if (fields != 3 || number < 0 || number > 65535 || delay < 0 || jitter < 0) {
            fprintf(stderr, "dyninka-linkemu: %s:%d: expected \"QUEUE DELAY_MS JITTER_MS\"\n", config_path, number_line);
            fclose(f);
            return -1;
        }
        struct queue *q = find(number);
        if (!q) {
            if (queue_count == MAX_QUEUES) {
                fprintf(stderr, "dyninka-linkemu: more than %d queues\n", MAX_QUEUES);
                fclose(f);
                return -1;
            }
            q = &queues[queue_count++];
            memset(q, 0, sizeof *q);
            q->number = number;
        }
        q->delay_ms = delay;
        q->jitter_ms = jitter;
        if (!q->bound) {
            q->handle = nfq_create_queue(h, (uint16_t)number, on_packet, q);
            if (!q->handle) {
                fprintf(stderr, "dyninka-linkemu: cannot bind queue %d (%s); is another program bound to it?\n", number, strerror(errno));
                fclose(f);
                return -1;
            }
            if (nfq_set_mode(q->handle, NFQNL_COPY_META, 0) < 0 || nfq_set_queue_maxlen(q->handle, 65536) < 0) {
                fprintf(stderr, "dyninka-linkemu: cannot configure queue %d\n", number);
                fclose(f);
                return -1;
            }
            q->bound = 1;
        }
    }
    fclose(f);
    return 0;
}

static void on_signal(int signal) {
    if (signal == SIGHUP) reload_requested = 1;
    else stop_requested = 1;
}

/// Lets every packet whose time has come pass; returns the earliest due time still held (0: none).
static uint64_t release(uint64_t now, int everything) {
    uint64_t next = 0;
    for (int i = 0; i < queue_count; i++) {
        struct queue *q = &queues[i];
        while (q->count > 0) {
            struct held *first = &q->ring[q->head];
            if (!everything && first->due > now) {
                if (next == 0 || first->due < next) next = first->due;
                break;
            }
            nfq_set_verdict(q->handle, first->id, NF_ACCEPT, 0, NULL);
            q->passed++;
            q->head = (q->head + 1) % q->capacity;
            q->count--;
        }
    }
    return next;
}

int main(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: dyninka-linkemu CONFIG   (lines \"QUEUE DELAY_MS JITTER_MS\"; SIGHUP re-reads it)\n");
        return 2;
    }
    config_path = argv[1];
    rng ^= (uint64_t)getpid() << 17;
    struct nfq_handle *h = nfq_open();
    if (!h) {
        fprintf(stderr, "dyninka-linkemu: cannot open a netfilter queue socket (%s); root and the nfnetlink_queue module are needed\n", strerror(errno));
        return 1;
    }
    if (load_config(h) != 0) return 1;
    nfnl_rcvbufsiz(nfq_nfnlh(h), 8 << 20);
    struct sigaction action = {0};
    action.sa_handler = on_signal;
    sigaction(SIGHUP, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    // Whoever started us may have left these blocked (a test runner's thread, say).
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGHUP);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGINT);
    sigprocmask(SIG_UNBLOCK, &wanted, NULL);
    int fd = nfq_fd(h);
    char buffer[65536] __attribute__((aligned));
    fprintf(stderr, "dyninka-linkemu: holding %d queue%s\n", queue_count, queue_count == 1 ? "" : "s");
    while (!stop_requested) {
        if (reload_requested) {
            reload_requested = 0;
            if (load_config(h) != 0) fprintf(stderr, "dyninka-linkemu: keeping the previous settings\n");
        }
        uint64_t next = release(now_ns(), 0);
        struct timespec timeout, *wait = NULL;
        if (next) {
            uint64_t now = now_ns();
            uint64_t left = next > now ? next - now : 0;
            timeout.tv_sec = (time_t)(left / 1000000000ull);
            timeout.tv_nsec = (long)(left % 1000000000ull);
            wait = &timeout;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = ppoll(&p, 1, wait, NULL);
        if (ready < 0 && errno != EINTR) break;
        if (ready > 0) {
            for (;;) {
                ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
                if (n < 0) {
                    if (errno == ENOBUFS) continue;  // the kernel dropped notifications; go on
                    break;
                }
                nfq_handle_packet(h, buffer, (int)n);
            }
        }
    }
    release(0, 1);
    for (int i = 0; i < queue_count; i++) {
        fprintf(stderr, "dyninka-linkemu: queue %d passed %llu packets\n", queues[i].number, queues[i].passed);
        if (queues[i].handle) nfq_destroy_queue(queues[i].handle);
    }
    nfq_close(h);
    return 0;
}
