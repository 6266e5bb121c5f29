/*
 * prodcons: `pairs` producer threads allocate blocks and hand them to their
 * consumer thread through a lock-free single-producer/single-consumer ring
 * of pointers; the consumer checks each block and frees it. Every free is
 * therefore remote (a thread frees what another thread allocated).
 * Sizes in [min, max], log-uniform. A thread that finds its ring full
 * (producer) or empty (consumer) spins briefly, then yields.
 *
 *   prodcons [pairs=1] [items=N per pair] [min=16] [max=1024] [ring=1024] [seed=1]
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "common.h"

typedef struct {
    _Alignas(64) atomic_size_t head; /* next slot the consumer reads */
    _Alignas(64) atomic_size_t tail; /* next slot the producer writes */
    _Alignas(64) void **slot;
    int id;
    uint64_t check;
    double start, end; /* producer start, consumer end */
} ring_t;

static size_t g_ring, g_lo, g_hi;
static long long g_items;
static uint64_t g_seed;
static pthread_barrier_t g_barrier;

static void backoff(unsigned *spins)
{
    if (++*spins < 64) {
        __asm__ volatile("pause" ::: "memory");
    } else {
        sched_yield();
        *spins = 0;
    }
}

/* block layout: [u32 size][u32 pair][u32 seq] ... tail byte (min size 16) */
static void *producer(void *arg)
{
    ring_t *q = arg;
    rng_t r;
    rng_seed(&r, g_seed * 7919 + (uint64_t)q->id);
    pthread_barrier_wait(&g_barrier);
    q->start = now();
    for (long long i = 0; i < g_items; i++) {
        size_t size = rand_size(&r, g_lo, g_hi);
        unsigned char *p = xmalloc(size);
        uint32_t sz = (uint32_t)size, pair = (uint32_t)q->id;
        uint32_t seq = (uint32_t)i;
        memcpy(p, &sz, 4);
        memcpy(p + 4, &pair, 4);
        memcpy(p + 8, &seq, 4);
        p[size - 1] = (unsigned char)(i ^ 0x5A);
        size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
        unsigned spins = 0;
        while (t - atomic_load_explicit(&q->head, memory_order_acquire) >= g_ring)
            backoff(&spins);
        q->slot[t % g_ring] = p;
        atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    ring_t *q = arg;
    uint64_t check = 0;
    pthread_barrier_wait(&g_barrier);
    for (long long i = 0; i < g_items; i++) {
        size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
        unsigned spins = 0;
        while (atomic_load_explicit(&q->tail, memory_order_acquire) == h)
            backoff(&spins);
        unsigned char *p = q->slot[h % g_ring];
        atomic_store_explicit(&q->head, h + 1, memory_order_release);
        uint32_t sz, pair, seq;
        memcpy(&sz, p, 4);
        memcpy(&pair, p + 4, 4);
        memcpy(&seq, p + 8, 4);
        if (pair != (uint32_t)q->id || seq != (uint32_t)i || sz < g_lo || sz > g_hi ||
            p[sz - 1] != (unsigned char)(i ^ 0x5A))
            fail("prodcons: block %p (pair %d, item %lld) lost its contents", (void *)p,
                 q->id, i);
        check += sz;
        free(p);
    }
    q->check = check;
    q->end = now();
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"pairs", "items", "min", "max", "ring", "seed", NULL};
    args_init(argc, argv, known);
    int pairs = (int)arg_ll("pairs", 1);
    g_items = arg_ll("items", 2000000);
    g_lo = (size_t)arg_ll("min", 16);
    g_hi = (size_t)arg_ll("max", 1024);
    g_ring = (size_t)arg_ll("ring", 1024);
    g_seed = (uint64_t)arg_ll("seed", 1);
    if (pairs < 1 || pairs > 512 || g_lo < 16 || g_ring < 1)
        fail("bad arguments");

    ring_t *q;
    if (posix_memalign((void **)&q, 64, (size_t)pairs * sizeof *q) != 0)
        fail("posix_memalign failed");
    pthread_t *tid = xmalloc(2 * (size_t)pairs * sizeof *tid);
    pthread_barrier_init(&g_barrier, NULL, 2 * (unsigned)pairs + 1);
    for (int k = 0; k < pairs; k++) {
        atomic_init(&q[k].head, 0);
        atomic_init(&q[k].tail, 0);
        q[k].slot = xmalloc(g_ring * sizeof(void *));
        q[k].id = k;
        q[k].check = 0;
        if (pthread_create(&tid[2 * k], NULL, producer, &q[k]) != 0 ||
            pthread_create(&tid[2 * k + 1], NULL, consumer, &q[k]) != 0)
            fail("pthread_create failed");
    }
    pthread_barrier_wait(&g_barrier);
    for (int k = 0; k < 2 * pairs; k++)
        pthread_join(tid[k], NULL);
    uint64_t check = 0;
    double t0 = q[0].start, t1 = q[0].end;
    for (int k = 0; k < pairs; k++) {
        check += q[k].check;
        free(q[k].slot);
        if (q[k].start < t0)
            t0 = q[k].start;
        if (q[k].end > t1)
            t1 = q[k].end;
    }
    double secs = t1 - t0; /* first producer start to last consumer end */
    long long ops = g_items * pairs;

    result_begin("prodcons");
    printf(" pairs=%d ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", pairs, ops, secs,
           (double)ops / secs, (unsigned long long)check);
    result_end();
    free(tid);
    free(q);
    return 0;
}
