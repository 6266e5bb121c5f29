/*
 * churn: a server that keeps starting and ending threads, its blocks
 * migrating between them (in the spirit of mimalloc-bench's mstress).
 * `threads` threads run at a time; the main thread starts a generation of
 * them, joins it and starts the next, `total` threads in all. Each thread
 * keeps `live` blocks and, `iters` times, frees a random one of them and
 * allocates a new one; one step in four it then swaps that block with a
 * random slot of a table shared by every thread (`slots` entries), so
 * that it goes on with a block another thread allocated, a thread that may
 * have exited long ago. At its end a thread frees half its blocks and
 * leaves the other half in the shared table. The main thread frees what
 * is left there at the end.
 *
 * Sizes are powers of two, 16 B to 1 KiB; one block in 100 is 64 times
 * that (1 KiB..64 KiB) and one in 1000 is 1024 times (16 KiB..1 MiB), so
 * large blocks come and go and migrate too.
 *
 * Every block carries its size and tag in its first 16 bytes (and the
 * tag's bytes after them, at its end and in each 4 KiB page); whoever
 * frees it checks them. The draws of each thread depend on its own generator only, so
 * `check` (the bytes allocated) is the same under every allocator; which
 * thread frees which block depends on timing.
 *
 * Time: the first generation's start to the last one's end.
 * ops = mallocs + frees.
 *
 *   churn [threads=2] [total=400] [iters=N per thread] [live=500] [slots=4096] [seed=1]
 */
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

#define MIN_BLOCK 16 /* room for the size and the tag, 8 bytes each */

static size_t g_live, g_slots;
static long long g_iters;
static uint64_t g_seed;
static _Atomic(unsigned char *) *g_table;

typedef struct {
    int id;
    uint64_t check;
    long long frees;
} job_t;

static size_t draw_size(rng_t *r)
{
    size_t size = (size_t)MIN_BLOCK << rng_below(r, 7);
    uint32_t big = rng_below(r, 1000);
    if (big == 0)
        size <<= 10;
    else if (big < 10)
        size <<= 6;
    return size;
}

static unsigned char *new_block(rng_t *r, job_t *job, uint64_t *tag)
{
    size_t size = draw_size(r);
    unsigned char *p = xmalloc(size);
    uint64_t t = ++*tag * 0x9E3779B97F4A7C15ULL + (uint64_t)job->id;
    uint64_t size64 = size;
    memcpy(p, &size64, 8);
    memcpy(p + 8, &t, 8);
    fill_block(p + MIN_BLOCK, size - MIN_BLOCK, t);
    job->check += size;
    return p;
}

/* Checks and frees a block (null: nothing). */
static void release(job_t *job, unsigned char *p)
{
    if (p == NULL)
        return;
    uint64_t size64, t;
    memcpy(&size64, p, 8);
    memcpy(&t, p + 8, 8);
    if (size64 < MIN_BLOCK || size64 > (1024 << 10) || (size64 & (size64 - 1)) != 0)
        fail("churn: block %p has a bad size word %llu", (void *)p, (unsigned long long)size64);
    check_block(p + MIN_BLOCK, (size_t)size64 - MIN_BLOCK, t, "churn");
    free(p);
    job->frees++;
}

static void *worker(void *arg)
{
    job_t *job = arg;
    rng_t r;
    rng_seed(&r, g_seed * 1000003 + (uint64_t)job->id);
    uint64_t tag = (uint64_t)job->id << 32;
    unsigned char **own = xmalloc(g_live * sizeof *own);
    for (size_t i = 0; i < g_live; i++)
        own[i] = new_block(&r, job, &tag);
    for (long long n = 0; n < g_iters; n++) {
        size_t i = rng_below(&r, (uint32_t)g_live);
        release(job, own[i]);
        own[i] = new_block(&r, job, &tag);
        if (rng_below(&r, 4) == 0)
            own[i] = atomic_exchange(&g_table[rng_below(&r, (uint32_t)g_slots)], own[i]);
    }
    for (size_t i = 0; i < g_live; i++) {
        if (rng_below(&r, 2) == 0)
            release(job, own[i]);
        else
            release(job, atomic_exchange(&g_table[rng_below(&r, (uint32_t)g_slots)], own[i]));
    }
    free(own);
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"threads", "total", "iters", "live",
                                        "slots",   "seed",  NULL};
    args_init(argc, argv, known);
    int at_once = (int)arg_ll("threads", 2);
    int total = (int)arg_ll("total", 400);
    g_iters = arg_ll("iters", 20000);
    g_live = (size_t)arg_ll("live", 500);
    g_slots = (size_t)arg_ll("slots", 4096);
    g_seed = (uint64_t)arg_ll("seed", 1);
    if (at_once < 1 || at_once > 1024 || total < at_once || g_live < 1 || g_slots < 1 ||
        g_iters < 0)
        fail("bad arguments");

    g_table = xmalloc(g_slots * sizeof *g_table);
    for (size_t s = 0; s < g_slots; s++)
        atomic_init(&g_table[s], NULL);
    job_t *jobs = xmalloc((size_t)total * sizeof *jobs);
    pthread_t *tid = xmalloc((size_t)at_once * sizeof *tid);
    double t0 = now();
    for (int started = 0; started < total;) {
        int n = total - started < at_once ? total - started : at_once;
        for (int k = 0; k < n; k++) {
            jobs[started + k] = (job_t){.id = started + k};
            if (pthread_create(&tid[k], NULL, worker, &jobs[started + k]) != 0)
                fail("pthread_create failed");
        }
        for (int k = 0; k < n; k++)
            pthread_join(tid[k], NULL);
        started += n;
    }
    job_t last = {.id = total};
    for (size_t s = 0; s < g_slots; s++)
        release(&last, atomic_exchange(&g_table[s], NULL));
    double secs = now() - t0;

    uint64_t check = 0;
    long long frees = last.frees;
    for (int k = 0; k < total; k++) {
        check += jobs[k].check;
        frees += jobs[k].frees;
    }
    long long mallocs = (long long)total * ((long long)g_live + g_iters);
    if (frees != mallocs)
        fail("churn: %lld blocks allocated, %lld freed", mallocs, frees);
    long long ops = mallocs + frees;
    free(tid);
    free(jobs);
    free(g_table);

    result_begin("churn");
    printf(" threads=%d total=%d ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", at_once,
           total, ops, secs, (double)ops / secs, (unsigned long long)check);
    result_end();
    return 0;
}
