/*
 * test_secure: MALLOCATOR_SECURE=1 (guard pages after segment headers,
 * shuffled fresh blocks, and in any mode the detection of writes into freed
 * blocks).
 *
 * The program re-executes itself with MALLOCATOR_SECURE=1 if it is not set
 * (the library reads its options when it is loaded). Then:
 *
 *  (b) guard pages, first, while the process has allocated nothing: the first
 *      allocate(16) opens a small segment (SEG = 4 MiB on 64-bit, 2 MiB on
 *      32-bit, aligned) whose first page with blocks (page 0 of 64 KiB on
 *      i686; page 1 on x86_64, where the header fills page 0) serves 16-byte
 *      blocks. 16-byte blocks are allocated until one lands outside it;
 *      the lowest address seen is that page's first block, which must be
 *      4096-aligned, and the 4 KiB below it is the guard page. A forked child
 *      that reads a byte of it must die of SIGSEGV; children that read the
 *      byte below the guard (the header) and the first block must not.
 *      The same for the first large block (allocate(20000)): the page below
 *      it must fault, the header page below that must not.
 *  (a) shuffled blocks: 64 blocks of 48 bytes; if every neighbour pair is 48
 *      bytes apart (a[i+1] - a[i] == 48), the order was not shuffled: FAIL.
 *      The blocks must not overlap.
 *  (c) use after free: in forked children with stderr on a pipe,
 *      p = allocate(64); deallocate(p); then a write into p (16 bytes of
 *      0x41 over the first two words; or only the first word, the free-list
 *      link: the only word of a free block the allocator keeps); then
 *      allocate(64) up to 10 times: the child must die of SIGABRT and its
 *      stderr must contain "heap corruption".
 *  (d) the library still works: 100,000 random allocate/deallocate (1 byte ..
 *      200 KB, up to 2000 live) with content checks, no overlap at the end.
 *
 * For comparison, it also runs itself once without MALLOCATOR_SECURE
 * ("control") and prints what (a) and (b) see there: consecutive 48-byte
 * blocks and a readable page below page 0's first block (informational).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memory.h"

#define SEG (sizeof(void *) == 8 ? (uintptr_t)4 << 20 : (uintptr_t)2 << 20)
#define PAGE0 ((uintptr_t)64 << 10)
#define OS_PAGE ((uintptr_t)4096)

static int failures;

#define FAIL(...)                                                              \
    do {                                                                       \
        printf("FAIL: test_secure: " __VA_ARGS__);                             \
        printf("\n");                                                          \
        failures++;                                                            \
    } while (0)

/* ---- forked probes --------------------------------------------------------- */

/* Reads one byte at `addr` in a forked child; returns the signal that killed
 * it, or 0 if the read worked. */
static int probe_read(uintptr_t addr)
{
    pid_t pid = fork();
    int status;

    if (pid < 0) {
        printf("FAIL: test_secure: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        (void)*(volatile unsigned char *)addr;
        _exit(0);
    }
    if (waitpid(pid, &status, 0) != pid) {
        printf("FAIL: test_secure: waitpid: %s\n", strerror(errno));
        exit(1);
    }
    if (WIFSIGNALED(status))
        return WTERMSIG(status);
    return WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void expect_fault(uintptr_t addr, const char *what)
{
    int sig = probe_read(addr);

    if (sig == SIGSEGV)
        printf("  read of %s at %p: SIGSEGV (ok)\n", what, (void *)addr);
    else if (sig == 0)
        FAIL("read of %s at %p did not fault", what, (void *)addr);
    else
        FAIL("read of %s at %p: child ended with signal/status %d, not SIGSEGV", what, (void *)addr, sig);
}

static void expect_readable(uintptr_t addr, const char *what)
{
    int sig = probe_read(addr);

    if (sig == 0)
        printf("  read of %s at %p: readable (ok)\n", what, (void *)addr);
    else
        FAIL("read of %s at %p faulted (signal %d)", what, (void *)addr, sig);
}

/* ---- (b) guard pages ---------------------------------------------------------- */

/* Allocates 16-byte blocks until one lands outside the page of the first
 * (the segment's first page with blocks: page 0 on i686, page 1 on x86_64,
 * where the header fills page 0); returns the lowest block address in it (0
 * on failure). The blocks are freed again. Fills *count with the number in
 * that page and *page_end with its end. */
static uintptr_t page0_first_block(uintptr_t *seg_out, int *count, uintptr_t *page_end)
{
    static void *blocks[8192];
    uintptr_t seg, lowest = UINTPTR_MAX;
    int n = 0, in0 = 0;

    blocks[n] = allocate(16);
    if (blocks[n] == NULL) {
        FAIL("allocate(16) returned NULL");
        return 0;
    }
    seg = (uintptr_t)blocks[0] & ~(SEG - 1);
    *seg_out = seg;
    *page_end = seg + ((uintptr_t)blocks[0] - seg) / PAGE0 * PAGE0 + PAGE0;
    for (;;) {
        uintptr_t a = (uintptr_t)blocks[n];
        if (a >= *page_end || a + PAGE0 < *page_end)
            break;
        in0++;
        if (a < lowest)
            lowest = a;
        if (++n == (int)(sizeof blocks / sizeof blocks[0])) {
            FAIL("more than %d 16-byte blocks in page 0", n);
            break;
        }
        blocks[n] = allocate(16);
        if (blocks[n] == NULL) {
            FAIL("allocate(16) returned NULL");
            break;
        }
    }
    for (int i = 0; i <= n && i < (int)(sizeof blocks / sizeof blocks[0]); i++)
        if (blocks[i] != NULL)
            deallocate(blocks[i]);
    *count = in0;
    return in0 ? lowest : 0;
}

static void test_guard_pages(void)
{
    uintptr_t seg = 0, first, guard, lseg, lguard, page_end = 0;
    int count = 0;
    unsigned char *large;

    printf("(b) guard pages\n");
    first = page0_first_block(&seg, &count, &page_end);
    if (first == 0 || page_end - seg > 2 * PAGE0) {
        FAIL("the first allocate(16) (segment %p) is not in the first page with blocks: taken before main?",
             (void *)seg);
        return;
    }
    printf("  small segment %p: %d blocks of 16 bytes in page 0, the first at %p (segment + %lu)\n",
           (void *)seg, count, (void *)first, (unsigned long)(first - seg));
    if ((first - seg) % OS_PAGE != 0) {
        FAIL("page 0's first block %p is not 4096-aligned in its segment (secure mode puts it right after a "
             "guard page)",
             (void *)first);
        return;
    }
    if (first - seg < 2 * OS_PAGE) {
        FAIL("page 0's first block %p is less than 8 KiB into its segment: no room for header + guard page",
             (void *)first);
        return;
    }
    if ((uintptr_t)count != (page_end - first) / 16)
        FAIL("%d blocks seen in the first page, expected %lu", count, (unsigned long)((page_end - first) / 16));
    guard = first - OS_PAGE;
    expect_fault(guard, "the guard page (first byte)");
    expect_fault(guard + OS_PAGE - 1, "the guard page (last byte)");
    expect_readable(guard - 1, "the segment header's last byte");
    expect_readable(first, "page 0's first block");

    /* Large segment: the first large block starts right after the guard. */
    large = allocate(20000);
    if (large == NULL) {
        FAIL("allocate(20000) returned NULL");
        return;
    }
    memset(large, 0x3C, 20000);
    lseg = (uintptr_t)large & ~(SEG - 1);
    lguard = (uintptr_t)large - OS_PAGE;
    printf("  large segment %p: first large block at %p (segment + %lu)\n", (void *)lseg, (void *)large,
           (unsigned long)((uintptr_t)large - lseg));
    /* The large header holds an entry per page of the 32 / 16 MiB segment:
     * 192 KiB on x86_64, 64 KiB on i686. */
    if ((uintptr_t)large - lseg < 2 * OS_PAGE || (uintptr_t)large - lseg > 256 * 1024) {
        FAIL("the first large block %p is not within 256 KiB after its segment's header", (void *)large);
    } else {
        expect_fault(lguard, "the large segment's guard page");
        expect_readable(lguard - 1, "the large segment header's last byte");
    }
    deallocate(large);
}

/* ---- (a) shuffled blocks ------------------------------------------------------- */

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Returns how many of the 63 neighbour pairs of 64 fresh 48-byte blocks are
 * 48 bytes apart (-1 on NULL or overlap). */
static int consecutive_48(void)
{
    void *a[64];
    uintptr_t s[64];
    int consecutive = 0;

    for (int i = 0; i < 64; i++) {
        a[i] = allocate(48);
        if (a[i] == NULL)
            return -1;
        memset(a[i], i, 48);
        s[i] = (uintptr_t)a[i];
    }
    for (int i = 0; i + 1 < 64; i++)
        consecutive += (uintptr_t)a[i + 1] - (uintptr_t)a[i] == 48;
    qsort(s, 64, sizeof s[0], cmp_ptr);
    for (int i = 0; i + 1 < 64; i++)
        if (s[i] + 48 > s[i + 1])
            consecutive = -1;
    for (int i = 0; i < 64; i++) {
        for (int j = 0; j < 48; j++)
            if (((unsigned char *)a[i])[j] != i)
                consecutive = -1;
        deallocate(a[i]);
    }
    return consecutive;
}

static void test_shuffle(void)
{
    int c;

    printf("(a) shuffled blocks\n");
    c = consecutive_48();
    if (c < 0) {
        FAIL("64 blocks of 48 bytes: NULL, overlap or changed contents");
        return;
    }
    printf("  64 blocks of 48 bytes: %d of 63 neighbours are 48 bytes apart\n", c);
    if (c == 63)
        FAIL("all 64 blocks of 48 bytes are consecutive: fresh blocks are not shuffled");
}

/* ---- (c) use after free --------------------------------------------------------- */

/* In a child: frees a 64-byte block, writes `len` bytes of 0x41 at offset `off`
 * into it, then allocates 64 bytes up to 10 times. Expects SIGABRT and
 * "heap corruption" on stderr. */
static void expect_uaf_abort(size_t off, size_t len, const char *what)
{
    int fds[2], status;
    pid_t pid;
    char err[4096];
    size_t n = 0;
    ssize_t r;

    if (pipe(fds) != 0) {
        printf("FAIL: test_secure: pipe: %s\n", strerror(errno));
        exit(1);
    }
    pid = fork();
    if (pid < 0) {
        printf("FAIL: test_secure: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        volatile unsigned char *p;

        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        signal(SIGABRT, SIG_DFL);
        p = allocate(64);
        if (p == NULL)
            _exit(3);
        memset((void *)p, 0x11, 64);
        deallocate((void *)p);
        for (size_t i = 0; i < len; i++)
            p[off + i] = 0x41; /* the use after free */
        for (int i = 0; i < 10; i++) {
            void *q = allocate(64);
            if (q != NULL)
                memset(q, 0x22, 64);
        }
        _exit(0); /* not detected */
    }
    close(fds[1]);
    while (n < sizeof err - 1 && (r = read(fds[0], err + n, sizeof err - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = '\0';
    close(fds[0]);
    waitpid(pid, &status, 0);
    if (n && err[n - 1] == '\n')
        err[n - 1] = '\0';
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(err, "heap corruption") != NULL) {
        printf("  %s: SIGABRT, stderr: %s (ok)\n", what, err);
        return;
    }
    if (WIFSIGNALED(status))
        FAIL("%s: child killed by signal %d (%s), stderr: \"%s\"", what, WTERMSIG(status),
             strsignal(WTERMSIG(status)), err);
    else
        FAIL("%s: child exited with status %d (not aborted: the write was not detected), stderr: \"%s\"", what,
             WEXITSTATUS(status), err);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(err, "heap corruption") == NULL)
        FAIL("%s: aborted, but stderr does not say \"heap corruption\"", what);
}

static void test_use_after_free(void)
{
    printf("(c) writes into a freed block\n");
    expect_uaf_abort(0, 16, "16 bytes of 0x41 over the first two words");
    expect_uaf_abort(0, sizeof(void *), "the free-list link word only");
}

/* ---- (d) random workload ---------------------------------------------------------- */

static uint32_t rng = 2463534242u;
static uint32_t xorshift32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

#define SLOTS 2000
struct slot {
    unsigned char *p;
    size_t size;
    unsigned char tag;
};
static struct slot slots[SLOTS];

static int check_slot(const struct slot *s)
{
    for (size_t i = 0; i < s->size; i++)
        if (s->p[i] != (unsigned char)(s->tag + i * 7)) {
            FAIL("block %p (%zu bytes): byte %zu is 0x%02x, expected 0x%02x", (void *)s->p, s->size, i, s->p[i],
                 (unsigned char)(s->tag + i * 7));
            return 0;
        }
    return 1;
}

static int cmp_slot(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct slot *)a)->p, y = (uintptr_t)((const struct slot *)b)->p;
    return x < y ? -1 : x > y;
}

static void test_workload(void)
{
    unsigned long ops = 0, bytes = 0, bad = 0, overlaps = 0;

    printf("(d) random workload\n");
    for (int it = 0; it < 100000; it++) {
        struct slot *s = &slots[xorshift32() % SLOTS];
        uint32_t r = xorshift32() % 100;
        size_t size = r < 90 ? 1 + xorshift32() % 1024 : r < 99 ? 1025 + xorshift32() % 15360
                                                                : 16385 + xorshift32() % 183616;

        if (s->p != NULL) {
            if (!check_slot(s) && ++bad > 5)
                break;
            deallocate(s->p);
        }
        s->p = allocate((unsigned)size);
        ops++;
        if (s->p == NULL) {
            FAIL("allocate(%zu) returned NULL", size);
            break;
        }
        s->size = size;
        s->tag = (unsigned char)xorshift32();
        for (size_t i = 0; i < size; i++)
            s->p[i] = (unsigned char)(s->tag + i * 7);
        bytes += size;
    }
    qsort(slots, SLOTS, sizeof slots[0], cmp_slot);
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p == NULL)
            continue;
        if (!check_slot(&slots[i]))
            bad++;
        if (i + 1 < SLOTS && (uintptr_t)slots[i].p + slots[i].size > (uintptr_t)slots[i + 1].p) {
            overlaps++;
            FAIL("block %p (%zu bytes) overlaps block %p", (void *)slots[i].p, slots[i].size,
                 (void *)slots[i + 1].p);
        }
    }
    for (int i = 0; i < SLOTS; i++)
        deallocate(slots[i].p);
    printf("  %lu allocations (%lu MiB), corrupt blocks: %lu, overlaps: %lu\n", ops, bytes >> 20, bad, overlaps);
}

/* ---- control: the same observations without secure mode ------------------------- */

static int control(void)
{
    uintptr_t seg = 0, first, page_end = 0;
    int count = 0, c;

    first = page0_first_block(&seg, &count, &page_end);
    c = consecutive_48();
    printf("control: consecutive=%d first_offset=%lu", c, first ? (unsigned long)(first - seg) : 0ul);
    if (first != 0 && first - seg >= OS_PAGE)
        printf(" below_first=%s", probe_read(first - OS_PAGE) == 0 ? "readable" : "faults");
    printf("\n");
    return 0;
}

static void run_control(char **argv)
{
    int fds[2], status;
    pid_t pid;
    char out[512];
    size_t n = 0;
    ssize_t r;

    if (pipe(fds) != 0)
        return;
    pid = fork();
    if (pid == 0) {
        char *args[] = {argv[0], (char *)"control", NULL};
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        unsetenv("MALLOCATOR_SECURE");
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fds[1]);
    while (n < sizeof out - 1 && (r = read(fds[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    if (pid > 0)
        waitpid(pid, &status, 0);
    printf("without MALLOCATOR_SECURE (informational): %s", n ? out : "(no output)\n");
}

int main(int argc, char **argv)
{
    const char *secure = getenv("MALLOCATOR_SECURE");

    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "control") == 0)
        return control();

    /* The library reads its options when it is loaded: start over with
     * secure mode on (and without fault injection or abort-on-error). */
    if (secure == NULL || strcmp(secure, "1") != 0 || getenv("MALLOCATOR_FAIL_MMAP") != NULL) {
        setenv("MALLOCATOR_SECURE", "1", 1);
        unsetenv("MALLOCATOR_FAIL_MMAP");
        execv("/proc/self/exe", argv);
        printf("FAIL: test_secure: re-exec with MALLOCATOR_SECURE=1 failed: %s\n", strerror(errno));
        return 1;
    }
    printf("test_secure: MALLOCATOR_SECURE=1, %d-bit, segments of %lu MiB\n", (int)(8 * sizeof(void *)),
           (unsigned long)(SEG >> 20));

    test_guard_pages(); /* first: it needs the process's first small segment */
    test_shuffle();
    test_use_after_free();
    test_workload();
    run_control(argv);

    if (failures) {
        printf("test_secure: %d failure(s)\n", failures);
        return 1;
    }
    printf("PASS: test_secure (guard pages fault, fresh blocks shuffled, writes into freed blocks abort with "
           "\"heap corruption\", 100,000 random allocations intact)\n");
    return 0;
}
