/* Heap profiler test program: COUNT blocks of SIZE bytes, allocated by
 * hold_blocks() and leaked, from one of two threads:
 *
 *   cases main SIZE COUNT     the main thread, whose first allocations they
 *                             are (it has made none before: checked)
 *   cases thread SIZE COUNT   a worker thread that allocates nothing else
 *
 * Neither thread had a heap before these blocks; a profiler that samples
 * only in thread heaps, or skips a heap's first request, misses them.
 * run.sh checks the exit profile's estimate of hold_blocks against
 * SIZE x COUNT. Built -O2 -g; the block's first byte is written so that
 * the call of malloc is a call. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"

static char **blocks;
static size_t size, count;

__attribute__((noinline)) char *hold_blocks(size_t n)
{
    char *p = malloc(n);
    if (p) p[0] = 1;
    return p;
}

static void *hold_all(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < count; i++) {
        blocks[i] = hold_blocks(size);
        if (!blocks[i]) {
            fprintf(stderr, "cases: out of memory at block %zu\n", i);
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "main") && strcmp(argv[1], "thread"))) {
        fprintf(stderr, "usage: %s main|thread SIZE COUNT\n", argv[0]);
        return 2;
    }
    size = strtoul(argv[2], NULL, 10);
    count = strtoul(argv[3], NULL, 10);
    /* The pointers in static storage: the main thread must not allocate
     * before its blocks. */
    static char *table[1 << 16];
    if (count > sizeof table / sizeof *table) {
        fprintf(stderr, "cases: at most %zu blocks\n", sizeof table / sizeof *table);
        return 2;
    }
    blocks = table;
    if (!strcmp(argv[1], "main")) {
        struct memory_stats s;
        memory_stats(&s);
        if (s.small_allocations + s.large_allocations + s.huge_allocations != 0) {
            fprintf(stderr, "cases: %llu allocations before main's first\n",
                    (unsigned long long)(s.small_allocations + s.large_allocations + s.huge_allocations));
            return 1;
        }
        hold_all(NULL);
        return 0;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, hold_all, NULL) != 0 || pthread_join(t, NULL) != 0) {
        fprintf(stderr, "cases: thread failed\n");
        return 1;
    }
    return 0; /* the blocks leak */
}
