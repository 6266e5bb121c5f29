/*
 * pairs: the fast-path microbenchmark of docs/performance.md (and of the
 * fast-path issue): 64 live slots; each iteration mallocs 16..128 bytes
 * (16 + (i & 7) * 16), writes a byte, and frees the slot's previous block.
 *   pairs [iterations]   (default 1000000)
 * guard.sh runs it under callgrind at two iteration counts: the difference
 * divided by the extra iterations is the instructions of one malloc+free
 * pair, the loop's own (about 17) included.
 * Compiled with -fno-builtin-malloc -fno-builtin-free: gcc must keep every
 * call.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void *slots[64] = {0};
    for (long i = 0; i < n; i++) {
        char *p = malloc(16 + (i & 7) * 16);
        p[0] = (char)i; /* (no NULL test: the loop is the issue's, to the instruction) */
        free(slots[i & 63]);
        slots[i & 63] = p;
    }
    for (int i = 0; i < 64; i++)
        free(slots[i]);
    return 0;
}
