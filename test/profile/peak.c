/* Heap profiler test program: in-use bytes that rise to a peak and fall.
 * Three sites hold 50, 30 and 20 % of 48 MB at the peak; all of it is freed;
 * then a fourth site allocates 16 MB, which leaks. The profile at the peak
 * (<prefix>.<pid>.peak.pb.gz at exit, and argv[3] through
 * memory_profile_dump_peak) must show the three sites and not the fourth;
 * the exit profile the fourth alone. argv[1] and argv[2] receive the truth
 * of each (check.py's lines: function, blocks, size, held|gone).
 *
 * With MALLOCATOR_PROFILE_RATE=16384 each site's standard error is at most
 * 3.4 % of its bytes (check.py's bound is the binomial tail of chance
 * 6e-7, about 5 of them). */
#include <stdio.h>
#include <stdlib.h>

#include "memory.h"

struct site {
    const char *name;
    size_t count, size;
    char *(*call)(size_t);
    char **blocks;
};

/* Each writes its block, so that its call of malloc is a call. */
static char *touch(char *p)
{
    if (!p) {
        fprintf(stderr, "peak: out of memory\n");
        exit(1);
    }
    p[0] = 1;
    return p;
}

__attribute__((noinline)) char *peak_half(size_t n) { return touch(malloc(n)); }
__attribute__((noinline)) char *peak_third(size_t n) { return touch(malloc(n)); }
__attribute__((noinline)) char *peak_fifth(size_t n) { return touch(malloc(n)); }
__attribute__((noinline)) char *after_peak(size_t n) { return touch(malloc(n)); }

static void truth(const char *path, struct site *sites, int n, int held_from, int held_to)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "peak: cannot write %s\n", path);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        fprintf(f, "%s %zu %zu %s\n", sites[i].name, sites[i].count, sites[i].size,
                i >= held_from && i < held_to ? "held" : "gone");
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PEAK_TRUTH EXIT_TRUTH PEAK_PROFILE\n", argv[0]);
        return 2;
    }
    /* Small blocks (the half, the fifth) and large ones (the third); the
     * fourth site's 16 MB stay below the 48 MB of the peak. */
    struct site sites[] = {
        {"peak_half", 48000, 500, peak_half, NULL},
        {"peak_third", 240, 60000, peak_third, NULL},
        {"peak_fifth", 800, 12000, peak_fifth, NULL},
        {"after_peak", 4000, 4000, after_peak, NULL},
    };
    int n = sizeof sites / sizeof *sites;
    for (int i = 0; i < n; i++) {
        sites[i].blocks = calloc(sites[i].count, sizeof(char *));
        if (!sites[i].blocks) {
            fprintf(stderr, "peak: out of memory\n");
            return 1;
        }
    }
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < sites[i].count; k++)
            sites[i].blocks[k] = sites[i].call(sites[i].size);
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < sites[i].count; k++)
            free(sites[i].blocks[k]);
    for (size_t k = 0; k < sites[3].count; k++)
        sites[3].blocks[k] = sites[3].call(sites[3].size);
    truth(argv[1], sites, n, 0, 3);
    truth(argv[2], sites, n, 3, 4);
    if (memory_profile_dump_peak(argv[3]) != 0) {
        fprintf(stderr, "peak: memory_profile_dump_peak(%s) failed\n", argv[3]);
        return 1;
    }
    return 0; /* the fourth site's blocks leak */
}
