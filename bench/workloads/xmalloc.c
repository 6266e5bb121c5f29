/*
 * xmalloc: in the spirit of xmalloc-test. `pairs` producer threads allocate
 * batches of `batch` blocks (sizes in [min, max], log-uniform), tag them
 * and put them into one shared queue; `pairs` consumer threads take batches
 * from it in whatever order they come, check the blocks and free them. Every
 * free is cross-thread, and a producer's blocks are freed by any of the
 * consumers (unlike prodcons, whose pairs are fixed).
 *
 * The queue (handoff.h) holds up to `queue` batches; producers block when
 * it is full, consumers when it is empty. ops = mallocs + frees of blocks.
 *
 *   xmalloc [pairs=2] [batches=N per producer] [batch=64] [queue=16] [min=8] [max=512] [seed=1]
 */
#include "handoff.h"

static size_t g_batch, g_lo, g_hi;
static long long g_batches;
static uint64_t g_seed;
static bqueue_t g_queue;
static pthread_barrier_t g_barrier;

typedef struct {
    int id;
    uint64_t check;     /* producer: bytes allocated; consumer: bytes freed */
    long long received; /* consumer: batches */
    span_t span;
} job_t;

static void *producer(void *arg)
{
    job_t *job = arg;
    rng_t r;
    rng_seed(&r, g_seed * 7919 + (uint64_t)job->id);
    pthread_barrier_wait(&g_barrier);
    job->span.start = now();
    for (long long k = 0; k < g_batches; k++)
        bqueue_put(&g_queue, batch_make(&r, g_batch, g_lo, g_hi, (uint32_t)job->id,
                                        (uint32_t)k, &job->check));
    bqueue_done(&g_queue);
    job->span.end = now();
    return NULL;
}

static void *consumer(void *arg)
{
    job_t *job = arg;
    pthread_barrier_wait(&g_barrier);
    job->span.start = now();
    batch_t *b;
    while ((b = bqueue_take(&g_queue)) != NULL) {
        job->check += batch_free(b, g_lo, g_hi, "xmalloc");
        job->received++;
    }
    job->span.end = now();
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"pairs", "batches", "batch", "queue",
                                        "min",   "max",     "seed",  NULL};
    args_init(argc, argv, known);
    int pairs = (int)arg_ll("pairs", 2);
    g_batches = arg_ll("batches", 20000);
    g_batch = (size_t)arg_ll("batch", 64);
    size_t queue = (size_t)arg_ll("queue", 16);
    g_lo = (size_t)arg_ll("min", 8);
    g_hi = (size_t)arg_ll("max", 512);
    g_seed = (uint64_t)arg_ll("seed", 1);
    if (pairs < 1 || pairs > 512 || g_batch < 1 || g_lo < 1 || g_lo > g_hi)
        fail("bad arguments");

    int n = 2 * pairs;
    pthread_t *tid = xmalloc((size_t)n * sizeof *tid);
    job_t *jobs = xmalloc((size_t)n * sizeof *jobs);
    bqueue_init(&g_queue, queue, pairs);
    pthread_barrier_init(&g_barrier, NULL, (unsigned)n + 1);
    for (int t = 0; t < n; t++) {
        jobs[t] = (job_t){.id = t / 2};
        start_thread(&tid[t], t % 2 == 0 ? producer : consumer, &jobs[t]);
    }
    pthread_barrier_wait(&g_barrier);
    uint64_t made = 0, freed = 0;
    long long received = 0;
    span_t span = SPAN_NONE;
    for (int t = 0; t < n; t++) {
        pthread_join(tid[t], NULL);
        span_merge(&span, &jobs[t].span);
        if (t % 2 == 0) {
            made += jobs[t].check;
        } else {
            freed += jobs[t].check;
            received += jobs[t].received;
        }
    }
    if (made != freed || received != g_batches * pairs)
        fail("xmalloc: %lld of %lld batches received, %llu of %llu bytes freed", received,
             g_batches * pairs, (unsigned long long)freed, (unsigned long long)made);
    bqueue_destroy(&g_queue);
    double secs = span.end - span.start;
    long long ops = 2 * g_batches * (long long)g_batch * pairs;

    result_begin("xmalloc");
    printf(" pairs=%d batch=%zu ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", pairs,
           g_batch, ops, secs, (double)ops / secs, (unsigned long long)made);
    result_end();
    free(tid);
    free(jobs);
    return 0;
}
