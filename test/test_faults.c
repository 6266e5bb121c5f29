/*
 * test_faults: fault injection. Every mapping the library asks the system for
 * may fail; each such failure must come out as NULL with errno == ENOMEM (or
 * ENOMEM from posix_memalign), never as a crash, a corrupted block or a
 * leaked mapping, and the next allocations must work again.
 *
 * The parent runs, for n = 1 .. 60, a child (this program re-executed with
 * the argument "child") with MALLOCATOR_FAIL_MMAP=n in its environment: the
 * library then makes its n-th mapping attempt after initialisation fail.
 * The child:
 *   1. runs a mixed workload with content checks: small blocks of many
 *      classes (allocate and malloc), large blocks of 20 KB .. 500 KB, huge
 *      blocks of 2 .. 20 MiB, a block grown by realloc from 16 bytes to 8 MiB,
 *      calloc blocks (checked zero), posix_memalign blocks aligned to 64 KiB;
 *      every failed call must be NULL with errno == ENOMEM (posix_memalign:
 *      return value ENOMEM), a failed realloc must leave its block intact;
 *      counts the failures; checks every block, frees everything;
 *   2. if the library has made fewer than n mappings so far (memory_stats),
 *      allocates and frees huge blocks until it has, so that the failing
 *      attempt is certainly behind;
 *   3. runs the workload again: now nothing may fail;
 *   4. frees everything and checks that mapped_bytes (memory_stats) is at most
 *      LEAK_SLACK above what it was when the child started: a failed mapping
 *      must not leak the memory of the attempt, or strand a segment;
 *   and prints "RESULT n=<n> nulls=<count> ..." (exit 0), or FAIL lines
 *   (exit 1).
 * The parent checks that every child exited with status 0 (a signal is a
 * failure) and that the failures summed over all children are not 0 (the
 * injection really happened), and prints a summary.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memory.h"

#define N_MAX 60
/* What may stay mapped after freeing everything: the one free large segment
 * the allocator keeps (purged; 32 MiB on x86_64, 16 MiB on i686) and a small
 * segment (4 / 2 MiB), with room to spare; a leaked attempt or a stranded
 * segment per failure would exceed it over 60 children. */
#define LEAK_SLACK ((size_t)(sizeof(void *) == 8 ? 40 : 24) << 20)

static int failures;
static int cur_n;

/* The child writes with snprintf + write: stdio could allocate, and an
 * allocation failing inside printf is not what is tested here. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof buf)
        len = sizeof buf - 1;
    if (write(1, buf, (size_t)len) < 0) { /* nothing to do */ }
}

#define FAIL(...)                                                              \
    do {                                                                       \
        say("FAIL: test_faults: n=%d: ", cur_n);                               \
        say(__VA_ARGS__);                                                      \
        say("\n");                                                             \
        failures++;                                                            \
    } while (0)

/* ---- blocks and patterns --------------------------------------------------- */

enum kind { SMALL, LARGE, HUGE, GROWN, ZEROED, ALIGNED, KINDS };
static const char *const kind_name[KINDS] = {"small", "large", "huge", "realloc", "calloc", "memalign"};

struct blk {
    unsigned char *p;
    size_t size;
    unsigned seed;
    enum kind kind;
    int from_allocate; /* allocate() rather than the malloc family */
};

#define MAX_BLOCKS 4096
static struct blk blocks[MAX_BLOCKS];
static int nblocks;
static unsigned long nulls[KINDS];
static unsigned long calls;

static unsigned char pattern(unsigned seed, size_t i)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    return (unsigned char)(x ^ (x >> 13) ^ (x >> 24));
}

/* Blocks up to 64 KiB are written in full; larger ones at the first and last
 * 4 KiB and one byte in every 4 KiB page between. */
#define FULL 65536u
static size_t next_pos(size_t size, size_t i)
{
    if (size <= FULL || i + 1 < 4096 || i + 1 >= size - 4096)
        return i + 1;
    i = (i + 4096) & ~(size_t)4095;
    return i < size - 4096 ? i : size - 4096;
}

static void fill(unsigned char *p, size_t size, unsigned seed)
{
    for (size_t i = 0; i < size; i = next_pos(size, i))
        p[i] = pattern(seed, i);
}

/* Checks the first `len` bytes of a block filled for `size` bytes. */
static int check(const unsigned char *p, size_t size, size_t len, unsigned seed, const char *what)
{
    for (size_t i = 0; i < len && i < size; i = next_pos(size, i))
        if (p[i] != pattern(seed, i)) {
            FAIL("%s: block %p (%zu bytes) byte %zu is 0x%02x, expected 0x%02x", what, (void *)p, size, i,
                 p[i], pattern(seed, i));
            return 0;
        }
    return 1;
}

static void keep(void *p, size_t size, enum kind kind, int from_allocate)
{
    static unsigned seed = 12345;
    struct blk *b;

    if (nblocks == MAX_BLOCKS) {
        FAIL("block table full");
        exit(1);
    }
    seed = seed * 1664525u + 1013904223u;
    b = &blocks[nblocks++];
    b->p = p;
    b->size = size;
    b->seed = seed;
    b->kind = kind;
    b->from_allocate = from_allocate;
    fill(b->p, size, seed);
}

/* A NULL result: errno must say ENOMEM. In phase 2 nothing may fail. */
static void failed(enum kind kind, int err, int phase, const char *call, size_t size)
{
    nulls[kind]++;
    if (err != ENOMEM)
        FAIL("%s(%zu) failed with errno %d (%s), not ENOMEM", call, size, err, strerror(err));
    if (phase == 2)
        FAIL("%s(%zu) failed in the second workload, after the injected failure", call, size);
}

/* ---- the workload -------------------------------------------------------------- */

static void workload(int phase)
{
    void *p;
    int err;

    /* Small blocks of many classes; allocate() and malloc() alternately. */
    for (int i = 0; i < 2000; i++) {
        size_t size = i % 4 != 3 ? 1 + (size_t)(i * 13) % 1024 : 1024 + (size_t)(i * 997) % 15361;
        errno = 0;
        calls++;
        p = i % 2 ? malloc(size) : allocate((unsigned)size);
        err = errno;
        if (p)
            keep(p, size, SMALL, i % 2 == 0);
        else
            failed(SMALL, err, phase, i % 2 ? "malloc" : "allocate", size);
    }
    /* Large blocks, 20 KB .. 500 KB. */
    for (int i = 0; i < 30; i++) {
        size_t size = 20000 + (size_t)i * 16411 % 480000;
        errno = 0;
        calls++;
        p = malloc(size);
        err = errno;
        if (p)
            keep(p, size, LARGE, 0);
        else
            failed(LARGE, err, phase, "malloc", size);
    }
    /* Big blocks, 2 .. 20 MiB: both sides of the largest pooled block (4 MiB
     * on i686, 8 MiB on x86_64; mappings of their own above). */
    for (int i = 0; i < 5; i++) {
        size_t size = (2u << 20) + (size_t)i * (4608u << 10) - (size_t)i * 4000;
        errno = 0;
        calls++;
        p = i % 2 ? allocate((unsigned)size) : malloc(size);
        err = errno;
        if (p)
            keep(p, size, HUGE, i % 2);
        else
            failed(HUGE, err, phase, i % 2 ? "allocate" : "malloc", size);
    }
    /* A block grown by realloc from 16 bytes to 8 MiB, its contents checked at
     * every step; a failed step must leave the block as it was. */
    {
        size_t size = 16;
        unsigned seed = 777u + (unsigned)phase;
        unsigned char *b;

        errno = 0;
        calls++;
        b = malloc(size);
        if (b == NULL) {
            failed(GROWN, errno, phase, "malloc", size);
        } else {
            fill(b, size, seed);
            while (size < (8u << 20)) {
                size_t next = size * 2 + 100;
                unsigned char *q;

                errno = 0;
                calls++;
                q = realloc(b, next);
                err = errno;
                if (q == NULL) {
                    failed(GROWN, err, phase, "realloc", next);
                    check(b, size, size, seed, "after a failed realloc");
                    break;
                }
                check(q, size, size, seed, "after realloc");
                b = q;
                /* Refill at the new size (sampled positions change with it). */
                size = next;
                fill(b, size, seed);
            }
            /* Kept with its own seed: keep() would refill it; record directly. */
            if (nblocks < MAX_BLOCKS) {
                blocks[nblocks++] = (struct blk){b, size, seed, GROWN, 0};
            } else {
                free(b);
            }
        }
    }
    /* calloc: fresh blocks read as zero. */
    for (int i = 0; i < 24; i++) {
        static const size_t sizes[] = {24, 100, 5000, 16384, 100000, 3u << 20};
        size_t count = 1 + (size_t)i % 3, size = sizes[i % 6] / count;
        unsigned char *z;

        errno = 0;
        calls++;
        z = calloc(count, size);
        err = errno;
        if (z == NULL) {
            failed(ZEROED, err, phase, "calloc", count * size);
            continue;
        }
        for (size_t j = 0; j < count * size; j = next_pos(count * size, j))
            if (z[j] != 0) {
                FAIL("calloc(%zu, %zu) = %p: byte %zu is 0x%02x, not 0", count, size, (void *)z, j, z[j]);
                break;
            }
        keep(z, count * size, ZEROED, 0);
    }
    /* posix_memalign with 64 KiB alignment. */
    for (int i = 0; i < 8; i++) {
        size_t size = 1000 + (size_t)i * 40000;
        int rc;

        p = NULL;
        calls++;
        rc = posix_memalign(&p, 65536, size);
        if (rc != 0) {
            nulls[ALIGNED]++;
            if (rc != ENOMEM)
                FAIL("posix_memalign(65536, %zu) returned %d, not ENOMEM", size, rc);
            if (phase == 2)
                FAIL("posix_memalign(65536, %zu) failed in the second workload", size);
            continue;
        }
        if ((uintptr_t)p % 65536 != 0)
            FAIL("posix_memalign(65536, %zu) = %p: not 64 KiB aligned", size, p);
        keep(p, size, ALIGNED, 0);
    }
}

/* Checks every block, that none overlaps another, then frees them all. */
static int cmp_blk(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct blk *)a)->p, y = (uintptr_t)((const struct blk *)b)->p;
    return x < y ? -1 : x > y;
}

static void verify_and_free(void)
{
    qsort(blocks, (size_t)nblocks, sizeof blocks[0], cmp_blk);
    for (int i = 0; i < nblocks; i++) {
        struct blk *b = &blocks[i];
        check(b->p, b->size, b->size, b->seed, kind_name[b->kind]);
        if (i + 1 < nblocks && (uintptr_t)b->p + b->size > (uintptr_t)blocks[i + 1].p)
            FAIL("%s block %p (%zu bytes) overlaps %s block %p", kind_name[b->kind], (void *)b->p, b->size,
                 kind_name[blocks[i + 1].kind], (void *)blocks[i + 1].p);
    }
    for (int i = 0; i < nblocks; i++) {
        if (blocks[i].from_allocate)
            deallocate(blocks[i].p);
        else
            free(blocks[i].p);
    }
    nblocks = 0;
}

static int child(void)
{
    struct memory_stats start, s;
    const char *env = getenv("MALLOCATOR_FAIL_MMAP");
    unsigned long phase1_nulls = 0, extra_rounds = 0;

    cur_n = env ? atoi(env) : 0;
    memory_stats(&start);

    workload(1);
    verify_and_free();

    /* Make sure the n-th mapping attempt is behind: at least n mappings made. */
    memory_stats(&s);
    while (s.mmap_calls < (uint64_t)cur_n && extra_rounds < 200) {
        void *h[4];
        extra_rounds++;
        for (int i = 0; i < 4; i++) {
            size_t size = (16u << 20) + (size_t)i * 8192; /* above the pool's largest */
            errno = 0;
            calls++;
            h[i] = malloc(size);
            if (h[i] == NULL)
                failed(HUGE, errno, 1, "malloc", size);
            else
                memset(h[i], 0x5A, 4096);
        }
        for (int i = 0; i < 4; i++)
            free(h[i]);
        memory_stats(&s);
    }
    /* The failures of the first workload and of the extra rounds. */
    phase1_nulls = 0;
    for (int k = 0; k < KINDS; k++)
        phase1_nulls += nulls[k];
    if (s.mmap_calls < (uint64_t)cur_n)
        FAIL("only %llu mappings after %lu extra rounds", (unsigned long long)s.mmap_calls, extra_rounds);

    /* Now nothing may fail. */
    workload(2);
    verify_and_free();

    memory_stats(&s);
    if (s.mapped_bytes > start.mapped_bytes + LEAK_SLACK)
        FAIL("after freeing everything %llu KiB are mapped, more than %zu MiB above the %llu KiB at start",
             (unsigned long long)(s.mapped_bytes >> 10), LEAK_SLACK >> 20, (unsigned long long)(start.mapped_bytes >> 10));
    if (s.small_live_bytes != 0 || s.large_live_bytes != 0 || s.huge_live_bytes != 0)
        FAIL("after freeing everything: live bytes small %llu, large %llu, huge %llu",
             (unsigned long long)s.small_live_bytes, (unsigned long long)s.large_live_bytes,
             (unsigned long long)s.huge_live_bytes);

    say("RESULT n=%d nulls=%lu (small %lu, large %lu, huge %lu, realloc %lu, calloc %lu, memalign %lu) "
        "calls=%lu extra_rounds=%lu mmaps=%llu mapped_start_kib=%llu mapped_end_kib=%llu\n",
        cur_n, phase1_nulls, nulls[SMALL], nulls[LARGE], nulls[HUGE], nulls[GROWN], nulls[ZEROED],
        nulls[ALIGNED], calls, extra_rounds, (unsigned long long)s.mmap_calls,
        (unsigned long long)(start.mapped_bytes >> 10), (unsigned long long)(s.mapped_bytes >> 10));
    return failures ? 1 : 0;
}

/* ---- the parent ---------------------------------------------------------------- */

/* Runs the child for n; returns its NULL count, or -1 if it failed. */
static long run_child(int n, int *status_out)
{
    int fds[2], status;
    pid_t pid;
    char out[16384];
    size_t len = 0;
    ssize_t r;
    long count = -1;
    const char *res;

    if (pipe(fds) != 0) {
        printf("FAIL: test_faults: pipe: %s\n", strerror(errno));
        exit(1);
    }
    pid = fork();
    if (pid < 0) {
        printf("FAIL: test_faults: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        char num[16];
        char *args[] = {(char *)"test_faults", (char *)"child", NULL};

        close(fds[0]);
        if (dup2(fds[1], 1) < 0)
            _exit(127);
        close(fds[1]);
        snprintf(num, sizeof num, "%d", n);
        setenv("MALLOCATOR_FAIL_MMAP", num, 1);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fds[1]);
    while (len < sizeof out - 1 && (r = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    /* Drain anything beyond the buffer so the child never blocks. */
    {
        char sink[256];
        while (read(fds[0], sink, sizeof sink) > 0) {
        }
    }
    close(fds[0]);
    if (waitpid(pid, &status, 0) != pid) {
        printf("FAIL: test_faults: waitpid: %s\n", strerror(errno));
        exit(1);
    }
    *status_out = status;

    res = strstr(out, "RESULT ");
    if (res != NULL && sscanf(res, "RESULT n=%*d nulls=%ld", &count) != 1)
        count = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || count < 0) {
        if (WIFSIGNALED(status))
            printf("FAIL: test_faults: n=%d: child killed by signal %d (%s)\n", n, WTERMSIG(status),
                   strsignal(WTERMSIG(status)));
        else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            printf("FAIL: test_faults: n=%d: child exited with status %d\n", n, WEXITSTATUS(status));
        else
            printf("FAIL: test_faults: n=%d: child printed no RESULT line\n", n);
        printf("  child output:\n%s", out);
        if (len && out[len - 1] != '\n')
            printf("\n");
        return -1;
    }
    /* The RESULT line, shortened. */
    {
        const char *nl = strchr(res, '\n');
        printf("  %.*s\n", nl ? (int)(nl - res - 7) : (int)strlen(res + 7), res + 7);
    }
    return count;
}

int main(int argc, char **argv)
{
    long total = 0, with_nulls = 0, bad = 0;

    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child();

    printf("test_faults: MALLOCATOR_FAIL_MMAP=n for n = 1 .. %d, one child each\n", N_MAX);
    for (int n = 1; n <= N_MAX; n++) {
        int status;
        long c = run_child(n, &status);

        if (c < 0) {
            bad++;
            continue;
        }
        total += c;
        with_nulls += c > 0;
    }
    printf("children: %d, failed: %ld; failed allocations: %ld in %ld children\n", N_MAX, bad, total, with_nulls);
    if (bad == 0 && total == 0)
        printf("FAIL: test_faults: no allocation failed in any child: the injection did not happen\n");
    if (bad != 0 || total == 0)
        return 1;
    printf("PASS: test_faults (%d children, each with its n-th mapping failing: %ld failed allocations, all "
           "NULL/ENOMEM, no crash, no corruption, no leaked mapping, full recovery)\n",
           N_MAX, total);
    return 0;
}
