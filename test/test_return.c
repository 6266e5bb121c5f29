/*
 * test_return: after a program frees everything, the memory is back.
 *
 * The workload of the memory issue: 2,000,000 small blocks of 16..176 bytes
 * and 64 blocks of 1..2 MiB (xorshift32, fixed seed), allocated in random
 * order through malloc, every byte written, then freed in a shuffled order
 * (Fisher-Yates). VmRSS and VmSize are read from /proc/self/status after a
 * warm-up allocate/free ("start"), with everything live ("peak") and after
 * the frees ("after").
 *
 * Pass: (after - start) <= 1% of (peak - start) for VmRSS right after the
 * frees, and once more, with <= 5% for VmSize, after malloc_trim(0): the
 * memory issue's targets, as a guard in `make test` (a change that keeps
 * more fails here). Right after the frees the one entirely free large
 * segment stays mapped for reuse (purged: address space only, 32 MiB on
 * x86_64), until malloc_trim or the decay's quiet spell (the next large
 * request 50 ms or more later) unmaps it; its VmSize is printed for
 * information, as are the allocator's mapped bytes (memory_stats).
 * Exits 1 on failure.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <malloc.h>

#include "memory.h"

#define SMALL 2000000
#define LARGE 64
#define N (SMALL + LARGE)
#define RSS_SHARE 0.01
#define VM_SHARE 0.05

static void *blocks[N];
static uint32_t order[N];
static uint32_t rng = 2463534242u;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* Fisher-Yates over order[]. */
static void shuffle(void)
{
    for (uint32_t i = N - 1; i > 0; i--) {
        uint32_t j = next() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* VmRSS and VmSize in kB. */
static void status(long *rss, long *vm)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    *rss = *vm = -1;
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            *rss = atol(line + 6);
        else if (strncmp(line, "VmSize:", 7) == 0)
            *vm = atol(line + 7);
    }
    fclose(f);
}

static unsigned long long mapped(void)
{
    struct memory_stats s;
    memory_stats(&s);
    return (unsigned long long)s.mapped_bytes;
}

int main(void)
{
    long rss0, vm0, rss1, vm1, rss2, vm2;
    for (uint32_t i = 0; i < N; i++)
        order[i] = i;
    /* Random order of allocation: small and large blocks interleaved. */
    shuffle();
    /* The test's own arrays resident before "start": only the allocator's
     * memory may count (and the thread's heap made: the first allocation
     * through allocate, which gcc cannot elide as it may malloc and free). */
    memset(blocks, 0, sizeof blocks);
    deallocate(allocate(100));
    status(&rss0, &vm0);
    unsigned long long m0 = mapped();
    for (uint32_t k = 0; k < N; k++) {
        uint32_t i = order[k];
        size_t size = i < SMALL ? 16 + next() % 161 : (1u << 20) + next() % (1u << 20);
        blocks[i] = malloc(size);
        if (blocks[i] == NULL) {
            printf("FAIL: test_return: malloc(%zu) returned NULL\n", size);
            return 1;
        }
        memset(blocks[i], (int)i, size);
    }
    status(&rss1, &vm1);
    unsigned long long m1 = mapped();
    shuffle();
    for (uint32_t k = 0; k < N; k++)
        free(blocks[order[k]]);
    status(&rss2, &vm2);
    unsigned long long m2 = mapped();
    malloc_trim(0);
    long rss3, vm3;
    status(&rss3, &vm3);
    unsigned long long m3 = mapped();
    double growth_rss = (double)(rss1 - rss0), growth_vm = (double)(vm1 - vm0);
    double rss_kept = (double)(rss2 - rss0) / growth_rss, vm_kept = (double)(vm2 - vm0) / growth_vm;
    double rss_trim = (double)(rss3 - rss0) / growth_rss, vm_trim = (double)(vm3 - vm0) / growth_vm;
    printf("test_return: %d small blocks of 16..176 B and %d of 1..2 MiB, written, freed in shuffled order\n",
           SMALL, LARGE);
    printf("  VmRSS  kB: start %ld, peak %ld, after the frees %ld (%.2f%% of the growth kept, at most %.0f%%),"
           " after malloc_trim %ld (%.2f%%)\n",
           rss0, rss1, rss2, 100 * rss_kept, 100 * RSS_SHARE, rss3, 100 * rss_trim);
    printf("  VmSize kB: start %ld, peak %ld, after the frees %ld (%.2f%%), after malloc_trim %ld (%.2f%% of the "
           "growth kept, at most %.0f%%)\n",
           vm0, vm1, vm2, 100 * vm_kept, vm3, 100 * vm_trim, 100 * VM_SHARE);
    printf("  mapped by the allocator, kB: start %llu, peak %llu, after the frees %llu, after malloc_trim %llu\n",
           m0 >> 10, m1 >> 10, m2 >> 10, m3 >> 10);
    if (rss0 < 0 || vm0 < 0 || rss_kept > RSS_SHARE || rss_trim > RSS_SHARE || vm_trim > VM_SHARE) {
        printf("FAIL: test_return: memory kept after freeing everything\n");
        return 1;
    }
    printf("PASS: test_return (%.2f%% of the RSS growth kept after freeing everything; after malloc_trim "
           "%.2f%% of the RSS growth, %.2f%% of the VmSize growth)\n",
           100 * rss_kept, 100 * rss_trim, 100 * vm_trim);
    return 0;
}
