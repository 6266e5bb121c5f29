/*
 * handoff.h -- batches of blocks handed from one thread to another, for the
 * workloads where blocks are freed by a thread other than the one that
 * allocated them (ring, xmalloc).
 *
 * A batch is n blocks of random sizes allocated and tagged by one thread
 * (batch_make); the thread that receives it checks every block's tag and
 * frees the blocks and the batch itself (batch_free). The tag of a block is
 * derived from (sender, batch number, index), all written in the batch, so
 * the receiver can recompute it.
 *
 * A queue (bqueue_t) is a bounded FIFO of batches behind a mutex and two
 * condition variables: any number of threads may put and take. A thread
 * blocks when the queue is full (put) or empty (take), so oversubscribed
 * runs (more threads than CPUs) do not burn their time slices spinning, and
 * runs under valgrind count no spin loops. With batches of 64 blocks or
 * more, the lock is taken once per 64 mallocs and 64 frees.
 */
#ifndef BENCH_HANDOFF_H
#define BENCH_HANDOFF_H

#include <pthread.h>

#include "common.h"

/* ---------------------------------------------------------------- batches */

typedef struct {
    uint32_t from; /* id of the thread that allocated the blocks */
    uint32_t seq;  /* its batch number */
    size_t n;
    struct {
        unsigned char *p;
        size_t len;
    } blk[];
} batch_t;

static inline uint64_t batch_tag(uint32_t from, uint32_t seq, size_t j)
{
    return (((uint64_t)from << 44) ^ ((uint64_t)seq << 12) ^ (uint64_t)j) *
               0x9E3779B97F4A7C15ULL +
           1;
}

/* Allocates a batch of n blocks with sizes in [lo, hi] (log-uniform) and
 * tags each one. Adds the requested bytes to *check. */
static inline batch_t *batch_make(rng_t *r, size_t n, size_t lo, size_t hi, uint32_t from,
                                  uint32_t seq, uint64_t *check)
{
    batch_t *b = xmalloc(sizeof *b + n * sizeof b->blk[0]);
    b->from = from;
    b->seq = seq;
    b->n = n;
    for (size_t j = 0; j < n; j++) {
        size_t len = rand_size(r, lo, hi);
        b->blk[j].len = len;
        b->blk[j].p = xmalloc(len);
        fill_block(b->blk[j].p, len, batch_tag(from, seq, j));
        *check += len;
    }
    return b;
}

/* Checks every block of b (size in [lo, hi], tag intact), frees the
 * blocks and the batch; returns the bytes of the blocks. */
static inline uint64_t batch_free(batch_t *b, size_t lo, size_t hi, const char *what)
{
    uint64_t bytes = 0;
    for (size_t j = 0; j < b->n; j++) {
        size_t len = b->blk[j].len;
        if (len < lo || len > hi)
            fail("%s: batch %u of thread %u has a block of %zu bytes", what, b->seq, b->from,
                 len);
        check_block(b->blk[j].p, len, batch_tag(b->from, b->seq, j), what);
        free(b->blk[j].p);
        bytes += len;
    }
    free(b);
    return bytes;
}

/* ----------------------------------------------------------------- queues */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    batch_t **slot;
    size_t cap, head, count;
    int open_producers; /* bqueue_take returns NULL once 0 and empty */
} bqueue_t;

static inline void bqueue_init(bqueue_t *q, size_t cap, int producers)
{
    if (cap < 1)
        fail("queue capacity %zu", cap);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->slot = xmalloc(cap * sizeof *q->slot);
    q->cap = cap;
    q->head = q->count = 0;
    q->open_producers = producers;
}

static inline void bqueue_destroy(bqueue_t *q)
{
    if (q->count != 0)
        fail("queue destroyed with %zu batches in it", q->count);
    free(q->slot);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->lock);
}

static inline void bqueue_put(bqueue_t *q, batch_t *b)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == q->cap)
        pthread_cond_wait(&q->not_full, &q->lock);
    q->slot[(q->head + q->count) % q->cap] = b;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

/* The oldest batch; waits while the queue is empty and producers are
 * still open; NULL when it is empty and every producer is done. */
static inline batch_t *bqueue_take(bqueue_t *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && q->open_producers > 0)
        pthread_cond_wait(&q->not_empty, &q->lock);
    batch_t *b = NULL;
    if (q->count > 0) {
        b = q->slot[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->lock);
    return b;
}

/* A producer will put no more batches. */
static inline void bqueue_done(bqueue_t *q)
{
    pthread_mutex_lock(&q->lock);
    if (--q->open_producers == 0)
        pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

/* --------------------------------------------------------------- threads */

static inline void start_thread(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    int e = pthread_create(tid, NULL, fn, arg);
    if (e != 0)
        fail("pthread_create failed (error %d)", e);
}

/* Work span of a set of threads, from the earliest start to the latest end:
 * each thread reads the clock itself (the main thread may be woken from a
 * barrier late on a busy machine) and the main thread merges them. */
typedef struct {
    double start, end;
} span_t;

#define SPAN_NONE ((span_t){1e300, -1e300})

static inline void span_merge(span_t *all, const span_t *one)
{
    if (one->start < all->start)
        all->start = one->start;
    if (one->end > all->end)
        all->end = one->end;
}

#endif /* BENCH_HANDOFF_H */
