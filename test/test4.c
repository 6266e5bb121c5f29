/*
 * test4: 20 blocks of 32 bytes. Each is filled with its index; then the
 * addresses are sorted and every gap must be >= 32 (no overlap), every
 * block must still hold its index, and all are deallocated.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"

#define N 20
#define SIZE 32

static int cmp_ptr(const void *x, const void *y)
{
    uintptr_t a = (uintptr_t)*(void *const *)x;
    uintptr_t b = (uintptr_t)*(void *const *)y;
    return a < b ? -1 : a > b;
}

int main(void)
{
    unsigned char *blk[N];
    void *sorted[N];
    int failures = 0;

    setvbuf(stdout, NULL, _IONBF, 0);

    for (int i = 0; i < N; i++) {
        blk[i] = allocate(SIZE);
        if (blk[i] == NULL) {
            printf("FAIL: test4: allocation %d of %d bytes returned NULL\n", i,
                   SIZE);
            return 1;
        }
        if ((uintptr_t)blk[i] % 16 != 0) {
            printf("FAIL: test4: block %d at %p is not 16-byte aligned\n", i,
                   (void *)blk[i]);
            failures++;
        }
        memset(blk[i], i, SIZE);
        printf("  block %2d = %p\n", i, (void *)blk[i]);
    }

    memcpy(sorted, blk, sizeof sorted);
    qsort(sorted, N, sizeof sorted[0], cmp_ptr);
    for (int i = 0; i + 1 < N; i++) {
        uintptr_t gap = (uintptr_t)sorted[i + 1] - (uintptr_t)sorted[i];
        if (gap < SIZE) {
            printf("FAIL: test4: blocks %p and %p are only %lu bytes apart "
                   "(< %d)\n", sorted[i], sorted[i + 1], (unsigned long)gap,
                   SIZE);
            failures++;
        }
    }
    printf("  lowest %p, highest %p, span %lu bytes\n", sorted[0],
           sorted[N - 1],
           (unsigned long)((uintptr_t)sorted[N - 1] - (uintptr_t)sorted[0]));

    for (int i = 0; i < N; i++) {
        for (int j = 0; j < SIZE; j++) {
            if (blk[i][j] != (unsigned char)i) {
                printf("FAIL: test4: block %d (%p) byte %d is %u, expected %d\n",
                       i, (void *)blk[i], j, blk[i][j], i);
                failures++;
                break;
            }
        }
    }

    for (int i = 0; i < N; i++)
        deallocate(blk[i]);

    if (failures) {
        printf("FAIL: test4: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: test4 (%d x %d-byte blocks: no overlap, contents intact)\n", N,
           SIZE);
    return 0;
}
