// bench/malloc_count.c: an LD_PRELOAD allocation counter for the payload-size sweep.
// Build: gcc -O2 -shared -fPIC -o malloc_count.so bench/malloc_count.c
// Counts malloc/calloc/realloc/memalign calls; on SIGUSR2 writes the count (decimal) to the file
// named by MALLOC_COUNT_FILE, so a benchmark can take the difference around a run.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ulong allocations;

void *malloc(size_t n) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    void *p = memalign(a, n);
    if (!p) return 12;
    *out = p;
    return 0;
}

static void dump(int sig) {
    (void)sig;
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (!path) return;
    char digits[32];
    int i = sizeof digits;
    unsigned long v = atomic_load(&allocations);
    do { digits[--i] = '0' + (v % 10); v /= 10; } while (v && i > 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    ssize_t ignored = write(fd, digits + i, sizeof digits - i);
    (void)ignored;
    close(fd);
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = dump;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, 0);
}
