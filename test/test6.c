/*
 * test6: exhaust the address space.
 *
 * Allocates random sizes from 1 to 256 bytes (xorshift32, fixed seed) until
 * allocate() returns NULL, which must come with errno == ENOMEM (no crash).
 * Nothing is freed on the way and the blocks are not touched, except one
 * byte written into every 1000th block, so the resident set stays small
 * unless the allocator itself touches the memory it hands out.
 *
 * The address space is 4 GiB on 32-bit. On 64-bit the program first lowers
 * RLIMIT_AS to 1 GiB (or keeps the current limit if it is already lower) and
 * that limit is the address space.
 *
 * Printed at exhaustion: user bytes, block count, seconds, share of the
 * address space that became user bytes, VmRSS / VmSize / VmPeak.
 *
 * Every 64th pointer is kept in a static array; after the NULL, the bytes
 * written into kept blocks are checked, the kept blocks are deallocated and
 * allocate(64) must succeed again.
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

#define GiB (1024ULL * 1024 * 1024)
#define KEEP_EVERY 64
#define WRITE_EVERY 1000
#define KEEP_MAX (1u << 20)
#define TIME_LIMIT_S 300.0

static void *keep[KEEP_MAX];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints the named lines of /proc/self/status. Uses only open/read and a
 * stack buffer: at exhaustion, stdio's own buffers may not be obtainable. */
static void print_status(const char *when)
{
    char buf[8192];
    static const char *const keys[] = {"VmPeak:", "VmSize:", "VmRSS:"};
    ssize_t n, len = 0;
    int fd = open("/proc/self/status", O_RDONLY);

    if (fd < 0) {
        printf("  (%s: cannot open /proc/self/status: %s)\n", when,
               strerror(errno));
        return;
    }
    while (len < (ssize_t)sizeof buf - 1 &&
           (n = read(fd, buf + len, sizeof buf - 1 - (size_t)len)) > 0)
        len += n;
    close(fd);
    buf[len] = '\0';

    printf("  %s:", when);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        char *line = strstr(buf, keys[k]);
        if (line == NULL)
            continue;
        char *end = strchr(line, '\n');
        char *v = line + strlen(keys[k]);
        while (*v == ' ' || *v == '\t')
            v++;
        printf("  %s %.*s", keys[k], (int)(end ? end - v : (ptrdiff_t)strlen(v)),
               v);
    }
    printf("\n");
}

int main(void)
{
    struct rlimit rl;
    unsigned long long space, total = 0;
    unsigned long count = 0, nkeep = 0, keep_overflow = 0;
    uint32_t x = 2463534242u; /* xorshift32 seed */
    int err, failures = 0;
    double t0, secs;
    void *p;

    setvbuf(stdout, NULL, _IONBF, 0);

    if (getrlimit(RLIMIT_AS, &rl) != 0) {
        printf("FAIL: test6: getrlimit(RLIMIT_AS): %s\n", strerror(errno));
        return 1;
    }
    if (sizeof(void *) == 4) {
        space = 4 * GiB;
        if (rl.rlim_cur != RLIM_INFINITY && (unsigned long long)rl.rlim_cur < space) {
            space = rl.rlim_cur;
            printf("32-bit: RLIMIT_AS is %llu bytes, below 4 GiB; using it\n",
                   space);
        } else {
            printf("32-bit: address space 4 GiB\n");
        }
    } else {
        if (rl.rlim_cur != RLIM_INFINITY && (unsigned long long)rl.rlim_cur <= GiB) {
            space = rl.rlim_cur;
            printf("64-bit: RLIMIT_AS already %llu bytes (<= 1 GiB); kept\n",
                   space);
        } else {
            rl.rlim_cur = GiB;
            if (setrlimit(RLIMIT_AS, &rl) != 0) {
                printf("FAIL: test6: setrlimit(RLIMIT_AS, 1 GiB): %s\n",
                       strerror(errno));
                return 1;
            }
            space = GiB;
            printf("64-bit: RLIMIT_AS set to 1 GiB\n");
        }
    }
    print_status("at start");

    t0 = now();
    for (;;) {
        unsigned int size;

        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        size = x % 256 + 1;

        errno = 0;
        p = allocate(size);
        if (p == NULL)
            break;

        if (count % WRITE_EVERY == 0)
            *(volatile unsigned char *)p = (unsigned char)(count / WRITE_EVERY);
        if (count % KEEP_EVERY == 0) {
            if (nkeep < KEEP_MAX)
                keep[nkeep++] = p;
            else
                keep_overflow++;
        }
        count++;
        total += size;

        if ((count & 0xFFFFF) == 0 && now() - t0 > TIME_LIMIT_S) {
            printf("FAIL: test6: no NULL after %.0f s (%lu blocks, %llu bytes)\n",
                   TIME_LIMIT_S, count, total);
            return 1;
        }
    }
    err = errno;
    secs = now() - t0;

    printf("allocate() returned NULL after %lu blocks, %llu user bytes "
           "(%.1f MiB), %.3f s\n", count, total, (double)total / (1024.0 * 1024.0),
           secs);
    printf("errno = %d (%s)\n", err, strerror(err));
    printf("user bytes / address space (%llu MiB) = %.1f%%\n",
           space / (1024 * 1024), 100.0 * (double)total / (double)space);
    print_status("at exhaustion");

    if (err != ENOMEM) {
        printf("FAIL: test6: errno after NULL is %d (%s), expected ENOMEM\n",
               err, strerror(err));
        failures++;
    }
    if (count == 0) {
        printf("FAIL: test6: the very first allocation failed\n");
        failures++;
    }
    if (keep_overflow)
        printf("note: %lu pointers did not fit the keep array\n", keep_overflow);

    /* Kept blocks whose index is also a multiple of WRITE_EVERY hold the
     * byte written into them. */
    for (unsigned long k = 0; k < nkeep; k++) {
        unsigned long idx = k * KEEP_EVERY;
        if (idx % WRITE_EVERY == 0) {
            unsigned char want = (unsigned char)(idx / WRITE_EVERY);
            unsigned char got = *(volatile unsigned char *)keep[k];
            if (got != want) {
                printf("FAIL: test6: block %lu (%p) holds 0x%02x, expected "
                       "0x%02x\n", idx, keep[k], got, want);
                failures++;
                break;
            }
        }
    }

    /* The allocator still works after running out. */
    for (unsigned long k = 0; k < nkeep; k++)
        deallocate(keep[k]);
    printf("deallocated %lu kept blocks (every %dth)\n", nkeep, KEEP_EVERY);

    errno = 0;
    p = allocate(64);
    if (p == NULL) {
        printf("FAIL: test6: allocate(64) after freeing kept blocks returned "
               "NULL (errno %d)\n", errno);
        failures++;
    } else {
        memset(p, 0x5A, 64);
        printf("allocate(64) after OOM and frees = %p (ok)\n", p);
        deallocate(p);
    }

    if (failures) {
        printf("FAIL: test6: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: test6 (%lu blocks, %llu bytes until NULL/ENOMEM; "
           "allocator works after OOM)\n", count, total);
    return 0;
}
