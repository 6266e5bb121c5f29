/*
 * workset: one thread keeps `live` blocks; every step frees a random one
 * (after checking its contents) and allocates a new block of a random size
 * in [min, max] (log-uniform), writing a tag into it (head, tail, one byte
 * per page).
 *
 *   workset [live=10000] [iters=N] [min=8] [max=256] [seed=1]
 *
 * WORKLOAD_STATS=1 prints the live bytes and the allocator's breakdown
 * before the final frees (see peak_report).
 */
#include "common.h"

int main(int argc, char **argv)
{
    static const char *const known[] = {"live", "iters", "min", "max", "seed", NULL};
    args_init(argc, argv, known);
    size_t live = (size_t)arg_ll("live", 10000);
    long long iters = arg_ll("iters", 5000000);
    size_t lo = (size_t)arg_ll("min", 8), hi = (size_t)arg_ll("max", 256);
    rng_t r;
    rng_seed(&r, (uint64_t)arg_ll("seed", 1));

    void **ptr = xmalloc(live * sizeof *ptr);
    size_t *len = xmalloc(live * sizeof *len);
    uint64_t *tag = xmalloc(live * sizeof *tag);
    uint64_t check = 0, next_tag = 1;

    double t0 = now();
    for (size_t i = 0; i < live; i++) {
        len[i] = rand_size(&r, lo, hi);
        ptr[i] = xmalloc(len[i]);
        tag[i] = next_tag++ * 0x9E3779B97F4A7C15ULL;
        fill_block(ptr[i], len[i], tag[i]);
    }
    for (long long n = 0; n < iters; n++) {
        size_t i = rng_below(&r, (uint32_t)live);
        check_block(ptr[i], len[i], tag[i], "workset");
        free(ptr[i]);
        len[i] = rand_size(&r, lo, hi);
        ptr[i] = xmalloc(len[i]);
        tag[i] = next_tag++ * 0x9E3779B97F4A7C15ULL;
        fill_block(ptr[i], len[i], tag[i]);
        check += len[i];
    }
    size_t live_bytes = 0;
    for (size_t i = 0; i < live; i++)
        live_bytes += len[i];
    peak_report(live_bytes);
    for (size_t i = 0; i < live; i++) {
        check_block(ptr[i], len[i], tag[i], "workset (end)");
        free(ptr[i]);
    }
    double secs = now() - t0;
    vmstat_t v = vmstat();

    result_begin("workset");
    printf(" ops=%lld seconds=%.6f ops_per_sec=%.0f hwm_kb=%ld check=%llu", iters, secs,
           (double)iters / secs, v.hwm_kb, (unsigned long long)check);
    result_end();
    free(ptr);
    free(len);
    free(tag);
    return 0;
}
