/*
 * test_oom: out of memory for every size kind, and recovery.
 *
 * On 64-bit the program first lowers RLIMIT_AS to its current VmSize (from
 * /proc/self/status) + 256 MiB; on 32-bit it sets no limit and exhausts the
 * real address space (4 GiB, less what the program already uses).
 *
 * One fill:
 *   - huge blocks of 16 MiB until allocate() returns NULL,
 *   - then large blocks of 200,000 bytes until NULL,
 *   - then small blocks of 64 bytes until NULL,
 * nothing freed on the way. Every NULL must come with errno == ENOMEM. Huge
 * and large blocks are kept in static arrays, and get a tag word written at
 * their start and end; small blocks are chained through themselves (a next
 * pointer and a tag at the start of each block).
 *
 * allocate(0xFFFFFFFF) and allocate(0xFFFFF000) must return NULL with
 * errno == ENOMEM at any time: they are tried at start, after each stage of
 * each fill and after each release.
 *
 * After the first fill every block is checked (tags) and deallocated, and the
 * whole fill is made a second time: it must get at least 90% of the bytes of
 * the first (the allocator gave its memory back and can use it again). Then
 * everything is checked and deallocated again and allocate(64) must work.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "memory.h"

#define MiB (1024ULL * 1024)
#define HUGE_SZ (16u * 1024 * 1024)
#define LARGE_SZ 200000u
#define SMALL_SZ 64u
#define HUGE_MAX 8192
#define LARGE_MAX_N 65536
#define TIME_LIMIT_S 240.0

struct fill {
    unsigned long nhuge, nlarge, nsmall;
    unsigned long long bytes;
};

struct small {
    struct small *next;
    uint32_t tag;
};

static void *huge_p[HUGE_MAX];
static void *large_p[LARGE_MAX_N];
static struct small *small_head;
static int failures;

#define FAIL(...)                                                              \
    do {                                                                       \
        printf("FAIL: test_oom: " __VA_ARGS__);                                \
        printf("\n");                                                          \
        failures++;                                                            \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Value in kB of a "Key:   N kB" line of /proc/self/status, or -1. Uses
 * open/read and a stack buffer only. */
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
    if (line == NULL)
        return -1;
    return strtol(line + strlen(key), NULL, 10);
}

static void print_vm(const char *when)
{
    printf("  %s: VmSize %ld kB, VmRSS %ld kB\n", when, status_kb("VmSize:"),
           status_kb("VmRSS:"));
}

/* Requests that can never be met must fail cleanly. */
static void check_impossible(const char *when)
{
    static const unsigned int sizes[] = {0xFFFFFFFFu, 0xFFFFF000u};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        void *p;
        errno = 0;
        p = allocate(sizes[k]);
        if (p != NULL) {
            FAIL("%s: allocate(0x%X) returned %p, expected NULL", when,
                 sizes[k], p);
            deallocate(p);
        } else if (errno != ENOMEM) {
            FAIL("%s: allocate(0x%X) returned NULL with errno %d (%s), "
                 "expected ENOMEM", when, sizes[k], errno, strerror(errno));
        }
    }
}

static uint32_t tag_of(unsigned long i, unsigned int kind)
{
    return (uint32_t)(i * 2654435761u) ^ (kind << 28) ^ 0x5A5A5A5Au;
}

static void put_tags(void *p, unsigned int size, uint32_t tag)
{
    memcpy(p, &tag, sizeof tag);
    memcpy((char *)p + size - sizeof tag, &tag, sizeof tag);
}

static int tags_ok(const void *p, unsigned int size, uint32_t tag)
{
    uint32_t a, b;
    memcpy(&a, p, sizeof a);
    memcpy(&b, (const char *)p + size - sizeof b, sizeof b);
    return a == tag && b == tag;
}

/* Expects allocate() to have just returned NULL. */
static void check_enomem(int err, const char *what, unsigned long count)
{
    if (err != ENOMEM)
        FAIL("%s: NULL after %lu blocks with errno %d (%s), expected ENOMEM",
             what, count, err, strerror(err));
}

static void do_fill(struct fill *f, const char *name)
{
    double t0 = now();
    void *p;

    memset(f, 0, sizeof *f);
    printf("%s:\n", name);

    for (;;) {
        errno = 0;
        p = allocate(HUGE_SZ);
        if (p == NULL) {
            check_enomem(errno, "huge fill", f->nhuge);
            break;
        }
        if (f->nhuge == HUGE_MAX) {
            deallocate(p);
            FAIL("huge fill: no NULL after %d blocks of %u bytes", HUGE_MAX,
                 HUGE_SZ);
            break;
        }
        put_tags(p, HUGE_SZ, tag_of(f->nhuge, 1));
        huge_p[f->nhuge++] = p;
        f->bytes += HUGE_SZ;
    }
    printf("  huge  (%8u bytes): %8lu blocks until NULL\n", HUGE_SZ, f->nhuge);
    check_impossible("after the huge fill");

    for (;;) {
        errno = 0;
        p = allocate(LARGE_SZ);
        if (p == NULL) {
            check_enomem(errno, "large fill", f->nlarge);
            break;
        }
        if (f->nlarge == LARGE_MAX_N) {
            deallocate(p);
            FAIL("large fill: no NULL after %d blocks of %u bytes",
                 LARGE_MAX_N, LARGE_SZ);
            break;
        }
        put_tags(p, LARGE_SZ, tag_of(f->nlarge, 2));
        large_p[f->nlarge++] = p;
        f->bytes += LARGE_SZ;
    }
    printf("  large (%8u bytes): %8lu blocks until NULL\n", LARGE_SZ,
           f->nlarge);
    check_impossible("after the large fill");

    small_head = NULL;
    for (;;) {
        struct small *s;
        errno = 0;
        s = allocate(SMALL_SZ);
        if (s == NULL) {
            check_enomem(errno, "small fill", f->nsmall);
            break;
        }
        s->next = small_head;
        s->tag = tag_of(f->nsmall, 3);
        small_head = s;
        f->nsmall++;
        f->bytes += SMALL_SZ;
        if ((f->nsmall & 0xFFFF) == 0 && now() - t0 > TIME_LIMIT_S) {
            FAIL("small fill: no NULL after %.0f s (%lu blocks)", TIME_LIMIT_S,
                 f->nsmall);
            break;
        }
    }
    printf("  small (%8u bytes): %8lu blocks until NULL\n", SMALL_SZ,
           f->nsmall);
    check_impossible("after the small fill");

    printf("  total %llu bytes (%.1f MiB) in %.2f s\n", f->bytes,
           (double)f->bytes / (double)MiB, now() - t0);
    print_vm("at exhaustion");
}

static void free_all(const struct fill *f, const char *name)
{
    unsigned long bad = 0, n = f->nsmall;
    struct small *s = small_head;

    while (s != NULL) {
        struct small *next = s->next;
        n--;
        if (s->tag != tag_of(n, 3) && bad++ < 3)
            FAIL("%s: small block %lu (%p) has tag 0x%08x, expected 0x%08x",
                 name, n, (void *)s, s->tag, tag_of(n, 3));
        deallocate(s);
        s = next;
    }
    if (n != 0)
        FAIL("%s: the small chain ended %lu blocks early", name, n);
    small_head = NULL;
    for (unsigned long i = 0; i < f->nlarge; i++) {
        if (!tags_ok(large_p[i], LARGE_SZ, tag_of(i, 2)) && bad++ < 3)
            FAIL("%s: large block %lu (%p) lost its tags", name, i, large_p[i]);
        deallocate(large_p[i]);
    }
    for (unsigned long i = 0; i < f->nhuge; i++) {
        if (!tags_ok(huge_p[i], HUGE_SZ, tag_of(i, 1)) && bad++ < 3)
            FAIL("%s: huge block %lu (%p) lost its tags", name, i, huge_p[i]);
        deallocate(huge_p[i]);
    }
    if (bad)
        FAIL("%s: %lu block(s) with wrong tags", name, bad);
    printf("%s: checked and deallocated %lu + %lu + %lu blocks\n", name,
           f->nhuge, f->nlarge, f->nsmall);
    print_vm("after deallocating");
    check_impossible(name);
}

int main(void)
{
    struct rlimit rl;
    struct fill first, second;
    void *p;

    setvbuf(stdout, NULL, _IONBF, 0);

    if (sizeof(void *) == 8) {
        long vmsize = status_kb("VmSize:");
        unsigned long long want;
        if (vmsize <= 0) {
            printf("FAIL: test_oom: cannot read VmSize from /proc/self/status\n");
            return 1;
        }
        want = (unsigned long long)vmsize * 1024 + 256 * MiB;
        if (getrlimit(RLIMIT_AS, &rl) != 0) {
            printf("FAIL: test_oom: getrlimit(RLIMIT_AS): %s\n", strerror(errno));
            return 1;
        }
        if (rl.rlim_cur != RLIM_INFINITY && (unsigned long long)rl.rlim_cur <= want) {
            printf("64-bit: RLIMIT_AS already %llu bytes; kept\n",
                   (unsigned long long)rl.rlim_cur);
        } else {
            rl.rlim_cur = (rlim_t)want;
            if (setrlimit(RLIMIT_AS, &rl) != 0) {
                printf("FAIL: test_oom: setrlimit(RLIMIT_AS, %llu): %s\n", want,
                       strerror(errno));
                return 1;
            }
            printf("64-bit: VmSize %ld kB; RLIMIT_AS set to VmSize + 256 MiB "
                   "= %llu bytes\n", vmsize, want);
        }
    } else {
        printf("32-bit: no limit set; exhausting the address space\n");
    }
    print_vm("at start");
    check_impossible("at start");

    do_fill(&first, "fill 1");
    free_all(&first, "release 1");

    p = allocate(64);
    if (p == NULL)
        FAIL("allocate(64) after release 1 returned NULL (errno %d)", errno);
    else
        deallocate(p);

    do_fill(&second, "fill 2");
    free_all(&second, "release 2");

    printf("fill 1: %llu bytes (%lu huge, %lu large, %lu small)\n", first.bytes,
           first.nhuge, first.nlarge, first.nsmall);
    printf("fill 2: %llu bytes (%lu huge, %lu large, %lu small) = %.1f%% of "
           "fill 1\n", second.bytes, second.nhuge, second.nlarge, second.nsmall,
           first.bytes ? 100.0 * (double)second.bytes / (double)first.bytes : 0.0);
    if (first.bytes == 0)
        FAIL("fill 1 got no memory at all");
    if ((double)second.bytes < 0.9 * (double)first.bytes)
        FAIL("fill 2 got %llu bytes, less than 90%% of fill 1's %llu: memory "
             "was not recovered", second.bytes, first.bytes);

    errno = 0;
    p = allocate(64);
    if (p == NULL) {
        FAIL("allocate(64) after release 2 returned NULL (errno %d)", errno);
    } else {
        memset(p, 0x5A, 64);
        deallocate(p);
    }

    if (failures) {
        printf("FAIL: test_oom: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: test_oom (huge, large and small fills end in NULL/ENOMEM; "
           "impossible sizes fail cleanly; fill 2 got %.1f%% of fill 1)\n",
           100.0 * (double)second.bytes / (double)first.bytes);
    return 0;
}
