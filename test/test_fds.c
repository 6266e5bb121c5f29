/*
 * test_fds: a daemon closes all its descriptors.
 *
 * The library maps its memory from /dev/zero. If it kept a descriptor of
 * /dev/zero across calls and the program closed it, a later open() of a
 * regular file would get the same number and the allocator would map the
 * file instead: "fresh" blocks would hold the file's bytes (or fault with
 * SIGBUS past its end).
 *
 * The program
 *  1. makes one warm-up allocate/deallocate (so the library is initialised
 *     and has opened whatever it opens),
 *  2. duplicates stdout to a high descriptor (F_DUPFD, at 900 or just below
 *     the soft RLIMIT_NOFILE) used for every report from then on,
 *  3. closes every other descriptor from 0 to the soft RLIMIT_NOFILE,
 *     including 0, 1 and 2,
 *  4. creates a regular file in /tmp (mkstemp, unlinked at once) filled with
 *     8 MiB of 0xAB; it gets descriptor 0, and it is dup()ed onto the next
 *     lowest numbers up to 15, so whatever number the library might have
 *     cached now names the file,
 *  5. allocates, without freeing, 20,000 small blocks of 1000 bytes (several
 *     new segments), 100 large blocks of 100,000 bytes and 4 huge blocks of
 *     8 MiB; every block is first checked to read as zeros (all are first
 *     allocations in a fresh process: none is a reused block), then filled
 *     with its own pattern,
 *  6. verifies every pattern, deallocates everything,
 *  7. checks the file still has its size and holds 0xAB everywhere.
 *
 * A SIGBUS or SIGSEGV (what touching a mapping of the file past its end
 * gives) is reported as a failure on the report descriptor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "memory.h"

#define MiB (1024u * 1024u)
#define FILE_SIZE (8 * MiB)
#define FILE_BYTE 0xAB
#define FILE_FDS 16 /* the file occupies descriptors 0 .. FILE_FDS-1 */

#define N_SMALL 20000
#define SZ_SMALL 1000u
#define N_LARGE 100
#define SZ_LARGE 100000u
#define N_HUGE 4
#define SZ_HUGE (8 * MiB)
#define N_BLOCKS (N_SMALL + N_LARGE + N_HUGE)

static int report_fd = 1;
static int failures;
static volatile sig_atomic_t phase; /* for the signal handler */

static void *blocks[N_BLOCKS];
static unsigned int sizes[N_BLOCKS];
static unsigned char chunk[64 * 1024];

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdprintf(report_fd, fmt, ap);
    va_end(ap);
}

#define FAIL(...)                                                              \
    do {                                                                       \
        say("FAIL: test_fds: " __VA_ARGS__);                                   \
        say("\n");                                                             \
        failures++;                                                            \
    } while (0)

static void on_fatal(int sig)
{
    static const char *const where[] = {
        "setting up", "checking fresh blocks are zero", "filling blocks",
        "verifying blocks", "deallocating", "checking the file"};
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "FAIL: test_fds: signal %d (%s) while %s -- a block was "
                     "probably mapped from the file, not /dev/zero\n",
                     sig, sig == SIGBUS ? "SIGBUS" : "SIGSEGV",
                     where[phase < 6 ? phase : 0]);
    if (n > 0 && write(report_fd, buf, (size_t)n) < 0) { /* nothing to do */ }
    _exit(1);
}

static unsigned char pat(size_t block, size_t j)
{
    return (unsigned char)(block * 131 + j * 7 + 1);
}

int main(void)
{
    struct rlimit rl;
    long limit, closed = 0;
    int file_fd, hi;
    char path[] = "/tmp/mallocator-test_fds-XXXXXX";
    struct stat st;
    void *warm;
    size_t nonzero_blocks = 0;

    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGBUS, on_fatal);
    signal(SIGSEGV, on_fatal);

    /* 1. warm-up */
    warm = allocate(100);
    if (warm == NULL) {
        printf("FAIL: test_fds: warm-up allocate(100) returned NULL\n");
        return 1;
    }
    deallocate(warm);

    /* 2. the report descriptor */
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        printf("FAIL: test_fds: getrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
        return 1;
    }
    limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 30)
                ? (1L << 30) : (long)rl.rlim_cur;
    if (limit < FILE_FDS + 4) {
        printf("FAIL: test_fds: RLIMIT_NOFILE %ld is too low for this test\n",
               limit);
        return 1;
    }
    hi = limit > 901 ? 900 : (int)limit - 1;
    report_fd = fcntl(1, F_DUPFD, hi);
    if (report_fd < 0) {
        printf("FAIL: test_fds: fcntl(1, F_DUPFD, %d): %s\n", hi, strerror(errno));
        return 1;
    }
    printf("RLIMIT_NOFILE soft limit %ld; reports go to fd %d from now on\n",
           limit, report_fd);

    /* 3. close everything else */
    for (long fd = 0; fd < limit && fd < (1L << 20); fd++)
        if (fd != report_fd && close((int)fd) == 0)
            closed++;
#ifdef SYS_close_range
    if (limit > (1L << 20))
        syscall(SYS_close_range, 1u << 20, ~0u, 0);
#endif
    say("closed %ld open descriptors (0 .. %ld, all but %d)\n", closed,
        limit - 1, report_fd);

    /* 4. the file takes the lowest numbers */
    file_fd = mkstemp(path);
    if (file_fd < 0) {
        FAIL("mkstemp(%s): %s", path, strerror(errno));
        return 1;
    }
    unlink(path);
    memset(chunk, FILE_BYTE, sizeof chunk);
    for (size_t off = 0; off < FILE_SIZE; off += sizeof chunk)
        if (write(file_fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) {
            FAIL("writing %s: %s", path, strerror(errno));
            return 1;
        }
    for (int k = 1; k < FILE_FDS; k++) {
        int d = dup(file_fd);
        if (d < 0) {
            FAIL("dup of the file descriptor: %s", strerror(errno));
            return 1;
        }
    }
    say("file %s (unlinked): %u bytes of 0x%02X on fd %d, dup()ed onto "
        "fds up to %d\n", path, FILE_SIZE, FILE_BYTE, file_fd, FILE_FDS - 1);

    /* 5. fresh blocks of every kind read as zeros */
    phase = 1;
    for (size_t i = 0; i < N_BLOCKS; i++) {
        unsigned int size = i < N_SMALL ? SZ_SMALL
                            : i < N_SMALL + N_LARGE ? SZ_LARGE : SZ_HUGE;
        unsigned char *p;

        errno = 0;
        p = allocate(size);
        if (p == NULL) {
            FAIL("allocate(%u) #%zu returned NULL (errno %d)", size, i, errno);
            return 1;
        }
        blocks[i] = p;
        sizes[i] = size;
        phase = 1;
        for (size_t j = 0; j < size; j++)
            if (p[j] != 0) {
                if (nonzero_blocks++ < 5)
                    FAIL("fresh block %zu (allocate(%u) = %p) byte %zu is "
                         "0x%02x, not 0%s", i, size, (void *)p, j, p[j],
                         p[j] == FILE_BYTE ? " -- the file's byte: the block "
                         "is mapped from the file" : "");
                break;
            }
        phase = 2;
        for (size_t j = 0; j < size; j++)
            p[j] = pat(i, j);
    }
    say("allocated %d x %u + %d x %u + %d x %u bytes; %zu fresh block(s) "
        "not zero\n", N_SMALL, SZ_SMALL, N_LARGE, SZ_LARGE, N_HUGE, SZ_HUGE,
        nonzero_blocks);
    if (nonzero_blocks > 5)
        FAIL("%zu fresh blocks in all were not zero", nonzero_blocks);

    /* 6. patterns survive, everything is freed */
    phase = 3;
    for (size_t i = 0; i < N_BLOCKS; i++) {
        const unsigned char *p = blocks[i];
        for (size_t j = 0; j < sizes[i]; j++)
            if (p[j] != pat(i, j)) {
                FAIL("block %zu (%p, %u bytes) byte %zu is 0x%02x, expected "
                     "0x%02x (blocks overlap?)", i, (void *)p, sizes[i], j,
                     p[j], pat(i, j));
                break;
            }
    }
    phase = 4;
    for (size_t i = 0; i < N_BLOCKS; i++)
        deallocate(blocks[i]);
    say("patterns verified, %d blocks deallocated\n", N_BLOCKS);

    /* 7. the file is untouched */
    phase = 5;
    if (fstat(file_fd, &st) != 0)
        FAIL("fstat of the file: %s", strerror(errno));
    else if (st.st_size != (off_t)FILE_SIZE)
        FAIL("the file's size changed: %lld, expected %u",
             (long long)st.st_size, FILE_SIZE);
    for (size_t off = 0; off < FILE_SIZE; off += sizeof chunk) {
        ssize_t n = pread(file_fd, chunk, sizeof chunk, (off_t)off);
        if (n != (ssize_t)sizeof chunk) {
            FAIL("reading the file back at %zu: %s", off,
                 n < 0 ? strerror(errno) : "short read");
            break;
        }
        for (size_t j = 0; j < sizeof chunk; j++)
            if (chunk[j] != FILE_BYTE) {
                FAIL("the file changed: byte %zu is 0x%02x, expected 0x%02X",
                     off + j, chunk[j], FILE_BYTE);
                off = FILE_SIZE;
                break;
            }
    }
    if (failures == 0)
        say("file content unchanged (%u bytes of 0x%02X)\n", FILE_SIZE,
            FILE_BYTE);

    if (failures) {
        say("FAIL: test_fds: %d check(s) failed\n", failures);
        return 1;
    }
    say("PASS: test_fds (all descriptors closed, a file on fds 0..%d: %d fresh "
        "small/large/huge blocks read as zeros, patterns intact, file "
        "unchanged)\n", FILE_FDS - 1, N_BLOCKS);
    return 0;
}
