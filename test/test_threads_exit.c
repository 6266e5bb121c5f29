/*
 * test_threads_exit: threads that exit with live blocks.
 *
 * Round 1: 8 threads each allocate 10,000 blocks of random sizes (99% small,
 * 1..2048 bytes; 1% large, 16,385..131,072 bytes), fill each with a pattern
 * that depends on round, thread, index and byte offset, and exit without
 * freeing them (their heaps are abandoned with live blocks).
 *
 * Rounds 2..5: the main thread creates 8 new threads. Thread t takes the
 * blocks the previous round's thread (t + round) % 8 left behind and, for each
 * index i: verifies block i's pattern in full and deallocates it (a
 * cross-thread free into an abandoned heap, or into a heap some other new
 * thread has adopted since); allocates and fills its own block i, which it
 * leaves live; and every 4th index also allocates, fills, checks and frees
 * a temporary block of its own. Then it exits.
 *
 * At the end of every round (all threads joined) the main thread sorts the
 * 80,000 live blocks by address and checks that no two overlap, and prints
 * VmRSS and VmSize. At the end the main thread verifies and frees the last
 * round's blocks.
 *
 * Pass: no NULL, every pattern intact, no overlap in any round, and the
 * last round's VmRSS is at most twice the first round's (the same number of
 * blocks is live at every round end: memory freed into abandoned heaps is
 * reused, not leaked).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memory.h"

#define N_THREADS 8
#define N_BLOCKS 10000
#define ROUNDS 5
#define CHURN_EVERY 4

struct blk {
    unsigned char *p;
    unsigned int size;
    uint32_t seed;
};

/* gen[r % 2][t][i]: the blocks thread t of round r leaves live. */
static struct blk gen[2][N_THREADS][N_BLOCKS];
static struct blk sorted[N_THREADS * N_BLOCKS];

struct tstat {
    unsigned long nulls, corrupt, freed, churn;
};
static struct tstat tstats[N_THREADS];

static int failures;

#define FAIL(...)                                                              \
    do {                                                                       \
        printf("FAIL: test_threads_exit: " __VA_ARGS__);                       \
        printf("\n");                                                          \
        failures++;                                                            \
    } while (0)

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static unsigned int random_size(uint32_t *s)
{
    uint32_t r = xorshift(s);
    if (r % 100 == 0)
        return 16385 + xorshift(s) % (131072 - 16385 + 1);
    return 1 + xorshift(s) % 2048;
}

static void fill(unsigned char *p, unsigned int n, uint32_t seed)
{
    for (unsigned int j = 0; j < n; j++)
        p[j] = (unsigned char)(seed + j * 31 + (j >> 8));
}

/* Returns the first wrong offset, or n. */
static unsigned int verify(const unsigned char *p, unsigned int n, uint32_t seed)
{
    for (unsigned int j = 0; j < n; j++)
        if (p[j] != (unsigned char)(seed + j * 31 + (j >> 8)))
            return j;
    return n;
}

struct targ {
    unsigned int round, t;
};

static void *thread_main(void *argp)
{
    const struct targ *a = argp;
    unsigned int round = a->round, t = a->t;
    struct blk *mine = gen[round % 2][t];
    struct blk *prev = round > 1 ? gen[(round - 1) % 2][(t + round) % N_THREADS]
                                 : NULL;
    struct tstat *st = &tstats[t];
    uint32_t rs = 0x9E3779B9u ^ (round * 0x01000193u) ^ (t * 0x85EBCA6Bu);

    if (rs == 0)
        rs = 1;
    memset(st, 0, sizeof *st);
    for (unsigned int i = 0; i < N_BLOCKS; i++) {
        if (prev != NULL && prev[i].p != NULL) {
            unsigned int bad = verify(prev[i].p, prev[i].size, prev[i].seed);
            if (bad != prev[i].size && st->corrupt++ < 3)
                printf("FAIL: test_threads_exit: round %u thread %u: block "
                       "%p (%u bytes) of the previous round: byte %u wrong\n",
                       round, t, (void *)prev[i].p, prev[i].size, bad);
            deallocate(prev[i].p);
            prev[i].p = NULL;
            st->freed++;
        }

        mine[i].size = random_size(&rs);
        mine[i].seed = xorshift(&rs);
        mine[i].p = allocate(mine[i].size);
        if (mine[i].p == NULL)
            st->nulls++;
        else
            fill(mine[i].p, mine[i].size, mine[i].seed);

        if (i % CHURN_EVERY == 0) {
            unsigned int n = random_size(&rs);
            uint32_t seed = xorshift(&rs);
            unsigned char *q = allocate(n);
            if (q == NULL) {
                st->nulls++;
            } else {
                fill(q, n, seed);
                if (verify(q, n, seed) != n && st->corrupt++ < 3)
                    printf("FAIL: test_threads_exit: round %u thread %u: "
                           "temporary block %p (%u bytes) changed\n", round, t,
                           (void *)q, n);
                deallocate(q);
                st->churn++;
            }
        }
    }
    return NULL;
}

static int by_addr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct blk *)a)->p;
    uintptr_t y = (uintptr_t)((const struct blk *)b)->p;
    return x < y ? -1 : x > y;
}

/* Sorts the live blocks of round `round` and counts overlaps. */
static unsigned long check_overlap(unsigned int round)
{
    size_t n = 0;
    unsigned long overlaps = 0;

    for (unsigned int t = 0; t < N_THREADS; t++)
        for (unsigned int i = 0; i < N_BLOCKS; i++)
            if (gen[round % 2][t][i].p != NULL)
                sorted[n++] = gen[round % 2][t][i];
    qsort(sorted, n, sizeof sorted[0], by_addr);
    for (size_t k = 1; k < n; k++) {
        uintptr_t end = (uintptr_t)sorted[k - 1].p + sorted[k - 1].size;
        if (end > (uintptr_t)sorted[k].p && overlaps++ < 3)
            FAIL("round %u: block %p (%u bytes) overlaps block %p (%u bytes)",
                 round, (void *)sorted[k - 1].p, sorted[k - 1].size,
                 (void *)sorted[k].p, sorted[k].size);
    }
    return overlaps;
}

static long status_kb(const char *key)
{
    char buf[8192], *line;
    ssize_t n, len = 0;
    int fd = open("/proc/self/status", O_RDONLY);

    if (fd < 0)
        return -1;
    while (len < (ssize_t)sizeof buf - 1 &&
           (n = read(fd, buf + len, sizeof buf - 1 - (size_t)len)) > 0)
        len += n;
    close(fd);
    buf[len] = '\0';
    line = strstr(buf, key);
    return line ? strtol(line + strlen(key), NULL, 10) : -1;
}

int main(void)
{
    long rss[ROUNDS + 1];
    unsigned long total_nulls = 0, total_corrupt = 0, prev_count = 0;

    setvbuf(stdout, NULL, _IONBF, 0);
    printf("%d rounds of %d threads x %d blocks (99%% 1..2048 bytes, 1%% "
           "16385..131072 bytes)\n", ROUNDS, N_THREADS, N_BLOCKS);

    for (unsigned int round = 1; round <= ROUNDS; round++) {
        pthread_t th[N_THREADS];
        struct targ args[N_THREADS];
        unsigned long nulls = 0, corrupt = 0, freed = 0, churn = 0, overlaps;
        unsigned long long live = 0;
        unsigned long count = 0;

        for (unsigned int t = 0; t < N_THREADS; t++) {
            int rc;
            args[t].round = round;
            args[t].t = t;
            rc = pthread_create(&th[t], NULL, thread_main, &args[t]);
            if (rc != 0) {
                printf("FAIL: test_threads_exit: pthread_create: %s\n",
                       strerror(rc));
                return 1;
            }
        }
        for (unsigned int t = 0; t < N_THREADS; t++)
            pthread_join(th[t], NULL);

        for (unsigned int t = 0; t < N_THREADS; t++) {
            nulls += tstats[t].nulls;
            corrupt += tstats[t].corrupt;
            freed += tstats[t].freed;
            churn += tstats[t].churn;
            for (unsigned int i = 0; i < N_BLOCKS; i++)
                if (gen[round % 2][t][i].p != NULL) {
                    live += gen[round % 2][t][i].size;
                    count++;
                }
        }
        overlaps = check_overlap(round);
        rss[round] = status_kb("VmRSS:");
        printf("round %u: freed %lu blocks of exited threads, %lu temporary "
               "blocks; %lu live blocks, %llu bytes (%.1f MiB); overlaps %lu, "
               "corrupt %lu, NULL %lu; VmRSS %ld kB, VmSize %ld kB\n",
               round, freed, churn, count, live,
               (double)live / (1024.0 * 1024.0), overlaps, corrupt, nulls,
               rss[round], status_kb("VmSize:"));
        if (round > 1 && freed != prev_count)
            FAIL("round %u: freed %lu blocks of the previous round, expected "
                 "%lu", round, freed, prev_count);
        if (overlaps)
            FAIL("round %u: %lu overlapping live blocks", round, overlaps);
        total_nulls += nulls;
        total_corrupt += corrupt;
        prev_count = count;
    }

    /* The last round's blocks: verified and freed by the main thread. */
    for (unsigned int t = 0; t < N_THREADS; t++)
        for (unsigned int i = 0; i < N_BLOCKS; i++) {
            struct blk *b = &gen[ROUNDS % 2][t][i];
            if (b->p == NULL)
                continue;
            if (verify(b->p, b->size, b->seed) != b->size &&
                total_corrupt++ < 3)
                FAIL("last round: block %p (%u bytes) changed", (void *)b->p,
                     b->size);
            deallocate(b->p);
            b->p = NULL;
        }
    printf("after the main thread freed the last round's blocks: VmRSS %ld kB, "
           "VmSize %ld kB\n", status_kb("VmRSS:"), status_kb("VmSize:"));

    if (total_nulls)
        FAIL("%lu allocate() calls returned NULL", total_nulls);
    if (total_corrupt)
        FAIL("%lu blocks with a wrong pattern", total_corrupt);
    printf("VmRSS at round end: first %ld kB, last %ld kB (limit: 2 x first)\n",
           rss[1], rss[ROUNDS]);
    if (rss[1] <= 0 || rss[ROUNDS] <= 0)
        FAIL("cannot read VmRSS from /proc/self/status");
    else if (rss[ROUNDS] > 2 * rss[1])
        FAIL("VmRSS grew from %ld kB after round 1 to %ld kB after round %d, "
             "more than twice", rss[1], rss[ROUNDS], ROUNDS);

    if (failures) {
        printf("FAIL: test_threads_exit: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: test_threads_exit (%d rounds x %d threads x %d blocks; "
           "blocks of exited threads freed cross-thread; no overlap; VmRSS "
           "%ld -> %ld kB)\n", ROUNDS, N_THREADS, N_BLOCKS, rss[1],
           rss[ROUNDS]);
    return 0;
}
