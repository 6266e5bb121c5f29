/* Heap profiler test program: three call sites allocate 60, 30 and 10 % of
 * the bytes. With every block live, the profile is written on demand
 * (memory_profile_dump(argv[1])); then the 60 % and 30 % blocks are freed and
 * the 10 % ones leak, for the exit profile (MALLOCATOR_PROFILE) and the leak
 * report (MALLOCATOR_LEAKS=1). run.sh checks what the tools make of them.
 *
 * Built with plain -O2 -g, as a user's program would be. Each site writes
 * into its block, so that its call of malloc is a call, not a tail call that
 * would leave the site off the stack. */
#include <stdio.h>
#include <stdlib.h>

#include "memory.h"

/* 30 MB in all: with MALLOCATOR_PROFILE_RATE=4096, about 7,300 samples, so
 * that a share's standard error, sqrt(p(1-p)/n), is under 0.6 points and the
 * test's +-3 points hold by five of them. */
enum { ROUNDS = 30000, SIXTY = 600, THIRTY = 300, TEN = 100 };

static char *sixty[ROUNDS], *thirty[ROUNDS], *ten[ROUNDS];

__attribute__((noinline)) char *site_sixty(void)
{
    char *p = malloc(SIXTY);
    if (p) p[0] = 6;
    return p;
}

__attribute__((noinline)) char *site_thirty(void)
{
    char *p = malloc(THIRTY);
    if (p) p[0] = 3;
    return p;
}

__attribute__((noinline)) char *site_ten(void)
{
    char *p = malloc(TEN);
    if (p) p[0] = 1;
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIVE_PROFILE_PATH\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < ROUNDS; i++) {
        sixty[i] = site_sixty();
        thirty[i] = site_thirty();
        ten[i] = site_ten();
        if (!sixty[i] || !thirty[i] || !ten[i]) {
            fprintf(stderr, "sites: out of memory at round %d\n", i);
            return 1;
        }
    }
    if (memory_profile_dump(argv[1]) != 0) {
        fprintf(stderr, "sites: memory_profile_dump(%s) failed\n", argv[1]);
        return 1;
    }
    long sum = 0;
    for (int i = 0; i < ROUNDS; i++) {
        sum += sixty[i][0] + thirty[i][0] + ten[i][0];
        free(sixty[i]);
        free(thirty[i]);
    }
    if (sum != 10L * ROUNDS) {
        fprintf(stderr, "sites: blocks overwritten (sum %ld)\n", sum);
        return 1;
    }
    return 0; /* the ten[] blocks leak */
}
