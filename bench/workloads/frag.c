/*
 * frag: fragmentation stress. Each round
 *   A. allocates `n` small blocks, sizes [16, 512] log-uniform;
 *   B. frees a scattered half of them (each with probability 1/2);
 *   C. allocates n/2 blocks of other sizes, [256, 4096] log-uniform, which
 *      stay live to the end;
 *   D. frees the rest of the small blocks.
 * After the last round the live blocks (n/2 per round) are what the program
 * really uses; rss_kb / live_kb then measures what fragmentation and
 * allocator overhead cost. The harness also reports the peak RSS.
 *
 *   frag [n=200000] [rounds=4] [seed=1]
 */
#include "common.h"

int main(int argc, char **argv)
{
    static const char *const known[] = {"n", "rounds", "seed", NULL};
    args_init(argc, argv, known);
    size_t n = (size_t)arg_ll("n", 200000);
    int rounds = (int)arg_ll("rounds", 4);
    rng_t r;
    rng_seed(&r, (uint64_t)arg_ll("seed", 1));

    void **small = xmalloc(n * sizeof *small);
    size_t *slen = xmalloc(n * sizeof *slen);
    size_t nkeep = (size_t)rounds * (n / 2);
    void **keep = xmalloc((nkeep ? nkeep : 1) * sizeof *keep);
    size_t *klen = xmalloc((nkeep ? nkeep : 1) * sizeof *klen);
    size_t k = 0;
    unsigned long long live = 0, ops = 0;

    double t0 = now();
    for (int round = 0; round < rounds; round++) {
        for (size_t i = 0; i < n; i++) {
            slen[i] = rand_size(&r, 16, 512);
            small[i] = xmalloc(slen[i]);
            fill_block(small[i], slen[i], (uint64_t)i * 31 + (uint64_t)round);
        }
        for (size_t i = 0; i < n; i++)
            if (rng_next(&r) & 1) {
                check_block(small[i], slen[i], (uint64_t)i * 31 + (uint64_t)round, "frag");
                free(small[i]);
                small[i] = NULL;
            }
        for (size_t i = 0; i < n / 2; i++, k++) {
            klen[k] = rand_size(&r, 256, 4096);
            keep[k] = xmalloc(klen[k]);
            fill_block(keep[k], klen[k], (uint64_t)k * 17 + 3);
            live += klen[k];
        }
        for (size_t i = 0; i < n; i++)
            if (small[i] != NULL) {
                check_block(small[i], slen[i], (uint64_t)i * 31 + (uint64_t)round, "frag");
                free(small[i]);
            }
        ops += n + n / 2;
    }
    double secs = now() - t0;
    vmstat_t v = vmstat();
    for (size_t i = 0; i < k; i++) {
        check_block(keep[i], klen[i], (uint64_t)i * 17 + 3, "frag (end)");
        free(keep[i]);
    }

    result_begin("frag");
    printf(" ops=%llu seconds=%.6f live_kb=%llu rss_kb=%ld hwm_kb=%ld rss_per_live=%.3f "
           "check=%llu",
           ops, secs, live / 1024, v.rss_kb, v.hwm_kb, (double)v.rss_kb * 1024.0 / (double)live,
           live);
    result_end();
    free(small);
    free(slen);
    free(keep);
    free(klen);
    return 0;
}
