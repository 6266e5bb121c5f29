/*
 * test5: 10 threads, each 100,000 times:
 *     p = allocate(256); addr[n] = p;
 *     check that no other thread's addr[i] (i != n) equals p;
 *     fill p with a pattern and verify it;
 *     addr[n] = 0; deallocate(p);
 * A thread publishes its pointer before scanning and clears it before
 * deallocating (sequentially consistent atomics), so a pointer seen in
 * another slot is a block handed to two threads at once: a collision.
 * Pattern mismatches (another thread wrote into our block) are counted too.
 * FAIL if any collision, corruption, NULL or misaligned block is seen.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory.h"

#define NTHREADS 10
#define ITERS 100000
#define SIZE 256

static void *addr[NTHREADS];            /* accessed only with __atomic */
static unsigned long collisions;        /* accessed only with __atomic */
static unsigned long corruptions;
static unsigned long nulls;
static unsigned long misaligned;
static unsigned long reported;          /* limit detailed messages */
static pthread_barrier_t start;

static int report_ok(void)
{
    return __atomic_fetch_add(&reported, 1, __ATOMIC_RELAXED) < 10;
}

static void *worker(void *arg)
{
    int n = (int)(intptr_t)arg;
    unsigned long coll = 0, corr = 0, nul = 0, mis = 0;

    pthread_barrier_wait(&start);
    for (unsigned int it = 0; it < ITERS; it++) {
        unsigned char *p = allocate(SIZE);
        unsigned char v = (unsigned char)(n * 25 + it);

        if (p == NULL) {
            nul++;
            continue;
        }
        if ((uintptr_t)p % 16 != 0)
            mis++;

        __atomic_store_n(&addr[n], p, __ATOMIC_SEQ_CST);
        for (int i = 0; i < NTHREADS; i++) {
            if (i == n)
                continue;
            if (__atomic_load_n(&addr[i], __ATOMIC_SEQ_CST) == p) {
                coll++;
                if (report_ok())
                    printf("  collision: thread %d got %p, which thread %d "
                           "holds (iteration %u)\n", n, (void *)p, i, it);
            }
        }

        memset(p, v, SIZE);
        /* Keep the compiler from assuming the bytes are still v. */
        __asm__ __volatile__("" ::: "memory");
        for (int j = 0; j < SIZE; j++) {
            if (p[j] != v) {
                corr++;
                if (report_ok())
                    printf("  corruption: thread %d block %p byte %d is 0x%02x, "
                           "expected 0x%02x (iteration %u)\n", n, (void *)p, j,
                           p[j], v, it);
                break;
            }
        }

        __atomic_store_n(&addr[n], NULL, __ATOMIC_SEQ_CST);
        deallocate(p);
    }

    __atomic_fetch_add(&collisions, coll, __ATOMIC_RELAXED);
    __atomic_fetch_add(&corruptions, corr, __ATOMIC_RELAXED);
    __atomic_fetch_add(&nulls, nul, __ATOMIC_RELAXED);
    __atomic_fetch_add(&misaligned, mis, __ATOMIC_RELAXED);
    return NULL;
}

int main(void)
{
    pthread_t th[NTHREADS];
    struct timespec t0, t1;
    double secs;
    unsigned long pairs = (unsigned long)NTHREADS * ITERS;
    int rc;

    setvbuf(stdout, NULL, _IONBF, 0);

    pthread_barrier_init(&start, NULL, NTHREADS + 1);
    for (int i = 0; i < NTHREADS; i++) {
        rc = pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
        if (rc != 0) {
            printf("FAIL: test5: pthread_create: %s\n", strerror(rc));
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_barrier_wait(&start);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_barrier_destroy(&start);

    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%d threads x %d iterations = %lu allocate/deallocate pairs "
           "(%lu calls) of %d bytes in %.3f s (%.1f M calls/s)\n",
           NTHREADS, ITERS, pairs, 2 * pairs, SIZE, secs,
           secs > 0 ? 2.0 * (double)pairs / secs / 1e6 : 0.0);
    printf("collisions: %lu, corruptions: %lu, NULL returns: %lu, "
           "misaligned: %lu\n", collisions, corruptions, nulls, misaligned);

    if (collisions || corruptions || nulls || misaligned) {
        printf("FAIL: test5: %lu collisions, %lu corrupted blocks, %lu NULLs, "
               "%lu misaligned blocks\n", collisions, corruptions, nulls,
               misaligned);
        return 1;
    }
    printf("PASS: test5 (%lu concurrent allocate/deallocate pairs, no collisions)\n",
           pairs);
    return 0;
}
