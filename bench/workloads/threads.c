/*
 * threads: `threads` threads, each running its own working set (as in
 * workset: `live` blocks, replace a random one per step, sizes in [min, max]
 * log-uniform, contents checked). All threads start together at a barrier;
 * the time is from the first thread's start to the last thread's end. Fixed work per thread, so
 * perfect scaling doubles ops_per_sec when the threads double (up to the
 * number of cores).
 *
 *   threads [threads=2] [live=2000] [iters=N per thread] [min=8] [max=1024] [seed=1]
 */
#include <pthread.h>

#include "common.h"

static size_t g_live, g_lo, g_hi;
static long long g_iters;
static uint64_t g_seed;
static pthread_barrier_t g_barrier;

typedef struct {
    int id;
    uint64_t check;
    double start, end; /* each thread's own clock readings */
} job_t;

static void *worker(void *arg)
{
    job_t *job = arg;
    rng_t r;
    rng_seed(&r, g_seed * 1000003 + (uint64_t)job->id);
    void **ptr = xmalloc(g_live * sizeof *ptr);
    size_t *len = xmalloc(g_live * sizeof *len);
    uint64_t check = 0, next_tag = ((uint64_t)job->id << 40) + 1;

    pthread_barrier_wait(&g_barrier);
    job->start = now();
    for (size_t i = 0; i < g_live; i++) {
        len[i] = rand_size(&r, g_lo, g_hi);
        ptr[i] = xmalloc(len[i]);
        fill_block(ptr[i], len[i], next_tag + i);
    }
    /* the tag of block i is its (thread, generation) number; keep it in
     * the block's own head so no third array is needed */
    for (long long n = 0; n < g_iters; n++) {
        size_t i = rng_below(&r, (uint32_t)g_live);
        uint64_t t;
        if (len[i] >= 9) {
            memcpy(&t, ptr[i], 8);
            if ((t >> 40) != (uint64_t)job->id)
                fail("threads: block %p of thread %d holds a tag of thread %llu", ptr[i],
                     job->id, (unsigned long long)(t >> 40));
            check_block(ptr[i], len[i], t, "threads");
        }
        free(ptr[i]);
        len[i] = rand_size(&r, g_lo, g_hi);
        ptr[i] = xmalloc(len[i]);
        fill_block(ptr[i], len[i], next_tag + g_live + (uint64_t)n);
        check += len[i];
    }
    for (size_t i = 0; i < g_live; i++)
        free(ptr[i]);
    job->end = now();
    free(ptr);
    free(len);
    job->check = check;
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"threads", "live", "iters", "min", "max", "seed", NULL};
    args_init(argc, argv, known);
    int nthreads = (int)arg_ll("threads", 2);
    g_live = (size_t)arg_ll("live", 2000);
    g_iters = arg_ll("iters", 2000000);
    g_lo = (size_t)arg_ll("min", 8);
    g_hi = (size_t)arg_ll("max", 1024);
    g_seed = (uint64_t)arg_ll("seed", 1);
    if (nthreads < 1 || nthreads > 1024)
        fail("threads=%d out of range", nthreads);

    pthread_t *tid = xmalloc((size_t)nthreads * sizeof *tid);
    job_t *jobs = xmalloc((size_t)nthreads * sizeof *jobs);
    pthread_barrier_init(&g_barrier, NULL, (unsigned)nthreads + 1);
    for (int t = 0; t < nthreads; t++) {
        jobs[t].id = t;
        jobs[t].check = 0;
        if (pthread_create(&tid[t], NULL, worker, &jobs[t]) != 0)
            fail("pthread_create failed");
    }
    pthread_barrier_wait(&g_barrier);
    uint64_t check = 0;
    double t0 = 0, t1 = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(tid[t], NULL);
        check += jobs[t].check;
        if (t == 0 || jobs[t].start < t0)
            t0 = jobs[t].start;
        if (t == 0 || jobs[t].end > t1)
            t1 = jobs[t].end;
    }
    /* from the first thread's start to the last thread's end: the main
     * thread may be woken from the barrier late on a busy machine */
    double secs = t1 - t0;
    long long ops = g_iters * nthreads;

    result_begin("threads");
    printf(" threads=%d ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", nthreads, ops,
           secs, (double)ops / secs, (unsigned long long)check);
    result_end();
    free(tid);
    free(jobs);
    return 0;
}
