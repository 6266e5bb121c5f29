/*
 * malloc_edge: the malloc family of libmemory.so, edge cases.
 *
 * Linked with -lmemory, so the library's malloc, free, calloc, realloc, ...
 * replace glibc's for the whole program (printf and the rest of libc use
 * them too). Sections:
 *
 *   malloc        malloc(0) unique and non-NULL; every size 1 .. 1100 and a
 *                 list up to 10 MiB: 16-byte aligned above 8 bytes (8 at or
 *                 below), malloc_usable_size >= size, the whole usable size
 *                 writable without overlapping other live blocks.
 *   enomem        sizes that cannot be served (SIZE_MAX, SIZE_MAX - 4096, ...;
 *                 on 32-bit 0xF0000000) through malloc, calloc, realloc,
 *                 aligned_alloc, memalign, valloc, pvalloc, posix_memalign:
 *                 NULL (posix_memalign: ENOMEM returned) and errno == ENOMEM;
 *                 a block passed to a failing realloc is intact.
 *   calloc        n*size overflow -> NULL/ENOMEM; calloc(0, x) non-NULL;
 *                 zeroed memory for fresh blocks up to 64 MiB and for reused
 *                 dirty blocks (malloc + memset 0xFF + free, then calloc).
 *   posix_memalign  bad alignments -> EINVAL with errno and *out untouched;
 *                 alignments sizeof(void*) .. 8 MiB (i686: 4 MiB) with sizes
 *                 0 .. 3 MiB.
 *   aligned       aligned_alloc (bad alignment -> NULL/EINVAL), memalign
 *                 (non-power-of-two rounded up), valloc, pvalloc.
 *   realloc       realloc(NULL, n), realloc(p, 0) (frees, returns NULL),
 *                 contents kept across every kind transition, growth from 1
 *                 byte to 64 MiB by doubling and by +1000 steps, shrinking,
 *                 interleaved growth of several buffers.
 *   reallocarray  overflow -> NULL/ENOMEM, the old block stays valid.
 *   free          errno kept by free of every kind and of NULL; invalid frees
 *                 (stack, global, string literal, foreign mmap, interior
 *                 pointers, double free) print one "mallocator: " line, keep
 *                 errno and leave the heap intact; free_sized and
 *                 free_aligned_sized free.
 *   usable        malloc_usable_size(NULL) == 0 and >= size for every kind.
 *   libc          blocks allocated inside glibc (strdup, asprintf, getline,
 *                 open_memstream, getcwd, realpath, scandir) are ours: freed
 *                 silently and malloc_usable_size knows them.
 *
 * stderr is captured to a temporary file for the whole run; the expected
 * reports are captured separately around each call. Anything else the
 * library prints on stderr is a failure. A crash prints what was captured;
 * alarm(300) turns a hang into a failure. If MALLOCATOR_ON_ERROR, _STATS,
 * _VERBOSE or _FAIL_MMAP is set, the program runs itself again without them.
 * Prints "ok: <section> (N checks)" per section, then PASS: malloc_edge ...
 * (exit 0) or FAIL lines (exit 1).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* C23; glibc 2.36 does not declare them yet. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define ERRNO_MARK 12345
#define TIMEOUT 300 /* seconds; a normal run takes a few */
#define TIMEOUT_TEXT "300"
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- checks ------------------------------------------------------------ */

static unsigned long checks, failures, section_checks, section_failures;
static const char *section = "";
static int saved_stderr = -1; /* the real stderr while it is captured */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

static void fail_at(int line, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail_at(int line, const char *fmt, ...)
{
    va_list ap;

    failures++;
    section_failures++;
    if (failures > 60) {
        if (failures == 61)
            say("FAIL: malloc_edge: (further failures counted, not printed)\n");
        return;
    }
    printf("FAIL: malloc_edge: [%s] line %d: ", section, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        checks++;                                                              \
        section_checks++;                                                      \
        if (!(cond))                                                           \
            fail_at(__LINE__, __VA_ARGS__);                                    \
    } while (0)

static void begin(const char *name)
{
    section = name;
    section_checks = section_failures = 0;
}

static void end(void)
{
    if (section_failures == 0)
        say("ok: %s (%lu checks)\n", section, section_checks);
    else
        say("FAILED: %s (%lu of %lu checks failed)\n", section,
            section_failures, section_checks);
}

/* Hide a value from the optimiser: no folding of malloc(SIZE_MAX), no
 * compile-time warnings about deliberate misuse (freeing a stack address,
 * using a pointer after realloc failed). */
static void *hide(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

static size_t hsz(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n;
}

static int aligned_to(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

/* ---- patterns ---------------------------------------------------------- */

static unsigned char pat(size_t i, unsigned seed)
{
    uint32_t x = (uint32_t)i + seed * 0x9E3779B1u;
    return (unsigned char)((x * 2654435761u) >> 24);
}

static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = pat(i, seed);
}

/* Index of the first byte that differs from the pattern, or SIZE_MAX. */
static size_t bad_byte(const void *p, size_t n, unsigned seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != pat(i, seed))
            return i;
    return SIZE_MAX;
}

static size_t nonzero_byte(const void *p, size_t n)
{
    const unsigned char *c = p;
    size_t i = 0;
    for (; i < n && !aligned_to(c + i, sizeof(size_t)); i++)
        if (c[i])
            return i;
    for (; i + sizeof(size_t) <= n; i += sizeof(size_t))
        if (*(const size_t *)(const void *)(c + i))
            break;
    for (; i < n; i++)
        if (c[i])
            return i;
    return SIZE_MAX;
}

/* The alignment malloc promises for a request of n bytes. */
static size_t c_align(size_t n)
{
    return n > 8 ? 16 : 8;
}

/* ---- stderr capture ---------------------------------------------------- */

static int whole_fd = -1; /* stderr of the whole run */
static int cap_fd = -1;   /* stderr around one call */
static char cap_buf[4096];

static int tmp_fd(void)
{
    char name[] = "/tmp/malloc_edge.XXXXXX";
    int fd = mkstemp(name);
    if (fd < 0) {
        printf("FAIL: malloc_edge: mkstemp: %s\n", strerror(errno));
        exit(1);
    }
    unlink(name);
    return fd;
}

static size_t read_all(int fd, char *buf, size_t size)
{
    size_t len = 0;
    ssize_t n;
    while (len < size - 1 &&
           (n = pread(fd, buf + len, size - 1 - len, (off_t)len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    return len;
}

/* If the program dies while stderr is captured, show what was captured. */
static void on_fatal(int sig)
{
    static const char head[] = "\n[malloc_edge died; captured stderr:]\n";
    static const char hung[] = "\nFAIL: malloc_edge: no result after " TIMEOUT_TEXT
                               " s (a deadlock?)\n";
    char buf[2048];
    ssize_t n;
    off_t off = 0;

    if (sig == SIGALRM && write(1, hung, sizeof hung - 1) < 0) { /* nothing to do */ }
    if (saved_stderr >= 0) {
        dup2(saved_stderr, 2);
        if (write(1, head, sizeof head - 1) < 0) { /* nothing to do */ }
        if (cap_fd >= 0)
            while ((n = pread(cap_fd, buf, sizeof buf, off)) > 0) {
                if (write(1, buf, (size_t)n) < 0)
                    break;
                off += n;
            }
        off = 0;
        while ((n = pread(whole_fd, buf, sizeof buf, off)) > 0) {
            if (write(1, buf, (size_t)n) < 0)
                break;
            off += n;
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int cap_saved = -1;

/* Points fd 2 at an empty capture file. No allocation: a block freed just
 * before can be checked without being handed out again. */
static void cap_begin(void)
{
    fflush(stderr);
    if (ftruncate(cap_fd, 0) != 0 || lseek(cap_fd, 0, SEEK_SET) != 0 ||
        (cap_saved = dup(2)) < 0 ||
        dup2(cap_fd, 2) < 0) {
        printf("FAIL: malloc_edge: capture: %s\n", strerror(errno));
        exit(1);
    }
}

/* Restores fd 2; returns the number of bytes written to it (in cap_buf). */
static size_t cap_end(void)
{
    fflush(stderr);
    if (dup2(cap_saved, 2) < 0) {
        printf("FAIL: malloc_edge: restore capture: %s\n", strerror(errno));
        exit(1);
    }
    close(cap_saved);
    cap_saved = -1;
    return read_all(cap_fd, cap_buf, sizeof cap_buf);
}

/* The captured text is exactly one line that starts with "mallocator: ". */
static int one_report(size_t len)
{
    const char *nl = strchr(cap_buf, '\n');
    return len > 12 && strncmp(cap_buf, "mallocator: ", 12) == 0 && nl &&
           nl[1] == '\0';
}

static void show_capture(size_t len)
{
    if (len)
        say("    stderr: %s%s", cap_buf, cap_buf[len - 1] == '\n' ? "" : "\n");
}

/* free(p), which must print nothing and keep errno. */
static void free_silent(void *p, const char *what)
{
    size_t len;
    int e;

    cap_begin();
    errno = ERRNO_MARK;
    free(p);
    e = errno;
    len = cap_end();
    CHECK(len == 0, "free(%s %p) printed on stderr: %s", what, p, cap_buf);
    CHECK(e == ERRNO_MARK, "free(%s) changed errno to %d", what, e);
}

/* free(p) of a pointer that is not a live block: exactly one report line,
 * errno kept. */
static void free_reported(void *p, const char *what)
{
    size_t len;
    int e;

    cap_begin();
    errno = ERRNO_MARK;
    free(hide(p));
    e = errno;
    len = cap_end();
    show_capture(len);
    CHECK(one_report(len),
          "free(%s %p): expected one \"mallocator: \" line on stderr, got "
          "%zu bytes: %s",
          what, p, len, cap_buf);
    CHECK(e == ERRNO_MARK, "free(%s) changed errno from %d to %d", what,
          ERRNO_MARK, e);
}

/* ---- malloc ------------------------------------------------------------ */

static const size_t kind_sizes[] = {
    1100,    1500,    2047,    2048,    2049,    4095,   4096,
    4097,    8000,    12345,   16383,   16384,   16385,  20000,
    65535,   65536,   100000,  500000,  1 * MiB - 1, 1 * MiB, 1 * MiB + 1,
    2 * MiB, 3 * MiB, 10 * MiB};

struct blk {
    unsigned char *p;
    size_t n;
};

/* Allocates every size, all live together, fills each whole usable size
 * with its own pattern, then checks every pattern (usable ranges of live
 * blocks must not overlap) and frees. */
static void malloc_batch(const size_t *sizes, size_t count)
{
    struct blk *b = calloc(count, sizeof *b);
    CHECK(b != NULL, "calloc of the bookkeeping array failed");
    if (!b)
        return;
    for (size_t i = 0; i < count; i++) {
        size_t n = sizes[i], u;
        unsigned char *p = malloc(hsz(n));
        CHECK(p != NULL, "malloc(%zu) = NULL", n);
        if (!p)
            continue;
        CHECK(aligned_to(p, c_align(n)), "malloc(%zu) = %p, not %zu-aligned",
              n, (void *)p, c_align(n));
        u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        b[i].p = p;
        b[i].n = u;
        fill(p, u, (unsigned)i);
    }
    for (size_t i = 0; i < count; i++) {
        size_t at;
        if (!b[i].p)
            continue;
        at = bad_byte(b[i].p, b[i].n, (unsigned)i);
        CHECK(at == SIZE_MAX,
              "block of malloc(%zu) at %p: byte %zu of its usable %zu "
              "changed (overlap?)",
              sizes[i], (void *)b[i].p, at, b[i].n);
        free(b[i].p);
    }
    free(b);
}

static void test_malloc(void)
{
    void *z[16];
    size_t seq[1100];

    begin("malloc");
    for (size_t i = 0; i < ARRAY_LEN(z); i++) {
        z[i] = malloc(hsz(0));
        CHECK(z[i] != NULL, "malloc(0) = NULL");
        CHECK(aligned_to(z[i], 8), "malloc(0) = %p, not 8-aligned", z[i]);
        for (size_t j = 0; j < i; j++)
            CHECK(z[i] != z[j], "malloc(0) returned %p twice", z[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(z); i++)
        free_silent(z[i], "malloc(0)");

    for (size_t i = 0; i < ARRAY_LEN(seq); i++)
        seq[i] = i + 1;
    malloc_batch(seq, ARRAY_LEN(seq));
    malloc_batch(kind_sizes, ARRAY_LEN(kind_sizes));
    /* Many blocks of one small size: several pages of a class. */
    for (size_t i = 0; i < ARRAY_LEN(seq); i++)
        seq[i] = 24 + (i % 3) * 8;
    malloc_batch(seq, ARRAY_LEN(seq));
    end();
}

/* ---- enomem -------------------------------------------------------------- */

static void expect_enomem(void *p, int e, const char *call, size_t n)
{
    CHECK(p == NULL, "%s(%zu = %#zx) = %p, expected NULL", call, n, n, p);
    CHECK(e == ENOMEM, "%s(%#zx): errno %d (%s), expected ENOMEM", call, n, e,
          strerror(e));
    if (p)
        free(p);
}

static void test_enomem(void)
{
    size_t bad[8], nbad = 0;
    const size_t live_sizes[] = {100, 100000, 3 * MiB};
    void *p;
    int e, r;

    begin("enomem");
    bad[nbad++] = SIZE_MAX;
    bad[nbad++] = SIZE_MAX - 4096;
    bad[nbad++] = SIZE_MAX - 65536;
    bad[nbad++] = SIZE_MAX - 2 * MiB;
#if SIZE_MAX == 0xFFFFFFFFu
    bad[nbad++] = 0xF0000000u;
    bad[nbad++] = 0xFFFFF000u;
#else
    bad[nbad++] = SIZE_MAX / 2 + 1; /* 2^63 */
    bad[nbad++] = (size_t)1 << 62;
#endif

    for (size_t i = 0; i < nbad; i++) {
        size_t n = hsz(bad[i]);
        errno = 0; p = malloc(n); e = errno; expect_enomem(p, e, "malloc", n);
        errno = 0; p = calloc(1, n); e = errno; expect_enomem(p, e, "calloc(1, n)", n);
        errno = 0; p = calloc(n, 1); e = errno; expect_enomem(p, e, "calloc(n, 1)", n);
        errno = 0; p = realloc(NULL, n); e = errno; expect_enomem(p, e, "realloc(NULL, n)", n);
        errno = 0; p = aligned_alloc(64, n); e = errno; expect_enomem(p, e, "aligned_alloc(64, n)", n);
        errno = 0; p = aligned_alloc(MiB, n); e = errno; expect_enomem(p, e, "aligned_alloc(1 MiB, n)", n);
        errno = 0; p = memalign(4096, n); e = errno; expect_enomem(p, e, "memalign(4096, n)", n);
        errno = 0; p = valloc(n); e = errno; expect_enomem(p, e, "valloc", n);
        errno = 0; p = pvalloc(n); e = errno; expect_enomem(p, e, "pvalloc", n);

        p = &p;
        r = posix_memalign(&p, 64, n);
        CHECK(r == ENOMEM, "posix_memalign(64, %#zx) returned %d, expected ENOMEM",
              n, r);
        CHECK(p == (void *)&p, "posix_memalign(64, %#zx) failed but wrote *out", n);
        if (r == 0)
            free(p);

        /* A failing realloc leaves the block as it was. */
        for (size_t k = 0; k < ARRAY_LEN(live_sizes); k++) {
            size_t m = live_sizes[k], at;
            unsigned char *q = malloc(m), *r2;
            CHECK(q != NULL, "malloc(%zu) = NULL", m);
            if (!q)
                continue;
            fill(q, m, 77);
            errno = 0;
            r2 = realloc(hide(q), n);
            e = errno;
            CHECK(r2 == NULL, "realloc(malloc(%zu), %#zx) = %p, expected NULL",
                  m, n, (void *)r2);
            CHECK(e == ENOMEM, "realloc(malloc(%zu), %#zx): errno %d, expected ENOMEM",
                  m, n, e);
            if (r2) {
                free(r2);
                continue;
            }
            q = hide(q);
            at = bad_byte(q, m, 77);
            CHECK(at == SIZE_MAX,
                  "after a failed realloc, byte %zu of the %zu-byte block changed",
                  at, m);
            free_silent(q, "block after failed realloc");
        }
    }
    p = malloc(100);
    CHECK(p != NULL, "malloc(100) after the failures = NULL");
    free(p);
    end();
}

/* ---- calloc ------------------------------------------------------------ */

static void calloc_zero(size_t count, size_t size)
{
    unsigned char *p = calloc(hsz(count), hsz(size));
    size_t n = count * size, at;

    CHECK(p != NULL, "calloc(%zu, %zu) = NULL", count, size);
    if (!p)
        return;
    CHECK(aligned_to(p, c_align(n)), "calloc(%zu, %zu) = %p, not %zu-aligned",
          count, size, (void *)p, c_align(n));
    CHECK(malloc_usable_size(p) >= n, "malloc_usable_size(calloc(%zu, %zu)) = %zu",
          count, size, malloc_usable_size(p));
    at = nonzero_byte(p, n);
    CHECK(at == SIZE_MAX, "calloc(%zu, %zu): byte %zu is 0x%02x, not zero",
          count, size, at, at == SIZE_MAX ? 0 : p[at]);
    memset(p, 0xFF, n);
    free(p);
}

#define DIRTY_MAX 256

/* Dirties blocks of the given sizes (malloc, memset 0xFF, free), then asks
 * calloc for `csizes`: every byte must be zero. */
static void calloc_after_dirty(const size_t *dsizes, size_t nd, const size_t *csizes,
                               size_t nc, size_t copies)
{
    static unsigned char *blocks[DIRTY_MAX];
    size_t nb = 0, bad = 0;

    for (size_t i = 0; i < nd; i++)
        for (size_t c = 0; c < copies && nb < DIRTY_MAX; c++) {
            unsigned char *p = malloc(dsizes[i]);
            CHECK(p != NULL, "malloc(%zu) = NULL", dsizes[i]);
            if (!p)
                continue;
            memset(p, 0xFF, malloc_usable_size(p));
            blocks[nb++] = p;
        }
    for (size_t i = 0; i < nb; i++)
        free(blocks[i]);
    nb = 0;
    for (size_t i = 0; i < nc; i++)
        for (size_t c = 0; c < copies && nb < DIRTY_MAX; c++) {
            size_t n = csizes[i], at;
            /* Alternate the split of n into count * size. */
            unsigned char *p =
                (c & 1) && n % 8 == 0 ? calloc(n / 8, 8) : calloc(1, n);
            CHECK(p != NULL, "calloc(%zu bytes) = NULL", n);
            if (!p)
                continue;
            at = nonzero_byte(p, n);
            if (at != SIZE_MAX && bad++ < 5)
                CHECK(0, "calloc of %zu bytes over dirty memory at %p: byte %zu "
                         "is 0x%02x",
                      n, (void *)p, at, p[at]);
            else
                checks++, section_checks++;
            memset(p, 0xFF, n);
            blocks[nb++] = p;
        }
    for (size_t i = 0; i < nb; i++)
        free(blocks[i]);
}

static void test_calloc(void)
{
    struct {
        size_t count, size;
    } overflow[6];
    size_t nover = 0;
    void *z[3];
    const size_t fresh[] = {1,      8,      9,      100,     4096,    16384,
                            16385,  20000,  100000, 1 * MiB, 3 * MiB, 64 * MiB};
    const size_t small[] = {16, 24, 100, 1000, 4096, 16384};
    const size_t large[] = {20000, 100000, 300000, 1 * MiB - 4096};
    const size_t huge[] = {2 * MiB, 8 * MiB};
    const size_t large_mix[] = {40000, 200000, 12288, 600000, 1 * MiB - 8192};

    begin("calloc");
    overflow[nover].count = SIZE_MAX; overflow[nover++].size = 2;
    overflow[nover].count = 2; overflow[nover++].size = SIZE_MAX;
    overflow[nover].count = SIZE_MAX / 2 + 1; overflow[nover++].size = 2;
    overflow[nover].count = SIZE_MAX / 16 + 1; overflow[nover++].size = 16;
#if SIZE_MAX == 0xFFFFFFFFu
    overflow[nover].count = 65536; overflow[nover++].size = 65536;
    overflow[nover].count = 0x10001; overflow[nover++].size = 0x10000;
#else
    overflow[nover].count = (size_t)1 << 32; overflow[nover++].size = (size_t)1 << 32;
    overflow[nover].count = (size_t)3 << 62; overflow[nover++].size = 4;
#endif
    for (size_t i = 0; i < nover; i++) {
        void *p;
        int e;
        errno = 0;
        p = calloc(hsz(overflow[i].count), hsz(overflow[i].size));
        e = errno;
        CHECK(p == NULL, "calloc(%#zx, %#zx) overflows but returned %p",
              overflow[i].count, overflow[i].size, p);
        CHECK(e == ENOMEM, "calloc(%#zx, %#zx): errno %d, expected ENOMEM",
              overflow[i].count, overflow[i].size, e);
        if (p)
            free(p);
    }

    z[0] = calloc(hsz(0), hsz(0));
    z[1] = calloc(hsz(0), hsz(16));
    z[2] = calloc(hsz(16), hsz(0));
    for (size_t i = 0; i < 3; i++) {
        CHECK(z[i] != NULL, "calloc with a zero argument (#%zu) = NULL", i);
        for (size_t j = 0; j < i; j++)
            CHECK(z[i] != z[j], "calloc with zero arguments returned %p twice", z[i]);
    }
    for (size_t i = 0; i < 3; i++)
        free_silent(z[i], "calloc(0)");

    for (size_t i = 0; i < ARRAY_LEN(fresh); i++) {
        calloc_zero(1, fresh[i]);
        calloc_zero(fresh[i], 1);
        if (fresh[i] % 16 == 0)
            calloc_zero(fresh[i] / 16, 16);
    }
    for (int round = 0; round < 3; round++) {
        calloc_after_dirty(small, ARRAY_LEN(small), small, ARRAY_LEN(small), 40);
        calloc_after_dirty(large, ARRAY_LEN(large), large, ARRAY_LEN(large), 10);
        /* Different sizes: runs split and merged from dirty ones. */
        calloc_after_dirty(large, ARRAY_LEN(large), large_mix, ARRAY_LEN(large_mix), 10);
        calloc_after_dirty(huge, ARRAY_LEN(huge), huge, ARRAY_LEN(huge), 3);
        calloc_after_dirty(huge, ARRAY_LEN(huge), large, ARRAY_LEN(large), 3);
    }
    /* Small blocks of many classes, dirtied and recycled. */
    {
        size_t seq[64];
        for (size_t i = 0; i < ARRAY_LEN(seq); i++)
            seq[i] = 1 + i * 37;
        calloc_after_dirty(seq, ARRAY_LEN(seq), seq, ARRAY_LEN(seq), 4);
    }
    end();
}

/* ---- posix_memalign ------------------------------------------------------ */

static const size_t align_sizes[] = {0, 1, 100, 5000, 100000, 3 * MiB};

static void test_posix_memalign(void)
{
    size_t bad[20], nbad = 0;
    int sentinel;

    begin("posix_memalign");
    bad[nbad++] = 0;
    bad[nbad++] = 1;
    bad[nbad++] = 2;
    if (sizeof(void *) == 8)
        bad[nbad++] = 4;
    bad[nbad++] = 3;
    bad[nbad++] = 6;
    bad[nbad++] = 12;
    bad[nbad++] = 24;
    bad[nbad++] = 48;
    bad[nbad++] = 100;
    bad[nbad++] = 4097;
    bad[nbad++] = 3 * MiB;
    bad[nbad++] = SIZE_MAX;
    for (size_t i = 0; i < nbad; i++) {
        void *p = &sentinel;
        int r;
        errno = ERRNO_MARK;
        r = posix_memalign(&p, hsz(bad[i]), hsz(100));
        CHECK(r == EINVAL, "posix_memalign(align %zu) returned %d, expected EINVAL",
              bad[i], r);
        CHECK(errno == ERRNO_MARK, "posix_memalign(align %zu) changed errno to %d",
              bad[i], errno);
        CHECK(p == &sentinel, "posix_memalign(align %zu) failed but wrote *out",
              bad[i]);
        if (r == 0)
            free(p);
    }

    /* Up to the largest pooled block: 8 MiB on x86_64, 4 MiB on i686. */
    for (size_t a = sizeof(void *); a <= (sizeof(void *) == 8 ? 8 : 4) * MiB; a *= 2) {
        void *p[ARRAY_LEN(align_sizes)];
        for (size_t i = 0; i < ARRAY_LEN(align_sizes); i++) {
            size_t n = align_sizes[i];
            int r;
            p[i] = NULL;
            errno = ERRNO_MARK;
            r = posix_memalign(&p[i], a, n);
            CHECK(r == 0, "posix_memalign(align %zu, size %zu) returned %d", a, n, r);
            CHECK(errno == ERRNO_MARK,
                  "posix_memalign(align %zu, size %zu) succeeded but changed errno to %d",
                  a, n, errno);
            if (r != 0) {
                p[i] = NULL;
                continue;
            }
            CHECK(p[i] != NULL, "posix_memalign(align %zu, size %zu) gave NULL", a, n);
            CHECK(aligned_to(p[i], a), "posix_memalign(align %zu, size %zu) = %p",
                  a, n, p[i]);
            CHECK(malloc_usable_size(p[i]) >= n,
                  "malloc_usable_size(posix_memalign(align %zu, size %zu)) = %zu", a,
                  n, malloc_usable_size(p[i]));
            if (p[i])
                fill(p[i], n, (unsigned)(a + i));
        }
        /* Live together: no two overlap (a size-0 block counts as 1 byte). */
        for (size_t i = 0; i < ARRAY_LEN(align_sizes); i++)
            for (size_t j = 0; j < i; j++) {
                uintptr_t pi = (uintptr_t)p[i], pj = (uintptr_t)p[j];
                size_t ni = align_sizes[i] ? align_sizes[i] : 1;
                size_t nj = align_sizes[j] ? align_sizes[j] : 1;
                if (!p[i] || !p[j])
                    continue;
                CHECK(pi + ni <= pj || pj + nj <= pi,
                      "posix_memalign(align %zu): blocks of %zu and %zu bytes "
                      "overlap (%p, %p)",
                      a, align_sizes[j], align_sizes[i], p[j], p[i]);
            }
        for (size_t i = 0; i < ARRAY_LEN(align_sizes); i++) {
            size_t at;
            if (!p[i])
                continue;
            at = bad_byte(p[i], align_sizes[i], (unsigned)(a + i));
            CHECK(at == SIZE_MAX,
                  "posix_memalign(align %zu, size %zu): byte %zu changed", a,
                  align_sizes[i], at);
            free_silent(p[i], "posix_memalign block");
        }
    }
    end();
}

/* ---- aligned_alloc, memalign, valloc, pvalloc ------------------------------ */

/* p came from an aligned allocator for n bytes: aligned to a, usable >= n,
 * writable; freed. */
static void aligned_ok(void *p, size_t a, size_t n, const char *call)
{
    CHECK(p != NULL, "%s(align %zu, size %zu) = NULL", call, a, n);
    if (!p)
        return;
    CHECK(aligned_to(p, a), "%s(align %zu, size %zu) = %p, not aligned", call, a,
          n, p);
    CHECK(malloc_usable_size(p) >= n, "malloc_usable_size(%s(%zu, %zu)) = %zu",
          call, a, n, malloc_usable_size(p));
    fill(p, n, 5);
    CHECK(bad_byte(p, n, 5) == SIZE_MAX, "%s(%zu, %zu): pattern did not read back",
          call, a, n);
    free_silent(p, call);
}

static void test_aligned(void)
{
    const size_t bad[] = {0, 3, 5, 6, 24, 48, 100, 4097, 3 * MiB, SIZE_MAX};
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t vsizes[] = {0, 1, 100, 4095, 4096, 4097, 5000, 100000, 3 * MiB + 1};
    struct {
        size_t given, rounded;
    } round_up[] = {{0, 1},       {3, 4},         {24, 32},     {48, 64},
                    {100, 128},   {3000, 4096},   {5000, 8192}, {40000, 65536},
                    {600000, MiB}, {MiB - 1, MiB}};

    begin("aligned");
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        void *p;
        int e;
        errno = 0;
        p = aligned_alloc(hsz(bad[i]), hsz(64));
        e = errno;
        CHECK(p == NULL, "aligned_alloc(%zu, 64) = %p, expected NULL", bad[i], p);
        CHECK(e == EINVAL, "aligned_alloc(%zu, 64): errno %d, expected EINVAL",
              bad[i], e);
        if (p)
            free(p);
    }
    for (size_t a = 1; a <= MiB; a *= 2) {
        for (size_t i = 0; i < ARRAY_LEN(align_sizes); i++)
            aligned_ok(aligned_alloc(a, hsz(align_sizes[i])), a, align_sizes[i],
                       "aligned_alloc");
        /* C11 allows a size that is not a multiple of the alignment. */
        aligned_ok(aligned_alloc(a, hsz(a + 1)), a, a + 1, "aligned_alloc");
        aligned_ok(memalign(a, hsz(a * 3 / 2 + 7)), a, a * 3 / 2 + 7, "memalign");
    }
    /* Tiny sizes with small alignments, 16 blocks of each live together (one
     * block alone may be aligned by chance). */
    for (size_t a = 16; a <= 64; a *= 2)
        for (size_t n = 0; n <= 16; n++) {
            void *p[3][16];
            size_t bad[3] = {0, 0, 0};
            static const char *const call[3] = {"posix_memalign", "aligned_alloc",
                                                "memalign"};
            for (size_t i = 0; i < 16; i++) {
                if (posix_memalign(&p[0][i], a, hsz(n)) != 0)
                    p[0][i] = NULL;
                p[1][i] = aligned_alloc(a, hsz(n));
                p[2][i] = memalign(a, hsz(n));
                for (size_t c = 0; c < 3; c++)
                    bad[c] += p[c][i] == NULL || !aligned_to(p[c][i], a);
            }
            for (size_t c = 0; c < 3; c++) {
                CHECK(bad[c] == 0, "%s(align %zu, size %zu): %zu of 16 blocks NULL or "
                                   "not %zu-aligned",
                      call[c], a, n, bad[c], a);
                for (size_t i = 0; i < 16; i++)
                    free(p[c][i]);
            }
        }
    /* Sizes 0 and 1 with every alignment up to 1 MiB: 4 blocks from each
     * of the three calls, live together, must be 12 distinct blocks. */
    for (size_t a = 16; a <= MiB; a *= 2)
        for (size_t n = 0; n <= 1; n++) {
            void *p[12];
            for (size_t i = 0; i < 4; i++) {
                if (posix_memalign(&p[i], a, hsz(n)) != 0)
                    p[i] = NULL;
                p[4 + i] = aligned_alloc(a, hsz(n));
                p[8 + i] = memalign(a, hsz(n));
            }
            {
                size_t bad = 0, dups = 0;
                void *dup_at = NULL;
                for (size_t i = 0; i < 12; i++) {
                    bad += p[i] == NULL || !aligned_to(p[i], a);
                    for (size_t j = 0; j < i; j++)
                        if (p[i] && p[i] == p[j]) {
                            dups++;
                            dup_at = p[i];
                            break;
                        }
                }
                CHECK(bad == 0, "align %zu, size %zu: %zu of 12 blocks NULL or "
                                "misaligned", a, n, bad);
                CHECK(dups == 0, "align %zu, size %zu: %zu of 12 live blocks (from "
                                 "posix_memalign, aligned_alloc, memalign) are at an "
                                 "address another one has, e.g. %p",
                      a, n, dups, dup_at);
            }
            for (size_t i = 0; i < 12; i++) {
                /* Free each distinct block once. */
                int dup = 0;
                for (size_t j = 0; j < i; j++)
                    dup |= p[j] == p[i];
                if (!dup)
                    free_silent(p[i], "aligned block of size 0 or 1");
            }
        }
    for (size_t i = 0; i < ARRAY_LEN(round_up); i++)
        for (size_t k = 0; k < 3; k++) {
            size_t n = k == 0 ? 1 : k == 1 ? 1000 : 200000;
            void *p = memalign(hsz(round_up[i].given), hsz(n));
            aligned_ok(p, round_up[i].rounded, n, "memalign (rounded up)");
        }
    {
        /* Beyond the largest power of two: glibc says EINVAL. */
        void *p;
        int e;
        errno = 0;
        p = memalign(hsz(SIZE_MAX / 2 + 2), hsz(16));
        e = errno;
        CHECK(p == NULL, "memalign(SIZE_MAX/2 + 2, 16) = %p", p);
        CHECK(e == EINVAL || e == ENOMEM,
              "memalign(SIZE_MAX/2 + 2, 16): errno %d, expected EINVAL", e);
        if (p)
            free(p);
    }

    for (size_t i = 0; i < ARRAY_LEN(vsizes); i++) {
        size_t n = vsizes[i], want = n ? (n + page - 1) / page * page : page, u;
        void *p;
        aligned_ok(valloc(hsz(n)), page, n, "valloc");
        p = pvalloc(hsz(n));
        CHECK(p != NULL, "pvalloc(%zu) = NULL", n);
        if (!p)
            continue;
        u = malloc_usable_size(p);
        CHECK(aligned_to(p, page), "pvalloc(%zu) = %p, not page-aligned", n, p);
        CHECK(u % page == 0, "malloc_usable_size(pvalloc(%zu)) = %zu, not a "
                             "multiple of the page size",
              n, u);
        CHECK(u >= want, "malloc_usable_size(pvalloc(%zu)) = %zu, less than %zu",
              n, u, want);
        fill(p, u, 9);
        CHECK(bad_byte(p, u, 9) == SIZE_MAX, "pvalloc(%zu): pattern", n);
        free_silent(p, "pvalloc block");
    }
    end();
}

/* ---- realloc ------------------------------------------------------------- */

#define REF_SIZE (64 * MiB)
static unsigned char *ref; /* REF_SIZE bytes of pattern 3 */
static unsigned long realloc_calls, realloc_same;

static unsigned char *re(void *p, size_t n)
{
    unsigned char *q = realloc(p, hsz(n));
    realloc_calls++;
    if (q && q == hide(p))
        realloc_same++;
    return q;
}

/* q holds ref's first n bytes. Checked in full up to 1 MiB or if `full`;
 * else the first and last 64 KiB and 256 bytes in every 64 KiB. */
static int holds_ref(const unsigned char *q, size_t n, int full)
{
    if (full || n <= MiB)
        return memcmp(q, ref, n) == 0;
    if (memcmp(q, ref, 64 * KiB) != 0 ||
        memcmp(q + n - 64 * KiB, ref + n - 64 * KiB, 64 * KiB) != 0)
        return 0;
    for (size_t off = 64 * KiB; off + 256 <= n; off += 64 * KiB)
        if (memcmp(q + off, ref + off, 256) != 0)
            return 0;
    return 1;
}

static void realloc_transition(size_t from, size_t to, int blocked)
{
    unsigned char *p = malloc(hsz(from)), *q, *fence = NULL;
    size_t keep = from < to ? from : to, at;

    CHECK(p != NULL, "malloc(%zu) = NULL", from);
    if (!p)
        return;
    if (blocked)
        fence = malloc(hsz(from)); /* likely right after p: no room to grow */
    fill(p, from, 11);
    q = re(p, to);
    CHECK(q != NULL, "realloc(%zu -> %zu) = NULL", from, to);
    if (!q) {
        free(hide(p));
        free(fence);
        return;
    }
    at = bad_byte(q, keep, 11);
    CHECK(at == SIZE_MAX, "realloc(%zu -> %zu%s): byte %zu of the kept %zu changed",
          from, to, blocked ? ", neighbour live" : "", at, keep);
    CHECK(aligned_to(q, c_align(to)), "realloc(%zu -> %zu) = %p, not %zu-aligned",
          from, to, (void *)q, c_align(to));
    CHECK(malloc_usable_size(q) >= to, "malloc_usable_size(realloc(%zu -> %zu)) = %zu",
          from, to, malloc_usable_size(q));
    fill(q, to, 12);
    CHECK(bad_byte(q, to, 12) == SIZE_MAX, "realloc(%zu -> %zu): new pattern", from, to);
    free_silent(q, "realloc'd block");
    free(fence);
}

/* Grows one buffer from 1 byte to 64 MiB, by doubling or by +1000 bytes,
 * checking the contents kept after every step. */
static void realloc_grow(int doubling)
{
    unsigned char *p = NULL;
    size_t n = 0;
    unsigned long steps = 0, same = 0, bad = 0;

    while (n < REF_SIZE) {
        size_t m = doubling ? (n ? n * 2 : 1) : (n ? n + 1000 : 1);
        unsigned char *q;
        int full;
        if (m > REF_SIZE)
            m = REF_SIZE;
        q = re(p, m);
        steps++;
        if (!q) {
            CHECK(0, "realloc(%zu -> %zu) = NULL", n, m);
            free(hide(p));
            return;
        }
        if (q == hide(p))
            same++;
        if (!aligned_to(q, c_align(m)) && bad++ < 3)
            CHECK(0, "realloc(%zu -> %zu) = %p, not aligned", n, m, (void *)q);
        full = doubling || steps % 1024 == 0;
        if (!holds_ref(q, n, full)) {
            CHECK(0, "realloc(%zu -> %zu, %s): contents changed", n, m,
                  doubling ? "doubling" : "+1000");
            free(q);
            return;
        }
        checks++;
        memcpy(q + n, ref + n, m - n);
        p = q;
        n = m;
    }
    CHECK(holds_ref(p, n, 1), "after growing to %zu bytes: contents changed", n);
    CHECK(malloc_usable_size(p) >= n, "usable size %zu < %zu", malloc_usable_size(p), n);
    say("    grow 1 B -> 64 MiB by %s: %lu reallocs, pointer unchanged %lu times "
        "(%.0f%%)\n",
        doubling ? "doubling" : "+1000 bytes", steps, same, 100.0 * same / steps);
    free_silent(p, "grown buffer");
}

/* Shrinks a buffer from `start` bytes by halving or by -1000 bytes. */
static void realloc_shrink(size_t start, int halving)
{
    unsigned char *p = malloc(start);
    size_t n = start;
    unsigned long steps = 0, same = 0;

    CHECK(p != NULL, "malloc(%zu) = NULL", start);
    if (!p)
        return;
    memcpy(p, ref, n);
    while (n > 1) {
        size_t m = halving ? n / 2 : (n > 1000 ? n - 1000 : 1);
        unsigned char *q = re(p, m);
        steps++;
        if (!q) {
            CHECK(0, "realloc(%zu -> %zu) = NULL", n, m);
            free(hide(p));
            return;
        }
        if (q == hide(p))
            same++;
        CHECK(aligned_to(q, c_align(m)), "realloc(%zu -> %zu) = %p, not aligned", n,
              m, (void *)q);
        if (memcmp(q, ref, m) != 0) {
            CHECK(0, "realloc(%zu -> %zu) (shrinking): contents changed", n, m);
            free(q);
            return;
        }
        p = q;
        n = m;
    }
    say("    shrink %zu B -> 1 B by %s: %lu reallocs, pointer unchanged %lu times "
        "(%.0f%%)\n",
        start, halving ? "halving" : "-1000 bytes", steps, same, 100.0 * same / steps);
    free_silent(p, "shrunk buffer");
}

/* Four buffers grown in turn by 3000 bytes to 1.5 MiB each: they keep
 * getting in each other's way. */
static void realloc_interleaved(void)
{
    unsigned char *b[4] = {0};
    size_t n = 0;

    while (n < 3 * MiB / 2) {
        size_t m = n + 3000;
        for (int i = 0; i < 4; i++) {
            unsigned char *q = re(b[i], m);
            if (!q) {
                CHECK(0, "interleaved realloc(%zu -> %zu) = NULL", n, m);
                return;
            }
            if (bad_byte(q, n, (unsigned)(40 + i)) != SIZE_MAX) {
                CHECK(0, "interleaved buffer %d: contents changed at %zu -> %zu", i,
                      n, m);
                return;
            }
            checks++;
            for (size_t j = n; j < m; j++)
                q[j] = pat(j, (unsigned)(40 + i));
            b[i] = q;
        }
        n += 3000;
    }
    for (int i = 0; i < 4; i++)
        free_silent(b[i], "interleaved buffer");
}

static void test_realloc(void)
{
    const size_t null_sizes[] = {0, 1, 9, 100, 16384, 100000, 3 * MiB};
    const size_t zero_sizes[] = {0, 1, 100, 16384, 100000, 3 * MiB};
    /* (from, to): every kind transition. */
    const size_t tr[][2] = {
        {10, 20},          {100, 1000},       {24, 16384},      {16384, 100},
        {1000, 10},        {100, 100},        {100, 104},       {1000, 100000},
        {16384, 16385},    {100000, 100},     {20000, 16384},   {20000, 200000},
        {500000, 30000},   {100000, 100004},  {500000, 5 * MiB}, {100000, 3 * MiB},
        {3 * MiB, 20 * MiB}, {20 * MiB, 3 * MiB}, {5 * MiB, 100000}, {3 * MiB, 50},
        {3 * MiB, 3 * MiB + 1}, {1, 3 * MiB},  {0, 1000},        {0, 2 * MiB},
    };

    begin("realloc");
    for (size_t i = 0; i < ARRAY_LEN(null_sizes); i++) {
        size_t n = null_sizes[i];
        unsigned char *p = realloc(hide(NULL), hsz(n));
        CHECK(p != NULL, "realloc(NULL, %zu) = NULL", n);
        if (!p)
            continue;
        CHECK(aligned_to(p, c_align(n)), "realloc(NULL, %zu) = %p, not aligned", n,
              (void *)p);
        CHECK(malloc_usable_size(p) >= n, "malloc_usable_size(realloc(NULL, %zu)) = %zu",
              n, malloc_usable_size(p));
        fill(p, n, 3);
        CHECK(bad_byte(p, n, 3) == SIZE_MAX, "realloc(NULL, %zu): pattern", n);
        free_silent(p, "realloc(NULL, n) block");
    }

    /* realloc(p, 0) frees p (glibc) and returns NULL: freeing p again is then
     * reported as a bad free. */
    for (size_t i = 0; i < ARRAY_LEN(zero_sizes); i++) {
        size_t n = zero_sizes[i];
        void *p = malloc(hsz(n)), *q;
        CHECK(p != NULL, "malloc(%zu) = NULL", n);
        if (!p)
            continue;
        fill(p, n, 4);
        q = realloc(p, hsz(0));
        CHECK(q == NULL, "realloc(malloc(%zu), 0) = %p, expected NULL", n, q);
        if (q) {
            free(q);
            continue;
        }
        free_reported(p, "block already freed by realloc(p, 0):");
    }

    for (size_t i = 0; i < ARRAY_LEN(tr); i++) {
        realloc_transition(tr[i][0], tr[i][1], 0);
        realloc_transition(tr[i][0], tr[i][1], 1);
    }
    {
        /* A block from an aligned allocator keeps its contents too. */
        unsigned char *p = memalign(4096, 5000), *q;
        CHECK(p != NULL, "memalign(4096, 5000) = NULL");
        if (p) {
            fill(p, 5000, 21);
            q = re(p, 300000);
            CHECK(q != NULL && bad_byte(q, 5000, 21) == SIZE_MAX,
                  "realloc(memalign(4096, 5000), 300000) lost the contents");
            free(q);
        }
    }

    ref = malloc(REF_SIZE);
    CHECK(ref != NULL, "malloc(64 MiB) for the reference pattern = NULL");
    if (ref) {
        fill(ref, REF_SIZE, 3);
        realloc_grow(1);
        realloc_grow(0);
        realloc_shrink(REF_SIZE, 1);
        realloc_shrink(2 * MiB + 777, 0);
        free(ref);
        ref = NULL;
    }
    realloc_interleaved();
    say("    all reallocs in this section: %lu, pointer unchanged %lu times (%.0f%%)\n",
        realloc_calls, realloc_same, 100.0 * realloc_same / realloc_calls);
    end();
}

/* ---- reallocarray ---------------------------------------------------------- */

static void test_reallocarray(void)
{
    const size_t kinds[] = {100, 100000, 3 * MiB};
    unsigned char *p;

    begin("reallocarray");
    p = reallocarray(NULL, hsz(10), hsz(10));
    CHECK(p != NULL, "reallocarray(NULL, 10, 10) = NULL");
    CHECK(p && malloc_usable_size(p) >= 100, "reallocarray(NULL, 10, 10): usable %zu",
          p ? malloc_usable_size(p) : 0);
    free(p);

    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        size_t n = kinds[k], at;
        const size_t over[][2] = {{SIZE_MAX / 2 + 1, 2},
                                  {2, SIZE_MAX / 2 + 1},
                                  {SIZE_MAX, SIZE_MAX},
                                  {SIZE_MAX / 3, 4}};
        unsigned char *q;

        p = malloc(n);
        CHECK(p != NULL, "malloc(%zu) = NULL", n);
        if (!p)
            continue;
        fill(p, n, 31);
        for (size_t i = 0; i < ARRAY_LEN(over); i++) {
            int e;
            errno = 0;
            q = reallocarray(hide(p), hsz(over[i][0]), hsz(over[i][1]));
            e = errno;
            CHECK(q == NULL, "reallocarray(p, %#zx, %#zx) overflows but gave %p",
                  over[i][0], over[i][1], (void *)q);
            CHECK(e == ENOMEM, "reallocarray(p, %#zx, %#zx): errno %d, expected ENOMEM",
                  over[i][0], over[i][1], e);
            if (q) {
                p = q;
                fill(p, n, 31);
            }
        }
        {
            /* No overflow, but no memory either. */
            int e;
            errno = 0;
            q = reallocarray(hide(p), hsz(SIZE_MAX - 4096), hsz(1));
            e = errno;
            CHECK(q == NULL && e == ENOMEM,
                  "reallocarray(p, SIZE_MAX - 4096, 1) = %p, errno %d", (void *)q, e);
            if (q) {
                p = q;
                fill(p, n, 31);
            }
        }
        p = hide(p);
        at = bad_byte(p, n, 31);
        CHECK(at == SIZE_MAX, "the %zu-byte block after failed reallocarray: byte "
                              "%zu changed",
              n, at);
        /* Still a live block: it can grow, and it is freed silently. */
        q = reallocarray(p, hsz(n), hsz(3));
        CHECK(q != NULL, "reallocarray(p, %zu, 3) = NULL", n);
        if (!q) {
            free(p);
            continue;
        }
        at = bad_byte(q, n, 31);
        CHECK(at == SIZE_MAX, "reallocarray(p, %zu, 3): byte %zu changed", n, at);
        free_silent(q, "reallocarray block");
    }
    end();
}

/* ---- free ---------------------------------------------------------------- */

static char global_block[256];

static void test_free(void)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int local[16] = {0};
    unsigned char *s, *l, *h, *m;
    const char *literal = "a string literal";
    void *mapped;

    begin("free");
    /* errno is kept, nothing is printed, for every kind. */
    free_silent(NULL, "NULL");
    free_silent(malloc(0), "malloc(0)");
    free_silent(malloc(24), "malloc(24)");
    free_silent(malloc(16384), "malloc(16384)");
    free_silent(malloc(100000), "malloc(100000)");
    free_silent(malloc(3 * MiB), "malloc(3 MiB)");
    free_silent(calloc(10, 10), "calloc(10, 10)");
    free_silent(calloc(1, 3 * MiB), "calloc(1, 3 MiB)");
    free_silent(memalign(64, 100), "memalign(64, 100)");
    free_silent(memalign(MiB, 100), "memalign(1 MiB, 100)");
    free_silent(aligned_alloc(4096, 4096), "aligned_alloc(4096, 4096)");
    free_silent(valloc(10), "valloc(10)");
    free_silent(pvalloc(10), "pvalloc(10)");
    free_silent(realloc(NULL, 500000), "realloc(NULL, 500000)");

    /* Invalid frees: one line each, errno kept, heap intact. */
    s = malloc(64);
    l = malloc(100000);
    h = malloc(3 * MiB);
    CHECK(s && l && h, "malloc(64/100000/3 MiB) = %p/%p/%p", (void *)s,
          (void *)l, (void *)h);
    if (!s || !l || !h)
        return;
    fill(s, 64, 51);
    fill(l, 100000, 52);
    fill(h, 3 * MiB, 53);
    memset(global_block, 0x5A, sizeof global_block);
    local[3] = 77;

    free_reported(&local[0], "a stack address");
    free_reported(&global_block[0], "a global array");
    free_reported(&global_block[16], "the middle of a global array");
    free_reported((void *)literal, "a string literal");
    mapped = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                  -1, 0);
    if (mapped != MAP_FAILED) {
        free_reported(mapped, "a page from mmap (not ours)");
        munmap(mapped, page);
    }
    free_reported(s + 8, "an interior pointer (small block + 8)");
    free_reported(s + 1, "an interior pointer (small block + 1)");
    free_reported(s + 32, "an interior pointer (small block + 32)");
    free_reported(l + 16, "an interior pointer (large block + 16)");
    free_reported(l + 4096, "an interior pointer (large block + 4096)");
    free_reported(h + 1, "an interior pointer (huge block + 1)");
    free_reported(h + 4096, "an interior pointer (huge block + 4096)");
    free_reported(h + 2 * MiB, "an interior pointer (huge block + 2 MiB)");

    CHECK(local[3] == 77, "the stack variable changed");
    for (size_t i = 0; i < sizeof global_block; i++)
        if (global_block[i] != 0x5A) {
            CHECK(0, "global_block[%zu] changed", i);
            break;
        }
    CHECK(strcmp(literal, "a string literal") == 0, "the literal changed");
    CHECK(bad_byte(s, 64, 51) == SIZE_MAX, "the small block changed");
    CHECK(bad_byte(l, 100000, 52) == SIZE_MAX, "the large block changed");
    CHECK(bad_byte(h, 3 * MiB, 53) == SIZE_MAX, "the huge block changed");

    /* Double frees. */
    m = malloc(200);
    free_silent(m, "malloc(200)");
    free_reported(m, "a small block freed twice:");
    m = malloc(200000);
    free_silent(m, "malloc(200000)");
    free_reported(m, "a large block freed twice:");
    m = malloc(5 * MiB);
    free_silent(m, "malloc(5 MiB)");
    free_reported(m, "a huge block freed twice:");

    /* The heap still works: new blocks of every kind do not overlap the
     * blocks the bad frees pointed into. */
    {
        static unsigned char *nb[600];
        size_t nsz[600];
        for (size_t i = 0; i < ARRAY_LEN(nb); i++) {
            nsz[i] = i % 100 == 99 ? 2 * MiB : i % 10 == 9 ? 60000 : 8 + i % 200;
            nb[i] = malloc(nsz[i]);
            CHECK(nb[i] != NULL, "malloc(%zu) after bad frees = NULL", nsz[i]);
            if (!nb[i])
                continue;
            CHECK(nb[i] + nsz[i] <= s || nb[i] >= s + 64, "new block %p overlaps "
                  "the small block %p", (void *)nb[i], (void *)s);
            CHECK(nb[i] + nsz[i] <= l || nb[i] >= l + 100000, "new block %p "
                  "overlaps the large block %p", (void *)nb[i], (void *)l);
            CHECK(nb[i] + nsz[i] <= h || nb[i] >= h + 3 * MiB, "new block %p "
                  "overlaps the huge block %p", (void *)nb[i], (void *)h);
            fill(nb[i], nsz[i], (unsigned)i);
        }
        for (size_t i = 0; i < ARRAY_LEN(nb); i++)
            if (nb[i]) {
                CHECK(bad_byte(nb[i], nsz[i], (unsigned)i) == SIZE_MAX,
                      "new block %zu changed", i);
                free_silent(nb[i], "new block");
            }
    }
    CHECK(bad_byte(s, 64, 51) == SIZE_MAX, "the small block changed");
    CHECK(bad_byte(l, 100000, 52) == SIZE_MAX, "the large block changed");
    CHECK(bad_byte(h, 3 * MiB, 53) == SIZE_MAX, "the huge block changed");
    free_silent(s, "small block");
    free_silent(l, "large block");
    free_silent(h, "huge block");

    /* free_sized and free_aligned_sized free: silently, keeping errno, and
     * the block is gone (freeing it again is reported). */
    {
        const size_t sz[] = {0, 24, 16384, 100000, 3 * MiB};
        for (size_t i = 0; i < ARRAY_LEN(sz); i++) {
            void *p = malloc(sz[i]);
            size_t len;
            int e;
            CHECK(p != NULL, "malloc(%zu) = NULL", sz[i]);
            if (!p)
                continue;
            cap_begin();
            errno = ERRNO_MARK;
            free_sized(p, sz[i]);
            e = errno;
            len = cap_end();
            CHECK(len == 0, "free_sized(p, %zu) printed: %s", sz[i], cap_buf);
            CHECK(e == ERRNO_MARK, "free_sized(p, %zu) changed errno to %d", sz[i], e);
            free_reported(p, "block already freed by free_sized:");
        }
        free_sized(NULL, 0);
    }
    {
        const size_t al[] = {16, 64, 4096, 65536, MiB};
        const size_t sz[] = {1, 100, 5000, 100000, 3 * MiB};
        for (size_t i = 0; i < ARRAY_LEN(al); i++)
            for (size_t k = 0; k < ARRAY_LEN(sz); k++) {
                void *p = aligned_alloc(al[i], sz[k]);
                size_t len;
                int e;
                CHECK(p != NULL, "aligned_alloc(%zu, %zu) = NULL", al[i], sz[k]);
                if (!p)
                    continue;
                cap_begin();
                errno = ERRNO_MARK;
                free_aligned_sized(p, al[i], sz[k]);
                e = errno;
                len = cap_end();
                CHECK(len == 0, "free_aligned_sized(p, %zu, %zu) printed: %s", al[i],
                      sz[k], cap_buf);
                CHECK(e == ERRNO_MARK, "free_aligned_sized changed errno to %d", e);
                if (k == 0 || k == ARRAY_LEN(sz) - 1)
                    free_reported(p, "block already freed by free_aligned_sized:");
            }
        free_aligned_sized(NULL, 64, 0);
    }
    end();
}

/* ---- malloc_usable_size ----------------------------------------------------- */

static void usable(void *p, size_t n, const char *call)
{
    CHECK(p != NULL, "%s(%zu) = NULL", call, n);
    if (!p)
        return;
    CHECK(malloc_usable_size(p) >= n, "malloc_usable_size(%s(%zu)) = %zu", call, n,
          malloc_usable_size(p));
    memset(p, 0xA5, malloc_usable_size(p));
    free(p);
}

/* The one report line for `what`, captured around the call, contains
 * `expect`. */
static void expect_report(size_t len, const char *what, const char *expect)
{
    show_capture(len);
    CHECK(one_report(len) && strstr(cap_buf, expect) != NULL,
          "%s: expected one line with \"%s\", got %zu bytes: %s", what, expect, len,
          cap_buf);
}

/* realloc and malloc_usable_size of bad pointers are reported as such, not
 * as a bad free. */
static void bad_pointers_name_the_call(void)
{
    static long global_word;
    void *p, *q;
    size_t len, u;
    int e;

    cap_begin();
    errno = 0;
    q = realloc(hide(&global_word), 100);
    e = errno;
    len = cap_end();
    CHECK(q == NULL && e == EINVAL, "realloc(&global) = %p, errno %d (expected NULL, EINVAL)", q, e);
    expect_report(len, "realloc(&global)", "invalid realloc (foreign pointer)");

    p = malloc(40);
    CHECK(p != NULL, "malloc(40) = NULL");
    if (!p)
        return;
    free(p);
    cap_begin();
    q = realloc(hide(p), 100);
    len = cap_end();
    CHECK(q == NULL, "realloc(freed block) = %p", q);
    expect_report(len, "realloc(freed block)", "realloc of a freed block");

    cap_begin();
    u = malloc_usable_size(hide(&global_word));
    len = cap_end();
    CHECK(u == 0, "malloc_usable_size(&global) = %zu", u);
    expect_report(len, "malloc_usable_size(&global)", "invalid malloc_usable_size (foreign pointer)");
}

static void test_usable(void)
{
    const size_t sz[] = {0,     1,      7,      8,      9,       15,      16,
                         17,    100,    1000,   4096,   16384,   16385,   20000,
                         65536, 100000, 1 * MiB, 2 * MiB, 3 * MiB, 10 * MiB};

    begin("usable");
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu",
          malloc_usable_size(NULL));
    for (size_t i = 0; i < ARRAY_LEN(sz); i++) {
        size_t n = sz[i];
        void *p;
        usable(malloc(n), n, "malloc");
        usable(calloc(1, n), n, "calloc");
        usable(realloc(NULL, n), n, "realloc");
        p = malloc(n + 100);
        usable(p ? realloc(p, n + 1) : NULL, n + 1, "realloc (shrink)");
        p = malloc(1);
        usable(p ? realloc(p, n + 1) : NULL, n + 1, "realloc (grow)");
        usable(memalign(256, n), n, "memalign");
        usable(aligned_alloc(64, n), n, "aligned_alloc");
        usable(valloc(n), n, "valloc");
        usable(pvalloc(n), n, "pvalloc");
        p = NULL;
        CHECK(posix_memalign(&p, 128, n) == 0, "posix_memalign(128, %zu) failed", n);
        usable(p, n, "posix_memalign");
        usable(reallocarray(NULL, n, 1), n, "reallocarray");
    }
    bad_pointers_name_the_call();
    end();
}

/* ---- glibc's own allocations ------------------------------------------------ */

static int all_entries(const struct dirent *d)
{
    (void)d;
    return 1;
}

static void ours(void *p, size_t min, const char *what)
{
    size_t u;
    CHECK(p != NULL, "%s = NULL", what);
    if (!p)
        return;
    cap_begin();
    u = malloc_usable_size(p);
    cap_end();
    CHECK(u >= min, "malloc_usable_size(%s) = %zu, expected >= %zu (not our block?)",
          what, u, min);
    free_silent(p, what);
}

static void test_libc(void)
{
    char *s = NULL, *line = NULL, *ms = NULL;
    size_t cap = 0, mslen = 0;
    struct dirent **list = NULL;
    FILE *f;
    int n;

    begin("libc");
    ours(strdup("hello, mallocator"), 18, "strdup");
    ours(strndup("hello, mallocator", 5), 6, "strndup");
    n = asprintf(&s, "%s-%d-%0500d", "asprintf", 42, 7);
    CHECK(n > 500, "asprintf returned %d", n);
    if (n > 0)
        ours(s, (size_t)n + 1, "asprintf");
    f = fopen("/proc/self/status", "r");
    CHECK(f != NULL, "fopen(/proc/self/status) failed");
    if (f) {
        ssize_t len = getline(&line, &cap, f);
        CHECK(len > 0, "getline returned %zd", len);
        ours(line, (size_t)(len > 0 ? len : 0) + 1, "getline buffer");
        fclose(f);
    }
    f = open_memstream(&ms, &mslen);
    CHECK(f != NULL, "open_memstream failed");
    if (f) {
        for (int i = 0; i < 2000; i++)
            fprintf(f, "line %d\n", i);
        fclose(f);
        ours(ms, mslen + 1, "open_memstream buffer");
    }
    ours(getcwd(NULL, 0), 2, "getcwd(NULL, 0)");
    ours(realpath("/proc/self/exe", NULL), 2, "realpath(..., NULL)");
    n = scandir("/", &list, all_entries, alphasort);
    CHECK(n > 0, "scandir(/) returned %d", n);
    for (int i = 0; i < n; i++)
        ours(list[i], 1, "scandir entry");
    if (n >= 0)
        ours(list, (size_t)n * sizeof *list, "scandir list");
    end();
}

/* Options that print on stderr or inject failures would break the checks
 * (stderr must stay empty, every allocation must succeed): if one is set,
 * run again without them. Other MALLOCATOR_* options (e.g. SECURE) stay. */
static void drop_output_options(char **argv)
{
    static const char *const names[] = {"MALLOCATOR_ON_ERROR", "MALLOCATOR_STATS",
                                        "MALLOCATOR_VERBOSE", "MALLOCATOR_FAIL_MMAP"};
    int found = 0;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (getenv(names[i])) {
            unsetenv(names[i]);
            found = 1;
        }
    if (found) {
        printf("(running again without MALLOCATOR_ON_ERROR/STATS/VERBOSE/FAIL_MMAP)\n");
        execv("/proc/self/exe", argv);
        printf("FAIL: %s: execv(/proc/self/exe): %s\n", argv[0], strerror(errno));
        exit(1);
    }
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    size_t len;
    char buf[4096];
    int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGALRM};

    setvbuf(stdout, NULL, _IONBF, 0);
    (void)argc;
    drop_output_options(argv);
    say("malloc_edge: %zu-bit, the malloc family of libmemory.so\n",
        sizeof(void *) * 8);

    /* All of stderr goes to a file; only the expected reports may appear. */
    whole_fd = tmp_fd();
    cap_fd = tmp_fd();
    saved_stderr = dup(2);
    if (saved_stderr < 0 || dup2(whole_fd, 2) < 0) {
        printf("FAIL: malloc_edge: redirecting stderr: %s\n", strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
        signal(sigs[i], on_fatal);
    alarm(TIMEOUT); /* a hang (e.g. a lock never released) becomes a failure */

    test_malloc();
    test_enomem();
    test_calloc();
    test_posix_memalign();
    test_aligned();
    test_realloc();
    test_reallocarray();
    test_free();
    test_usable();
    test_libc();

    fflush(stderr);
    dup2(saved_stderr, 2);
    len = read_all(whole_fd, buf, sizeof buf);
    begin("stderr");
    CHECK(len == 0, "unexpected output on stderr (%zu bytes):\n%s", len, buf);
    end();

    if (failures) {
        printf("FAIL: malloc_edge: %lu of %lu checks failed\n", failures, checks);
        return 1;
    }
    printf("PASS: malloc_edge (%lu checks, %zu-bit)\n", checks, sizeof(void *) * 8);
    return 0;
}
