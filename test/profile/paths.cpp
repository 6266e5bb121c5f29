/* Heap profiler test program: one call site per allocation path (small,
 * large and huge malloc, calloc, aligned requests, realloc that moves, that
 * grows in place and that grows by mremap, C++ new of each kind), each
 * holding a known number of blocks of a known size. With all of them live
 * the profile is written on demand (memory_profile_dump(argv[1])); then the
 * small, large and huge malloc sites leak and the rest are freed, for the
 * exit profile (MALLOCATOR_PROFILE) and the leak report (MALLOCATOR_LEAKS=1).
 *
 * argv[2] receives the truth, one line per site: its function, the number
 * of blocks, their size, and whether they leak. (Sizes that C's calloc and
 * realloc take are multiples of 16: the profile counts theirs rounded up to
 * one, the size of the 16-aligned block they get.) run.sh gives it to check.py,
 * which compares each site's estimate with it. The program checks that each
 * path is the one it claims (realloc in place stayed in place) and exits
 * non-zero if not.
 *
 * Counts: with MALLOCATOR_PROFILE_RATE=16384, each site's standard error is
 * at most 3.2 % of its bytes (N p / (1 - p) >= 1000 for blocks sampled with
 * chance p), so that check.py's bound (the binomial tail of chance 6e-7) is
 * 16 % or less. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#include "memory.h"

namespace {

struct Site {
    const char *name;
    size_t count, size;
    bool leaks;
    void **blocks;
    void (*release)(void *);
};

/* Huge blocks: above LARGE_MAX on both widths (8 MiB on x86_64, 4 MiB on
 * i686). */
const size_t HUGE = 9000000;

int failures;

void fail(const char *what)
{
    fprintf(stderr, "paths: %s\n", what);
    failures++;
}

void **table(size_t count)
{
    void **t = static_cast<void **>(calloc(count, sizeof(void *)));
    if (!t) {
        fprintf(stderr, "paths: out of memory\n");
        exit(1);
    }
    return t;
}

void release_free(void *p) { free(p); }
void release_delete(void *p) { delete[] static_cast<char *>(p); }
void release_delete_aligned(void *p) { operator delete[](p, std::align_val_t(128)); }

/* Each block's first byte is written, so that the site's call is a call,
 * not a tail call that would leave the site off the stack. */
void *touch(void *p)
{
    if (!p) {
        fprintf(stderr, "paths: out of memory\n");
        exit(1);
    }
    *static_cast<char *>(p) = 1;
    return p;
}

} // namespace

extern "C" {

__attribute__((noinline)) void *site_small(size_t n) { return touch(malloc(n)); }
__attribute__((noinline)) void *site_large(size_t n) { return touch(malloc(n)); }
__attribute__((noinline)) void *site_huge(size_t n) { return touch(malloc(n)); }
__attribute__((noinline)) void *site_calloc(size_t n) { return touch(calloc(1, n)); }
__attribute__((noinline)) void *site_aligned_alloc(size_t n) { return touch(aligned_alloc(64, n)); }

__attribute__((noinline)) void *site_memalign(size_t n)
{
    void *p = NULL;
    return touch(posix_memalign(&p, 65536, n) == 0 ? p : NULL);
}

__attribute__((noinline)) void *site_realloc_moves(size_t n)
{
    void *p = touch(malloc(100));
    return touch(realloc(p, n));
}

/* How many of each in-place site's reallocs kept the block where it was. */
static size_t stayed_small, stayed_large;

__attribute__((noinline)) void *site_realloc_small(size_t n)
{
    void *p = touch(malloc(1000));
    void *q = touch(realloc(p, n));
    stayed_small += q == p;
    return q;
}

/* Shrunk first, so that the pages it grows into are free (a large block
 * shrinks in place, and its freed tail is the run right after it). */
__attribute__((noinline)) void *site_realloc_large(size_t n)
{
    void *p = touch(malloc(n));
    void *q = touch(realloc(p, 40000));
    void *r = touch(realloc(q, n));
    stayed_large += p == q && q == r;
    return r;
}

__attribute__((noinline)) void *site_realloc_huge(size_t n)
{
    void *p = touch(malloc(HUGE));
    return touch(realloc(p, n));
}

__attribute__((noinline)) void *site_new(size_t n) { return touch(new char[n]); }
__attribute__((noinline)) void *site_new_large(size_t n) { return touch(new char[n]); }
__attribute__((noinline)) void *site_new_aligned(size_t n) { return touch(new (std::align_val_t(128)) char[n]); }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s LIVE_PROFILE TRUTH_FILE\n", argv[0]);
        return 2;
    }
    Site sites[] = {
        {"site_small", 100000, 200, true, nullptr, release_free},
        {"site_large", 100, 40000, true, nullptr, release_free},
        {"site_huge", 4, HUGE, true, nullptr, release_free},
        {"site_calloc", 5000, 3008, false, nullptr, release_free},
        {"site_aligned_alloc", 32000, 512, false, nullptr, release_free},
        {"site_memalign", 40, 100000, false, nullptr, release_free},
        {"site_realloc_moves", 3000, 5008, false, nullptr, release_free},
        {"site_realloc_small", 16000, 1008, false, nullptr, release_free},
        {"site_realloc_large", 50, 60000, false, nullptr, release_free},
        {"site_realloc_huge", 3, 12000000, false, nullptr, release_free},
        {"site_new", 55000, 300, false, nullptr, release_delete},
        {"site_new_large", 100, 50000, false, nullptr, release_delete},
        {"site_new_aligned", 23000, 700, false, nullptr, release_delete_aligned},
    };
    void *(*const calls[])(size_t) = {
        site_small, site_large, site_huge, site_calloc, site_aligned_alloc, site_memalign, site_realloc_moves,
        site_realloc_small, site_realloc_large, site_realloc_huge, site_new, site_new_large, site_new_aligned,
    };
    static_assert(sizeof calls / sizeof *calls == sizeof sites / sizeof *sites, "a call per site");
    for (Site &s : sites)
        s.blocks = table(s.count);
    /* Interleaved, one block of each site a round, as a program's phases
     * mix them. */
    for (size_t i = 0;; i++) {
        bool more = false;
        for (size_t k = 0; k < sizeof sites / sizeof *sites; k++) {
            if (i < sites[k].count) {
                sites[k].blocks[i] = calls[k](sites[k].size);
                more = true;
            }
        }
        if (!more)
            break;
    }
    /* A large block shrinks and grows back in place, always. A small block
     * stays in its class unless it was sampled at its malloc: a sample lives
     * in the large allocator, and moves when it is made small again (at
     * this rate 1 - e^(-1000/16384), about 6 %). */
    if (stayed_large != sites[8].count || stayed_small < sites[7].count * 3 / 4) {
        fprintf(stderr, "paths: in place: %zu of %zu small, %zu of %zu large\n", stayed_small, sites[7].count,
                stayed_large, sites[8].count);
        failures++;
    }
    FILE *truth = fopen(argv[2], "w");
    if (!truth) {
        fail("cannot write the truth file");
        return 1;
    }
    for (const Site &s : sites)
        fprintf(truth, "%s %zu %zu %s\n", s.name, s.count, s.size, s.leaks ? "leaks" : "freed");
    fclose(truth);
    if (memory_profile_dump(argv[1]) != 0)
        fail("memory_profile_dump failed");
    for (const Site &s : sites) {
        for (size_t i = 0; i < s.count; i++) {
            if (*static_cast<char *>(s.blocks[i]) != 1)
                fail("a block was overwritten");
            if (!s.leaks)
                s.release(s.blocks[i]);
        }
        free(s.blocks); /* the leaking blocks stay reachable from no stack */
    }
    return failures != 0;
}
