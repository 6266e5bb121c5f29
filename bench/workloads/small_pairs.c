/*
 * small_pairs: single thread, malloc immediately followed by free, sizes
 * 16..128 bytes (uniform). The fast path of every allocator.
 *
 *   small_pairs [iters=N] [min=16] [max=128] [seed=1]
 */
#include "common.h"

int main(int argc, char **argv)
{
    static const char *const known[] = {"iters", "min", "max", "seed", NULL};
    args_init(argc, argv, known);
    long long iters = arg_ll("iters", 20000000);
    size_t lo = (size_t)arg_ll("min", 16), hi = (size_t)arg_ll("max", 128);
    rng_t r;
    rng_seed(&r, (uint64_t)arg_ll("seed", 1));
    uint64_t check = 0;

    double t0 = now();
    for (long long i = 0; i < iters; i++) {
        size_t size = lo + rng_below(&r, (uint32_t)(hi - lo + 1));
        unsigned char *p = malloc(size);
        if (p == NULL)
            fail("malloc(%zu) returned NULL", size);
        p[0] = (unsigned char)i;
        p[size - 1] = (unsigned char)(i >> 8);
        escape(p);
        if (p[0] != (unsigned char)i || p[size - 1] != (unsigned char)(i >> 8))
            fail("block %p of %zu bytes lost its contents", (void *)p, size);
        check += size;
        free(p);
    }
    double secs = now() - t0;

    result_begin("small_pairs");
    printf(" ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", iters, secs,
           (double)iters / secs, (unsigned long long)check);
    result_end();
    return 0;
}
