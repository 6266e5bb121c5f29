/*
 * test_release: freed memory goes back to the system.
 *
 * A fixed list of about 300 MiB of requests is made (xorshift32, fixed
 * seed), in random order:
 *   - small blocks of random sizes 1..16384 (80% of them 64..4096 bytes,
 *     10% 1..63, 10% 4097..16384), about 130 MiB in all,
 *   - large blocks of 20,480 .. 1,048,576 bytes, about 130 MiB in all
 *     (on 32-bit those above 512 KiB are huge blocks),
 *   - 4 huge blocks of 4 .. 16 MiB.
 * Every block is memset() in full, so every page of it is resident.
 *
 * Phase 1 (one thread): after a warm-up allocate/deallocate (a small and a
 * large block), VmRSS and
 * VmSize are read from /proc/self/status ("start"); all blocks are allocated
 * and touched; VmRSS and VmSize are read again ("peak"); the blocks are
 * freed in a shuffled order (Fisher-Yates, fixed-seed xorshift32) and the
 * numbers are read a third time ("after").
 *
 * Phase 2 (threads): the same list, allocated by 4 threads (thread t takes
 * requests t, t+4, t+8, ...), which then exit without freeing anything. The
 * main thread joins them, reads "peak", and frees every block in a shuffled
 * order: cross-thread frees into the heaps the exited threads abandoned.
 * The threads run on 256 KiB stacks, and 4 warm-up threads with the same
 * attributes are created and joined before "start" is read, so the stacks
 * glibc caches for reuse are already part of "start".
 *
 * Pass, in each phase: (after - start) <= 5% of (peak - start), for VmRSS
 * and for VmSize. All numbers are printed, and also (for information) the
 * number and total size of the /dev/zero mappings in /proc/self/maps (the
 * library's segments) at start, peak and after.
 *
 * Phases 3 and 4 (decay, malloc_trim): one thread allocates the large and
 * huge requests of the list and touches them, keeps one more block of
 * 64 MiB live and untouched (so the large allocator never sees everything
 * freed, which gives all back at once, and its budget of resident free
 * memory, twice the live bytes, holds what was freed) and frees the
 * others. Freed large memory is kept warm
 * for reuse for a while (issue 24: purge by decay), but comes back, in
 * phase 3 at the first large request after 100 ms without one, in phase 4
 * at malloc_trim(0) (which must return 1). Pass: VmRSS after that within 5%
 * of the growth. (VmSize is not checked there: the large segment that
 * holds the kept block and one entirely free one stay mapped.)
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memory.h"

#define MiB (1024u * 1024u)
#define SMALL_BUDGET (130ULL * MiB)
#define LARGE_BUDGET (130ULL * MiB)
#define N_HUGE 4
#define MAX_BLOCKS 200000
#define N_THREADS 4
#define THREAD_STACK (256 * 1024)
#define SHARE 0.05
#define KEEP (64u * MiB)

struct blk {
    unsigned char *p;
    unsigned int size;
};

static struct blk blks[MAX_BLOCKS];
static unsigned int nblks;
static unsigned long long total_bytes;
static int failures;
static int thread_failed[N_THREADS];

#define FAIL(...)                                                              \
    do {                                                                       \
        printf("FAIL: test_release: " __VA_ARGS__);                            \
        printf("\n");                                                          \
        failures++;                                                            \
    } while (0)

static uint32_t rnd_state;

static uint32_t rnd(void)
{
    uint32_t x = rnd_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rnd_state = x;
}

static unsigned int rnd_range(unsigned int lo, unsigned int hi)
{
    return lo + rnd() % (hi - lo + 1);
}

/* VmRSS and VmSize in kB (-1 when unreadable). */
struct vm {
    long rss, size;
};

static long status_kb(const char *buf, const char *key)
{
    const char *line = strstr(buf, key);
    return line ? strtol(line + strlen(key), NULL, 10) : -1;
}

static struct vm read_vm(void)
{
    char buf[8192];
    ssize_t n, len = 0;
    struct vm v = {-1, -1};
    int fd = open("/proc/self/status", O_RDONLY);

    if (fd < 0)
        return v;
    while (len < (ssize_t)sizeof buf - 1 &&
           (n = read(fd, buf + len, sizeof buf - 1 - (size_t)len)) > 0)
        len += n;
    close(fd);
    buf[len] = '\0';
    v.rss = status_kb(buf, "VmRSS:");
    v.size = status_kb(buf, "VmSize:");
    return v;
}

/* The library's mappings: those of /dev/zero in /proc/self/maps (count and
 * kB). Informational, to tell what stays mapped; read() into a stack buffer,
 * no stdio, so that reading it changes nothing it measures. */
struct maps {
    unsigned long count, kb;
};

static struct maps devzero_maps(void)
{
    char buf[4096];
    size_t have = 0;
    ssize_t n;
    struct maps m = {0, 0};
    int fd = open("/proc/self/maps", O_RDONLY);

    if (fd < 0)
        return m;
    while ((n = read(fd, buf + have, sizeof buf - 1 - have)) > 0) {
        char *line = buf, *nl;
        have += (size_t)n;
        buf[have] = '\0';
        while ((nl = strchr(line, '\n')) != NULL) {
            unsigned long lo, hi;
            *nl = '\0';
            if (strstr(line, "/dev/zero") != NULL &&
                sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
                m.count++;
                m.kb += (hi - lo) / 1024;
            }
            line = nl + 1;
        }
        have = (size_t)(buf + have - line);
        memmove(buf, line, have);
        if (have == sizeof buf - 1) /* a line longer than the buffer */
            have = 0;
    }
    close(fd);
    return m;
}

/* The request list: sizes only, in a random order. */
static void make_requests(void)
{
    unsigned long long small = 0, large = 0;

    nblks = 0;
    total_bytes = 0;
    rnd_state = 0x9E3779B9u;
    for (int i = 0; i < N_HUGE; i++)
        blks[nblks++].size = rnd_range(4 * MiB, 16 * MiB);
    while (large < LARGE_BUDGET && nblks < MAX_BLOCKS) {
        unsigned int s = rnd_range(20480, MiB);
        blks[nblks++].size = s;
        large += s;
    }
    while (small < SMALL_BUDGET && nblks < MAX_BLOCKS) {
        unsigned int r = rnd() % 100, s;
        if (r < 80)
            s = rnd_range(64, 4096);
        else if (r < 90)
            s = rnd_range(1, 63);
        else
            s = rnd_range(4097, 16384);
        blks[nblks++].size = s;
        small += s;
    }
    for (unsigned int i = nblks - 1; i > 0; i--) {
        unsigned int j = rnd() % (i + 1);
        struct blk t = blks[i];
        blks[i] = blks[j];
        blks[j] = t;
    }
    for (unsigned int i = 0; i < nblks; i++) {
        blks[i].p = NULL;
        total_bytes += blks[i].size;
    }
}

/* Allocates and touches requests first, first+step, ...; returns the number
 * of NULL returns. */
static int alloc_share(unsigned int first, unsigned int step)
{
    int nulls = 0;
    for (unsigned int i = first; i < nblks; i += step) {
        unsigned char *p = allocate(blks[i].size);
        blks[i].p = p;
        if (p == NULL) {
            nulls++;
            continue;
        }
        memset(p, (int)(i % 251) + 1, blks[i].size);
    }
    return nulls;
}

static void *thread_main(void *arg)
{
    unsigned int t = (unsigned int)(uintptr_t)arg;
    thread_failed[t] = alloc_share(t, N_THREADS);
    return NULL;
}

/* A small and a large block: the library's standing structures (a small
 * segment per heap, the one free large segment it keeps mapped, purged:
 * 32 MiB of address space on x86_64, 16 MiB on i686) exist before "start". */
static void *warmup_main(void *arg)
{
    (void)arg;
    deallocate(allocate(100));
    deallocate(allocate(100000));
    return NULL;
}

static int run_threads(void *(*fn)(void *))
{
    pthread_t th[N_THREADS];
    pthread_attr_t attr;
    int rc, ok = 1;

    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    for (unsigned int t = 0; t < N_THREADS; t++) {
        rc = pthread_create(&th[t], &attr, fn, (void *)(uintptr_t)t);
        if (rc != 0) {
            FAIL("pthread_create: %s", strerror(rc));
            ok = 0;
            th[t] = 0;
        }
    }
    for (unsigned int t = 0; t < N_THREADS; t++)
        if (th[t] != 0)
            pthread_join(th[t], NULL);
    pthread_attr_destroy(&attr);
    return ok;
}

static void free_shuffled(uint32_t seed)
{
    rnd_state = seed;
    for (unsigned int i = nblks - 1; i > 0; i--) {
        unsigned int j = rnd() % (i + 1);
        struct blk t = blks[i];
        blks[i] = blks[j];
        blks[j] = t;
    }
    for (unsigned int i = 0; i < nblks; i++) {
        const unsigned char *p = blks[i].p;
        if (p != NULL && (p[0] != p[blks[i].size - 1] || p[0] == 0))
            FAIL("block %p (%u bytes) lost its contents", (const void *)p,
                 blks[i].size);
        deallocate(blks[i].p);
        blks[i].p = NULL;
    }
}

static void check_share(const char *phase, const char *what, long start,
                        long peak, long after)
{
    long grown = peak - start, left = after - start;
    double pct = grown > 0 ? 100.0 * (double)left / (double)grown : 0.0;

    printf("  %-6s start %8ld kB, peak %8ld kB, after %8ld kB: grew %ld kB, "
           "%ld kB left = %.2f%% (limit %.0f%%)\n", what, start, peak, after,
           grown, left, pct, SHARE * 100);
    if (start < 0 || peak < 0 || after < 0) {
        FAIL("%s: cannot read %s from /proc/self/status", phase, what);
        return;
    }
    if (grown <= 0) {
        FAIL("%s: %s did not grow while ~%llu MiB were live", phase, what,
             total_bytes / MiB);
        return;
    }
    if ((double)left > SHARE * (double)grown)
        FAIL("%s: %s after freeing everything is %ld kB above start, more "
             "than %.0f%% of the %ld kB it grew (%.2f%%)", phase, what, left,
             SHARE * 100, grown, pct);
}

static void run_phase(int threaded)
{
    const char *phase = threaded ? "phase 2 (4 threads, main frees)"
                                 : "phase 1 (one thread)";
    struct vm start, peak, after;
    struct maps mstart, mpeak, mafter;
    unsigned int nulls = 0;

    printf("%s:\n", phase);
    make_requests();
    if (threaded)
        run_threads(warmup_main);
    else
        warmup_main(NULL);

    start = read_vm();
    mstart = devzero_maps();
    if (threaded) {
        memset(thread_failed, 0, sizeof thread_failed);
        run_threads(thread_main);
        for (int t = 0; t < N_THREADS; t++)
            nulls += (unsigned int)thread_failed[t];
    } else {
        nulls = (unsigned int)alloc_share(0, 1);
    }
    peak = read_vm();
    mpeak = devzero_maps();
    printf("  %u blocks, %llu bytes (%.1f MiB) allocated and touched%s\n",
           nblks, total_bytes, (double)total_bytes / MiB,
           threaded ? " by 4 threads, which exited" : "");
    if (nulls)
        FAIL("%s: %u allocate() calls returned NULL", phase, nulls);

    free_shuffled(threaded ? 0xC0FFEE11u : 0x12345678u);
    after = read_vm();
    mafter = devzero_maps();
    printf("  all freed in shuffled order%s\n",
           threaded ? " by the main thread" : "");

    check_share(phase, "VmRSS", start.rss, peak.rss, after.rss);
    check_share(phase, "VmSize", start.size, peak.size, after.size);
    printf("  (/dev/zero mappings in /proc/self/maps: start %lu = %lu kB, "
           "peak %lu = %lu kB, after %lu = %lu kB)\n", mstart.count, mstart.kb,
           mpeak.count, mpeak.kb, mafter.count, mafter.kb);
}

/* Phases 3 and 4: see the top. */
static void run_decay_phase(int trim)
{
    const char *phase = trim ? "phase 4 (large blocks freed, malloc_trim(0))"
                             : "phase 3 (large blocks freed, a large request 100 ms later)";
    struct vm start, peak, freed, after;
    unsigned long long bytes = 0;
    unsigned int n = 0, nulls = 0;

    printf("%s:\n", phase);
    make_requests();
    warmup_main(NULL);
    start = read_vm();
    void *keep = allocate(KEEP);
    for (unsigned int i = 0; i < nblks; i++) {
        if (blks[i].size <= 16384)
            continue;
        blks[n] = blks[i];
        blks[n].p = allocate(blks[n].size);
        if (blks[n].p == NULL) {
            nulls++;
            continue;
        }
        memset(blks[n].p, (int)(n % 251) + 1, blks[n].size);
        bytes += blks[n].size;
        n++;
    }
    peak = read_vm();
    if (keep == NULL || nulls)
        FAIL("%s: %u allocate() calls returned NULL", phase, nulls + (keep == NULL));
    nblks = n;
    free_shuffled(trim ? 0xDECA1u : 0xDECA2u);
    freed = read_vm();
    printf("  %u large and huge blocks, %.1f MiB, allocated, touched and freed; a "
           "block of 64 MiB kept; VmRSS right after the frees %ld kB\n",
           n, (double)bytes / MiB, freed.rss);
    if (trim) {
        int r = malloc_trim(0);
        if (r != 1)
            FAIL("%s: malloc_trim(0) returned %d, not 1", phase, r);
    } else {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        deallocate(allocate(200000));
    }
    after = read_vm();
    check_share(phase, "VmRSS", start.rss, peak.rss, after.rss);
    deallocate(keep);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);

    run_phase(0);
    run_phase(1);
    run_decay_phase(0);
    run_decay_phase(1);

    if (failures) {
        printf("FAIL: test_release: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: test_release (~%llu MiB allocated, touched and freed, "
           "single- and multi-threaded; VmRSS and VmSize came back within "
           "%.0f%% of their growth; large blocks freed while one lives: VmRSS "
           "back at a large request 100 ms later, and at malloc_trim)\n",
           total_bytes / MiB, SHARE * 100);
    return 0;
}
