/*
 * large: big blocks.
 *
 *   large mode=blocks [live=32] [iters=N] [min=4096] [max=4194304] [seed=1]
 *       keeps `live` blocks of random sizes in [min, max] (log-uniform),
 *       replaces a random one per step; every page of every block is
 *       written, so the cost of fresh pages (mmap/munmap, page faults,
 *       purging) is part of the measure.
 *
 *   large mode=realloc [bufs=4] [reps=4] [step=4096] [max=8388608]
 *       grows `bufs` buffers side by side (round-robin) by realloc in steps
 *       of `step` bytes up to `max`, like appending to a string builder,
 *       writing each new step; then checks every step's bytes and frees.
 *       Rewards realloc that grows in place or amortises its copies.
 */
#include "common.h"

static void run_blocks(void)
{
    size_t live = (size_t)arg_ll("live", 32);
    long long iters = arg_ll("iters", 20000);
    size_t lo = (size_t)arg_ll("min", 4096), hi = (size_t)arg_ll("max", 4 << 20);
    rng_t r;
    rng_seed(&r, (uint64_t)arg_ll("seed", 1));
    void **ptr = xmalloc(live * sizeof *ptr);
    size_t *len = xmalloc(live * sizeof *len);
    uint64_t *tag = xmalloc(live * sizeof *tag);
    uint64_t check = 0;

    double t0 = now();
    for (size_t i = 0; i < live; i++) {
        len[i] = rand_size(&r, lo, hi);
        ptr[i] = xmalloc(len[i]);
        tag[i] = i + 1;
        fill_block(ptr[i], len[i], tag[i]);
    }
    for (long long n = 0; n < iters; n++) {
        size_t i = rng_below(&r, (uint32_t)live);
        check_block(ptr[i], len[i], tag[i], "large");
        free(ptr[i]);
        len[i] = rand_size(&r, lo, hi);
        ptr[i] = xmalloc(len[i]);
        tag[i] = (uint64_t)(live + (size_t)n + 1);
        fill_block(ptr[i], len[i], tag[i]);
        check += len[i];
    }
    for (size_t i = 0; i < live; i++) {
        check_block(ptr[i], len[i], tag[i], "large (end)");
        free(ptr[i]);
    }
    double secs = now() - t0;
    result_begin("large");
    printf(" mode=blocks ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", iters, secs,
           (double)iters / secs, (unsigned long long)check);
    result_end();
    free(ptr);
    free(len);
    free(tag);
}

static void run_realloc(void)
{
    size_t bufs = (size_t)arg_ll("bufs", 4);
    long long reps = arg_ll("reps", 4);
    size_t step = (size_t)arg_ll("step", 4096), max = (size_t)arg_ll("max", 8 << 20);
    unsigned char **buf = xmalloc(bufs * sizeof *buf);
    long long ops = 0;
    uint64_t check = 0;

    double t0 = now();
    for (long long rep = 0; rep < reps; rep++) {
        for (size_t b = 0; b < bufs; b++)
            buf[b] = NULL;
        for (size_t len = step; len <= max; len += step) {
            for (size_t b = 0; b < bufs; b++) {
                unsigned char *p = realloc(buf[b], len);
                if (p == NULL)
                    fail("realloc(%zu) returned NULL", len);
                memset(p + len - step, (int)((len / step + b + (size_t)rep) & 0xFF), step);
                buf[b] = p;
                ops++;
            }
        }
        size_t top = max - max % step;
        for (size_t b = 0; b < bufs; b++) {
            for (size_t off = 0; off < top; off += step) {
                unsigned char want = (unsigned char)((off / step + 1 + b + (size_t)rep) & 0xFF);
                if (buf[b][off] != want || buf[b][off + step - 1] != want)
                    fail("realloc: buffer %zu lost its contents at offset %zu", b, off);
            }
            check += top;
            free(buf[b]);
        }
    }
    double secs = now() - t0;
    result_begin("realloc");
    printf(" mode=realloc ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", ops, secs,
           (double)ops / secs, (unsigned long long)check);
    result_end();
    free(buf);
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"mode", "live", "iters", "min", "max", "seed",
                                        "bufs", "reps", "step", NULL};
    args_init(argc, argv, known);
    const char *mode = "blocks";
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "mode=", 5) == 0)
            mode = argv[i] + 5;
    if (strcmp(mode, "blocks") == 0)
        run_blocks();
    else if (strcmp(mode, "realloc") == 0)
        run_realloc();
    else
        fail("unknown mode '%s' (blocks or realloc)", mode);
    return 0;
}
