/*
 * ring: `threads` threads in a ring. Each thread allocates batches of
 * `batch` blocks (sizes in [min, max], log-uniform), tags them and puts each
 * batch into the inbox of the next thread; it takes the batches its
 * predecessor sent from its own inbox, checks and frees them. So every free
 * is cross-thread (with threads >= 2), and each thread's memory returns to
 * it only through other threads' frees.
 *
 * Each inbox is a queue of `inbox` batches (handoff.h); a thread alternates
 * put and take, so the ring cannot deadlock (all inboxes would have to be
 * full at once, which the alternation rules out). Fixed work per thread:
 * `iters` batches sent and received. ops = mallocs + frees of the blocks.
 *
 *   ring [threads=2] [iters=N batches per thread] [batch=64] [inbox=4] [min=8] [max=512] [seed=1]
 */
#include "handoff.h"

static size_t g_batch, g_lo, g_hi;
static long long g_iters;
static uint64_t g_seed;
static int g_threads;
static bqueue_t *g_inbox;
static pthread_barrier_t g_barrier;

typedef struct {
    int id;
    uint64_t check;
    span_t span;
} job_t;

static void *worker(void *arg)
{
    job_t *job = arg;
    rng_t r;
    rng_seed(&r, g_seed * 1000003 + (uint64_t)job->id);
    bqueue_t *next = &g_inbox[(job->id + 1) % g_threads], *mine = &g_inbox[job->id];
    uint64_t check = 0;

    pthread_barrier_wait(&g_barrier);
    job->span.start = now();
    for (long long k = 0; k < g_iters; k++) {
        bqueue_put(next, batch_make(&r, g_batch, g_lo, g_hi, (uint32_t)job->id, (uint32_t)k,
                                    &check));
        batch_t *b = bqueue_take(mine);
        int from = (job->id + g_threads - 1) % g_threads;
        if (b->from != (uint32_t)from || b->seq != (uint32_t)k)
            fail("ring: thread %d received batch %u of thread %u, expected %lld of %d", job->id,
                 b->seq, b->from, k, from);
        batch_free(b, g_lo, g_hi, "ring");
    }
    job->span.end = now();
    job->check = check;
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"threads", "iters", "batch", "inbox", "min",
                                        "max",     "seed",  NULL};
    args_init(argc, argv, known);
    g_threads = (int)arg_ll("threads", 2);
    g_iters = arg_ll("iters", 20000);
    g_batch = (size_t)arg_ll("batch", 64);
    size_t inbox = (size_t)arg_ll("inbox", 4);
    g_lo = (size_t)arg_ll("min", 8);
    g_hi = (size_t)arg_ll("max", 512);
    g_seed = (uint64_t)arg_ll("seed", 1);
    if (g_threads < 1 || g_threads > 1024 || g_batch < 1 || g_lo < 1 || g_lo > g_hi)
        fail("bad arguments");

    pthread_t *tid = xmalloc((size_t)g_threads * sizeof *tid);
    job_t *jobs = xmalloc((size_t)g_threads * sizeof *jobs);
    g_inbox = xmalloc((size_t)g_threads * sizeof *g_inbox);
    for (int t = 0; t < g_threads; t++)
        bqueue_init(&g_inbox[t], inbox, 1);
    pthread_barrier_init(&g_barrier, NULL, (unsigned)g_threads + 1);
    for (int t = 0; t < g_threads; t++) {
        jobs[t].id = t;
        start_thread(&tid[t], worker, &jobs[t]);
    }
    pthread_barrier_wait(&g_barrier);
    uint64_t check = 0;
    span_t span = SPAN_NONE;
    for (int t = 0; t < g_threads; t++) {
        pthread_join(tid[t], NULL);
        check += jobs[t].check;
        span_merge(&span, &jobs[t].span);
    }
    for (int t = 0; t < g_threads; t++)
        bqueue_destroy(&g_inbox[t]);
    double secs = span.end - span.start;
    long long ops = 2 * g_iters * (long long)g_batch * g_threads;

    result_begin("ring");
    printf(" threads=%d batch=%zu ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", g_threads,
           g_batch, ops, secs, (double)ops / secs, (unsigned long long)check);
    result_end();
    free(g_inbox);
    free(tid);
    free(jobs);
    return 0;
}
