/*
 * test2: bad deallocations are reported on stderr and otherwise ignored.
 *
 *  - a double free prints one line containing "double free";
 *  - freeing an interior pointer (p+8 of a live 64-byte block) prints one
 *    line containing "invalid" or "interior";
 *  - freeing a foreign pointer (a stack variable, a global) prints one line
 *    containing "invalid" or "foreign";
 * and after each the heap is intact: live blocks keep their contents, new
 * allocations are distinct and do not overlap, and ordinary deallocations
 * print nothing.
 *
 * stderr is captured by pointing file descriptor 2 at a temporary file
 * around each deallocate() call (dup/dup2), then read back; every captured
 * line is echoed to stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memory.h"

static int failures;

#define FAIL(...)                                                              \
    do {                                                                       \
        printf("FAIL: test2: " __VA_ARGS__);                                   \
        printf("\n");                                                          \
        failures++;                                                            \
    } while (0)

static char global_block[64];

/* ---- stderr capture --------------------------------------------------- */

static char captured[8192];
static volatile sig_atomic_t cap_saved = -1, cap_fd = -1;

/* If the library crashes or aborts while stderr is redirected, put stderr
 * back and show what it had written, then die of the same signal. */
static void on_fatal(int sig)
{
    static const char head[] = "\n  [crashed during deallocate; captured stderr:]\n  ";
    char buf[1024];
    ssize_t n;

    if (cap_saved >= 0) {
        dup2(cap_saved, 2);
        if (write(1, head, sizeof head - 1) < 0) { /* nothing to do */ }
        if (lseek(cap_fd, 0, SEEK_SET) == 0)
            while ((n = read(cap_fd, buf, sizeof buf)) > 0)
                if (write(1, buf, (size_t)n) < 0)
                    break;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Runs deallocate(p) with fd 2 redirected to a temporary file; returns the
 * number of bytes it wrote to stderr, text in `captured` (NUL-terminated). */
static size_t deallocate_captured(void *p)
{
    FILE *tmp;
    int saved, tfd;
    size_t len = 0;
    ssize_t n;

    fflush(stderr);
    tmp = tmpfile();
    if (tmp == NULL) {
        printf("FAIL: test2: tmpfile: %s\n", strerror(errno));
        exit(1);
    }
    tfd = fileno(tmp);
    saved = dup(2);
    if (saved < 0 || dup2(tfd, 2) < 0) {
        printf("FAIL: test2: dup/dup2: %s\n", strerror(errno));
        exit(1);
    }

    cap_fd = tfd;
    cap_saved = saved;
    deallocate(p);
    cap_saved = -1;

    fflush(stderr);
    if (dup2(saved, 2) < 0) {
        printf("FAIL: test2: restoring stderr: %s\n", strerror(errno));
        exit(1);
    }
    close(saved);

    if (lseek(tfd, 0, SEEK_SET) < 0) {
        printf("FAIL: test2: lseek: %s\n", strerror(errno));
        exit(1);
    }
    while (len < sizeof captured - 1 &&
           (n = read(tfd, captured + len, sizeof captured - 1 - len)) > 0)
        len += (size_t)n;
    captured[len] = '\0';
    fclose(tmp);
    return len;
}

/* deallocate(p) must print exactly one "mallocator: ..." line on stderr that
 * contains kw1 or kw2 (case-insensitive). */
static void expect_report(void *p, const char *what, const char *kw1,
                          const char *kw2)
{
    size_t len = deallocate_captured(p);
    const char *nl, *hex;

    if (len == 0) {
        FAIL("%s of %p: nothing printed on stderr", what, p);
        return;
    }
    printf("  stderr: %s%s", captured,
           captured[len - 1] == '\n' ? "" : "\n");

    nl = strchr(captured, '\n');
    if (nl == NULL || nl[1] != '\0')
        FAIL("%s: expected exactly one line on stderr ending in a newline, "
             "got %zu bytes", what, len);
    if (strncmp(captured, "mallocator: ", 12) != 0)
        FAIL("%s: message does not start with \"mallocator: \"", what);
    if (strcasestr(captured, kw1) == NULL &&
        (kw2 == NULL || strcasestr(captured, kw2) == NULL)) {
        if (kw2)
            FAIL("%s: message contains neither \"%s\" nor \"%s\"", what, kw1,
                 kw2);
        else
            FAIL("%s: message does not contain \"%s\"", what, kw1);
    }

    /* Informational: the header documents "... of 0x<addr> ...". */
    hex = strstr(captured, "0x");
    if (hex != NULL && strtoull(hex, NULL, 16) == (unsigned long long)(uintptr_t)p)
        printf("  (message names the address passed, %p)\n", p);
    else
        printf("  note: message does not name the address passed (%p)\n", p);
}

/* deallocate(p) must print nothing. */
static void expect_silent(void *p, const char *what)
{
    size_t len = deallocate_captured(p);

    if (len != 0)
        FAIL("%s: deallocate(%p) printed on stderr: %s", what, p, captured);
}

/* ---- block contents ---------------------------------------------------- */

static void fill(void *p, size_t n, unsigned char seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)(seed + i * 7);
}

static int check(const void *p, size_t n, unsigned char seed, const char *what)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        if (c[i] != (unsigned char)(seed + i * 7)) {
            FAIL("%s: byte %zu of %p is 0x%02x, expected 0x%02x", what, i, p,
                 c[i], (unsigned char)(seed + i * 7));
            return 0;
        }
    }
    return 1;
}

static int check_byte(const void *p, size_t n, unsigned char v, const char *what)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        if (c[i] != v) {
            FAIL("%s: byte %zu of %p is 0x%02x, expected 0x%02x", what, i, p,
                 c[i], v);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    unsigned char *p, *a, *b, *q, *r;
    int local = 42;
    uintptr_t ua, ub;

    (void)argc;
    setvbuf(stdout, NULL, _IONBF, 0);

    /* MALLOCATOR_ON_ERROR=abort would turn the deliberate errors below into
     * aborts; the library may read it at load time, so start over without it. */
    if (getenv("MALLOCATOR_ON_ERROR") != NULL) {
        unsetenv("MALLOCATOR_ON_ERROR");
        execv("/proc/self/exe", argv);
        printf("FAIL: test2: MALLOCATOR_ON_ERROR is set and re-exec failed: %s\n",
               strerror(errno));
        return 1;
    }

    signal(SIGABRT, on_fatal);
    signal(SIGSEGV, on_fatal);
    signal(SIGBUS, on_fatal);
    signal(SIGILL, on_fatal);
    signal(SIGTRAP, on_fatal);

    /* 1. double free ----------------------------------------------------- */
    p = allocate(32);
    if (p == NULL) {
        printf("FAIL: test2: allocate(32) returned NULL\n");
        return 1;
    }
    memset(p, 0xA5, 32);
    check_byte(p, 32, 0xA5, "first block");
    printf("p = allocate(32) = %p, filled with 0xA5\n", (void *)p);

    expect_silent(p, "first deallocate(p)");
    printf("deallocate(p) #1: no message (ok)\n");
    printf("deallocate(p) #2 (double free):\n");
    expect_report(p, "double free", "double free", NULL);

    /* The heap goes on: two fresh blocks, distinct, not overlapping. */
    a = allocate(32);
    b = allocate(32);
    printf("after double free: a = allocate(32) = %p, b = allocate(32) = %p\n",
           (void *)a, (void *)b);
    if (a == NULL || b == NULL) {
        printf("FAIL: test2: allocate(32) after double free returned NULL\n");
        return 1;
    }
    ua = (uintptr_t)a;
    ub = (uintptr_t)b;
    if (a == b)
        FAIL("after double free, two allocations returned the same pointer %p "
             "(the block is on the free list twice)", (void *)a);
    else if ((ua > ub ? ua - ub : ub - ua) < 32)
        FAIL("blocks %p and %p overlap (distance %lu < 32)", (void *)a,
             (void *)b, (unsigned long)(ua > ub ? ua - ub : ub - ua));
    memset(a, 0x11, 32);
    memset(b, 0x22, 32);
    check_byte(a, 32, 0x11, "block a");
    check_byte(b, 32, 0x22, "block b");

    /* 2. interior pointer ------------------------------------------------ */
    q = allocate(64);
    if (q == NULL) {
        printf("FAIL: test2: allocate(64) returned NULL\n");
        return 1;
    }
    fill(q, 64, 0x3C);
    printf("q = allocate(64) = %p; deallocate(q + 8) (interior pointer):\n",
           (void *)q);
    expect_report(q + 8, "interior pointer", "invalid", "interior");
    check(q, 64, 0x3C, "live block q after interior-pointer deallocate");

    /* 3. foreign pointers ------------------------------------------------ */
    printf("deallocate(&local) (stack variable, foreign pointer):\n");
    expect_report(&local, "stack pointer", "invalid", "foreign");
    if (local != 42)
        FAIL("stack variable changed to %d by deallocate", local);

    fill(global_block, sizeof global_block, 0x77);
    printf("deallocate(global_block) (global, foreign pointer):\n");
    expect_report(global_block, "global pointer", "invalid", "foreign");
    check(global_block, sizeof global_block, 0x77, "global block");

    /* 4. everything still intact; ordinary deallocations are silent ------- */
    check(q, 64, 0x3C, "live block q after foreign deallocates");
    check_byte(a, 32, 0x11, "block a at the end");
    check_byte(b, 32, 0x22, "block b at the end");

    /* q is still a live block: a new 64-byte block must not overlap it. */
    r = allocate(64);
    if (r == NULL) {
        FAIL("allocate(64) after the error reports returned NULL");
    } else {
        uintptr_t uq = (uintptr_t)q, ur = (uintptr_t)r;
        if ((uq > ur ? uq - ur : ur - uq) < 64)
            FAIL("new block %p overlaps live block %p", (void *)r, (void *)q);
        fill(r, 64, 0x90);
        check(q, 64, 0x3C, "live block q after a neighbour was written");
        check(r, 64, 0x90, "block r");
        expect_silent(r, "deallocate(r)");
    }

    expect_silent(q, "deallocate(q) of the live block");
    expect_silent(a, "deallocate(a)");
    expect_silent(b, "deallocate(b)");
    printf("deallocate(q), deallocate(a), deallocate(b): no messages (ok)\n");

    if (failures) {
        printf("FAIL: test2: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: test2 (double free, interior and foreign pointers reported "
           "and ignored; heap intact)\n");
    return 0;
}
