/*
 * common.h -- shared helpers of the Mallocator benchmark workloads.
 *
 * Every workload is a plain C program that uses the standard malloc family;
 * the allocator under test is chosen by the harness with LD_PRELOAD, so all
 * allocators run the very same binary.
 *
 * Arguments are key=value pairs (e.g. `threads=4 iters=1000000`); unknown
 * keys are an error. The last line a workload prints on stdout is
 *
 *   RESULT workload=<name> malloc_lib=<file that defines malloc> key=value ...
 *
 * A failed self-check prints `FAIL: ...` and exits with status 2.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- errors */

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fflush(stdout);
    /* write(2) so that a broken heap cannot stop the message. */
    (void)!write(1, "FAIL: ", 6);
    (void)!write(1, buf, strlen(buf));
    (void)!write(1, "\n", 1);
    (void)!write(2, "FAIL: ", 6);
    (void)!write(2, buf, strlen(buf));
    (void)!write(2, "\n", 1);
    _exit(2);
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        fail("malloc(%zu) returned NULL (errno %d)", n, errno);
    return p;
}

/* Keeps the compiler from eliding a malloc/free pair. */
static inline void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* ------------------------------------------------------------- arguments */

static int g_argc;
static char **g_argv;

static inline void args_init(int argc, char **argv, const char *const *known)
{
    g_argc = argc;
    g_argv = argv;
    for (int i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        int ok = 0;
        if (eq != NULL)
            for (const char *const *k = known; *k != NULL; k++)
                if (strlen(*k) == (size_t)(eq - argv[i]) &&
                    strncmp(*k, argv[i], (size_t)(eq - argv[i])) == 0)
                    ok = 1;
        if (!ok) {
            fprintf(stderr, "usage: %s", argv[0]);
            for (const char *const *k = known; *k != NULL; k++)
                fprintf(stderr, " [%s=N]", *k);
            fprintf(stderr, "\nunknown argument '%s'\n", argv[i]);
            exit(64);
        }
    }
}

static inline long long arg_ll(const char *key, long long def)
{
    size_t n = strlen(key);
    for (int i = 1; i < g_argc; i++)
        if (strncmp(g_argv[i], key, n) == 0 && g_argv[i][n] == '=') {
            char *end;
            long long v = strtoll(g_argv[i] + n + 1, &end, 0);
            if (*end != '\0' || end == g_argv[i] + n + 1) {
                fprintf(stderr, "bad number in '%s'\n", g_argv[i]);
                exit(64);
            }
            return v;
        }
    return def;
}

/* ----------------------------------------------------------------- clock */

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------- rng */

typedef struct {
    uint64_t s;
} rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed)
{
    /* splitmix64 of the seed: never zero in practice, well mixed */
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    r->s = (z ^ (z >> 31)) | 1;
}

/* xorshift64* */
static inline uint32_t rng_next(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static inline uint32_t rng_below(rng_t *r, uint32_t n)
{
    return (uint32_t)(((uint64_t)rng_next(r) * n) >> 32);
}

static inline unsigned log2_floor(size_t v)
{
    unsigned k = 0;
    while (v >>= 1)
        k++;
    return k;
}

/* A size in [lo, hi], log-uniform: each power-of-two octave is equally
 * likely, uniform inside the octave. Small blocks dominate by count, as in
 * real programs, while large ones still carry much of the volume. */
static inline size_t rand_size(rng_t *r, size_t lo, size_t hi)
{
    if (lo >= hi)
        return lo;
    /* hi - 1: a power-of-two hi joins the octave below instead of being an
     * octave of one value */
    unsigned a = log2_floor(lo), b = log2_floor(hi - 1);
    if (b < a)
        b = a;
    unsigned k = a + rng_below(r, b - a + 1);
    size_t from = (size_t)1 << k, to = ((size_t)2 << k) - 1;
    if (from < lo)
        from = lo;
    if (k == b || to > hi)
        to = hi;
    return from + rng_below(r, (uint32_t)(to - from + 1));
}

/* ------------------------------------------------------- block contents */

/* Writes a tag into a block: up to 8 bytes at the start, the last byte and
 * one byte in every further 4 KiB page (so large blocks are really touched). */
static inline void fill_block(void *p, size_t size, uint64_t tag)
{
    unsigned char *b = p;
    if (size >= 8) {
        memcpy(b, &tag, 8);
    } else {
        for (size_t i = 0; i < size; i++)
            b[i] = (unsigned char)(tag >> (8 * i));
    }
    for (size_t off = 4096; off < size; off += 4096)
        b[off] = (unsigned char)(tag + off / 4096);
    if (size > 0)
        b[size - 1] = (unsigned char)(tag ^ 0xA5);
}

static inline int block_ok(const void *p, size_t size, uint64_t tag)
{
    const unsigned char *b = p;
    if (size == 0)
        return 1;
    /* head bytes, except the last byte of the block, which holds the tail */
    size_t head = size - 1 < 8 ? size - 1 : 8;
    for (size_t i = 0; i < head; i++)
        if (b[i] != (unsigned char)(tag >> (8 * i)))
            return 0;
    for (size_t off = 4096; off < size - 1; off += 4096)
        if (b[off] != (unsigned char)(tag + off / 4096))
            return 0;
    return b[size - 1] == (unsigned char)(tag ^ 0xA5);
}

static inline void check_block(const void *p, size_t size, uint64_t tag, const char *what)
{
    if (!block_ok(p, size, tag))
        fail("%s: block %p of %zu bytes lost its contents (tag %llx)", what, p, size,
             (unsigned long long)tag);
}

/* ---------------------------------------------------------- /proc/self */

typedef struct {
    long rss_kb, size_kb, hwm_kb, peak_kb;
} vmstat_t;

/* Reads VmRSS, VmSize, VmHWM, VmPeak with open/read and a stack buffer, so
 * it works even when malloc cannot. */
static inline vmstat_t vmstat(void)
{
    vmstat_t v = {-1, -1, -1, -1};
    char buf[8192];
    ssize_t n, len = 0;
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0)
        return v;
    while (len < (ssize_t)sizeof buf - 1 &&
           (n = read(fd, buf + len, sizeof buf - 1 - (size_t)len)) > 0)
        len += n;
    close(fd);
    buf[len] = '\0';
    static const char *const keys[] = {"VmRSS:", "VmSize:", "VmHWM:", "VmPeak:"};
    long *dst[] = {&v.rss_kb, &v.size_kb, &v.hwm_kb, &v.peak_kb};
    for (int k = 0; k < 4; k++) {
        char *line = strstr(buf, keys[k]);
        if (line != NULL)
            *dst[k] = strtol(line + strlen(keys[k]), NULL, 10);
    }
    return v;
}

/* The file that defines the malloc this process really uses: the preloaded
 * allocator, or libc. The harness checks it against the allocator it meant
 * to test, so a preload that silently failed cannot pass as glibc. */
static inline const char *malloc_lib(void)
{
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    if (sym != NULL && dladdr(sym, &info) != 0 && info.dli_fname != NULL)
        return info.dli_fname;
    return "unknown";
}

/* With WORKLOAD_STATS=1 in the environment, at the moment a workload calls
 * this (its peak): the bytes it holds, as it asked for them, its VmRSS, and,
 * if the allocator in use is libmemory, that allocator's account of where
 * the resident memory is (memory_stats_print: per class live and resident
 * bytes, empty pages kept, headers, bitmaps). What separates the requested
 * bytes from the RSS, piece by piece. */
static inline void peak_report(size_t live_bytes)
{
    const char *on = getenv("WORKLOAD_STATS");
    if (on == NULL || strcmp(on, "1") != 0)
        return;
    vmstat_t v = vmstat();
    fprintf(stderr, "peak: %zu KiB requested and live, VmRSS %ld KiB\n", live_bytes >> 10, v.rss_kb);
    void (*print)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "memory_stats_print");
    if (print != NULL)
        print(2);
}

/* Starts the RESULT line; the caller adds " key=value" fields and ends it
 * with result_end(). */
static inline void result_begin(const char *workload)
{
    printf("RESULT workload=%s bits=%d malloc_lib=%s", workload, (int)(8 * sizeof(void *)),
           malloc_lib());
}

static inline void result_end(void)
{
    printf("\n");
    fflush(stdout);
}

#endif /* BENCH_COMMON_H */
