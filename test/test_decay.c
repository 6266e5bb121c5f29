/*
 * test_decay: a heap that shrank gives its free pages back a decay period
 * later, at its next slow path, without malloc_trim.
 *
 * 20 MiB of 64-byte blocks (320 pages of 64 KiB) are allocated and written;
 * then all but one block in 16 pages are freed, so 300 pages empty (64 to
 * the ring, 236 dirty: fewer than the 256 a heap keeps before it purges by
 * count, so only the decay gives them back) while
 * every segment keeps a live block (a segment that empties whole goes back
 * at once; test_return covers that). The emptied pages stay resident for a
 * while: the last 64 in the heap's ring, for its next blocks of their
 * class, the others dirty, for its next pages of any class
 * (src/thread/pages.rs). After the decay period (MALLOCATOR_DECAY_MS,
 * 100 ms by default; the test sleeps twice that) the first malloc of
 * another class takes the slow path, which purges the dirty pages: VmRSS
 * must then be back within the ring, the 20 pages still in use and 1 MiB of
 * slack (bitmaps, the new class's page).
 *
 * Exits 1 on failure.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory.h"

#define BLOCK 64
#define PAGE (64 * 1024)
#define PAGES 320
#define KEEP_EVERY 16                       /* pages: one live block in each such run */
#define PER_PAGE (PAGE / BLOCK)
#define N (PAGES * PER_PAGE)
#define RING_KIB (64 * PAGE / 1024)        /* RETAINED_EMPTY_PAGES in src/thread/heap.rs */
#define SLACK_KIB 1024
#define OTHER 200                           /* bytes: a class none of the above uses */

static void *blocks[N];
static void *other[64];

static long rss_kib(void)
{
    char line[256];
    long rss = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            rss = atol(line + 6);
    fclose(f);
    return rss;
}

int main(void)
{
    const char *decay = getenv("MALLOCATOR_DECAY_MS");
    long decay_ms = decay ? atol(decay) : 100;
    memset(blocks, 0, sizeof blocks);
    memset(other, 0, sizeof other);
    deallocate(allocate(100));
    long rss0 = rss_kib();
    for (size_t i = 0; i < N; i++) {
        blocks[i] = malloc(BLOCK);
        if (blocks[i] == NULL) {
            printf("FAIL: test_decay: malloc(%d) returned NULL\n", BLOCK);
            return 1;
        }
        memset(blocks[i], (int)i, BLOCK);
    }
    long rss1 = rss_kib();
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) {
        if (i % (KEEP_EVERY * PER_PAGE) == 0)
            kept++;
        else
            free(blocks[i]);
    }
    long rss2 = rss_kib();
    struct timespec nap = {.tv_sec = 2 * decay_ms / 1000, .tv_nsec = 2 * decay_ms % 1000 * 1000000};
    nanosleep(&nap, NULL);
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        other[i] = malloc(OTHER);
        if (other[i] == NULL) {
            printf("FAIL: test_decay: malloc(%d) returned NULL\n", OTHER);
            return 1;
        }
    }
    long rss3 = rss_kib();
    long bound = RING_KIB + (long)kept * PAGE / 1024 + SLACK_KIB;
    printf("test_decay: %d blocks of %d B written, all but %zu freed (%d pages emptied)\n", N, BLOCK, kept,
           PAGES - (int)kept);
    printf("  VmRSS growth kB: with all live %ld, after the frees %ld, %ld ms later at the next slow path %ld"
           " (at most %ld)\n",
           rss1 - rss0, rss2 - rss0, 2 * decay_ms, rss3 - rss0, bound);
    if (rss0 < 0 || rss3 - rss0 > bound) {
        printf("FAIL: test_decay: the free pages were not given back after the decay period\n");
        return 1;
    }
    for (size_t i = 0; i < N; i += KEEP_EVERY * PER_PAGE)
        free(blocks[i]);
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        free(other[i]);
    printf("PASS: test_decay\n");
    return 0;
}
