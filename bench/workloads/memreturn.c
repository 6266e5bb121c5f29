/*
 * memreturn: does freed memory go back to the system? Allocates about
 * `mb` MiB, half of the bytes in small blocks [16, 512] and half in larger
 * ones [512, max], writes every byte, then frees everything in random order.
 * Reports VmRSS and VmSize (/proc/self/status) before, at the peak and
 * after the frees, and the retained share of the growth:
 *   rss_retained_pct = (rss_after - rss_before) / (rss_peak - rss_before).
 *
 *   memreturn [mb=256] [max=131072] [sleep_ms=0] [seed=1]
 */
#include <sys/mman.h>

#include "common.h"

/* The index arrays come from mmap, prefaulted before the first measure, so
 * they are neither allocator traffic nor part of the growth. */
static void *map_array(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        fail("mmap(%zu) failed", bytes);
    memset(p, 0, bytes);
    return p;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"mb", "max", "sleep_ms", "seed", NULL};
    args_init(argc, argv, known);
    unsigned long long target = (unsigned long long)arg_ll("mb", 256) << 20;
    size_t hi = (size_t)arg_ll("max", 131072);
    long long sleep_ms = arg_ll("sleep_ms", 0);
    rng_t r;
    rng_seed(&r, (uint64_t)arg_ll("seed", 1));

    /* about 150 bytes per small block on average; room for twice that many */
    size_t cap = (size_t)(target / 128) + 4096;
    void **ptr = map_array(cap * sizeof *ptr);
    size_t *len = map_array(cap * sizeof *len);
    vmstat_t before = vmstat();

    double t0 = now();
    unsigned long long small_bytes = 0, big_bytes = 0;
    size_t n = 0;
    while (small_bytes + big_bytes < target && n < cap) {
        size_t size = small_bytes <= big_bytes ? rand_size(&r, 16, 512) : rand_size(&r, 512, hi);
        unsigned char *p = xmalloc(size);
        memset(p, (int)(n & 0xFF), size);
        ptr[n] = p;
        len[n] = size;
        n++;
        if (size <= 512)
            small_bytes += size;
        else
            big_bytes += size;
    }
    vmstat_t peak = vmstat();
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_below(&r, (uint32_t)(i + 1));
        void *tp = ptr[i];
        size_t tl = len[i];
        ptr[i] = ptr[j];
        len[i] = len[j];
        ptr[j] = tp;
        len[j] = tl;
    }
    /* the index no longer tells the fill byte; the fill byte is checked at
     * both ends against each other */
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = ptr[i];
        if (p[0] != p[len[i] - 1] || p[0] != p[len[i] / 2])
            fail("memreturn: block %p of %zu bytes lost its contents", (void *)p, len[i]);
        free(p);
    }
    double secs = now() - t0;
    if (sleep_ms > 0) {
        struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    vmstat_t after = vmstat();
    double rss_grow = (double)(peak.rss_kb - before.rss_kb);
    double vm_grow = (double)(peak.size_kb - before.size_kb);

    result_begin("memreturn");
    printf(" blocks=%zu bytes=%llu seconds=%.6f rss_before_kb=%ld rss_peak_kb=%ld "
           "rss_after_kb=%ld vm_before_kb=%ld vm_peak_kb=%ld vm_after_kb=%ld "
           "rss_retained_pct=%.1f vm_retained_pct=%.1f",
           n, small_bytes + big_bytes, secs, before.rss_kb, peak.rss_kb, after.rss_kb,
           before.size_kb, peak.size_kb, after.size_kb,
           rss_grow > 0 ? 100.0 * (double)(after.rss_kb - before.rss_kb) / rss_grow : 0.0,
           vm_grow > 0 ? 100.0 * (double)(after.size_kb - before.size_kb) / vm_grow : 0.0);
    result_end();
    munmap(ptr, cap * sizeof *ptr);
    munmap(len, cap * sizeof *len);
    return 0;
}
