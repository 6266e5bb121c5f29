/*
 * test3: many sizes at once, small classes through huge blocks.
 *
 * Every block is allocated first and filled with its own byte pattern; only
 * after all allocations are the patterns verified (so a block that overlaps
 * another, or that a later allocation scribbled on, is caught). Alignment is
 * checked against the documented rule:
 *     every block            >= 8-byte aligned
 *     size % 16 == 0         16-byte aligned
 *     size > 16384           4096-byte aligned
 * and the blocks are checked pairwise for overlap. Finally allocate(0) must
 * give distinct, freeable pointers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static const unsigned int sizes[] = {
    /* small classes */
    32, 64, 128, 192, 256, 384, 512, 1024, 2048, 4096, 8192, 16384,
    /* large / huge: 16 pages and up */
    65536, 100000, 1 * MiB, 4 * MiB, 32 * MiB,
    /* odd sizes */
    1, 7, 13, 100, 1000, 20000,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

struct block {
    unsigned char *p;
    unsigned int size;
    unsigned int index;
};

static struct block blocks[NSIZES];

/* Byte j of block i: depends on both, so a block that is misplaced or shares
 * memory with another shows up. */
static unsigned char pattern(unsigned int i, size_t j)
{
    return (unsigned char)((i * 37u + 11u) ^ (j * 131u) ^ (j >> 8));
}

static int by_address(const void *x, const void *y)
{
    uintptr_t a = (uintptr_t)((const struct block *)x)->p;
    uintptr_t b = (uintptr_t)((const struct block *)y)->p;
    return a < b ? -1 : a > b;
}

static unsigned int required_alignment(unsigned int size)
{
    if (size > 16384)
        return 4096;
    if (size % 16 == 0)
        return 16;
    return 8;
}

int main(void)
{
    int failures = 0;
    unsigned long long total = 0;
    struct block sorted[NSIZES];
    void *z1, *z2;

    setvbuf(stdout, NULL, _IONBF, 0);
    printf("%u-bit, %zu sizes\n", (unsigned)(sizeof(void *) * 8), NSIZES);

    /* Allocate and fill everything first. */
    for (unsigned int i = 0; i < NSIZES; i++) {
        unsigned int size = sizes[i];
        unsigned int align = required_alignment(size);
        unsigned char *p = allocate(size);

        blocks[i].p = p;
        blocks[i].size = size;
        blocks[i].index = i;
        if (p == NULL) {
            printf("FAIL: test3: allocate(%u) returned NULL\n", size);
            return 1;
        }
        printf("  allocate(%8u) = %p", size, (void *)p);
        if ((uintptr_t)p % align != 0) {
            printf("  <- not %u-byte aligned\n", align);
            printf("FAIL: test3: allocate(%u) = %p is not %u-byte aligned\n",
                   size, (void *)p, align);
            failures++;
        } else {
            printf("  (%u-aligned ok)\n", align);
        }
        for (size_t j = 0; j < size; j++)
            p[j] = pattern(i, j);
        total += size;
    }

    /* Then verify every pattern. */
    for (unsigned int i = 0; i < NSIZES; i++) {
        const unsigned char *p = blocks[i].p;
        for (size_t j = 0; j < blocks[i].size; j++) {
            if (p[j] != pattern(i, j)) {
                printf("FAIL: test3: block %u (size %u, %p): byte %zu is 0x%02x, "
                       "expected 0x%02x\n", i, blocks[i].size, (void *)p, j,
                       p[j], pattern(i, j));
                failures++;
                break;
            }
        }
    }

    /* No two blocks overlap. */
    memcpy(sorted, blocks, sizeof sorted);
    qsort(sorted, NSIZES, sizeof sorted[0], by_address);
    for (unsigned int i = 0; i + 1 < NSIZES; i++) {
        uintptr_t end = (uintptr_t)sorted[i].p + sorted[i].size;
        if (end > (uintptr_t)sorted[i + 1].p) {
            printf("FAIL: test3: block %p (size %u) overlaps block %p (size %u)\n",
                   (void *)sorted[i].p, sorted[i].size,
                   (void *)sorted[i + 1].p, sorted[i + 1].size);
            failures++;
        }
    }

    for (unsigned int i = 0; i < NSIZES; i++)
        deallocate(blocks[i].p);

    /* allocate(0): unique, non-NULL, freeable. */
    z1 = allocate(0);
    z2 = allocate(0);
    printf("  allocate(0) = %p, allocate(0) = %p\n", z1, z2);
    if (z1 == NULL || z2 == NULL) {
        printf("FAIL: test3: allocate(0) returned NULL\n");
        failures++;
    } else if (z1 == z2) {
        printf("FAIL: test3: two live allocate(0) blocks have the same address\n");
        failures++;
    } else if ((uintptr_t)z1 % 8 != 0 || (uintptr_t)z2 % 8 != 0) {
        printf("FAIL: test3: allocate(0) pointers not 8-byte aligned\n");
        failures++;
    }
    deallocate(z1);
    deallocate(z2);
    deallocate(NULL); /* no-op */

    if (failures) {
        printf("FAIL: test3: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: test3 (%zu blocks, %llu bytes: patterns intact, alignment ok, "
           "no overlap; allocate(0) unique)\n", NSIZES, total);
    return 0;
}
