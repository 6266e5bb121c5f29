/*
 * larson: a server with thread churn, after the idea of Larson and
 * Krishnan's benchmark. `threads` server slots run at once; each slot owns
 * an array of `live` blocks (sizes in [min, max], log-uniform). The thread
 * serving a slot does `iters` replacements (check a random block, free it,
 * allocate a new one, tag it), then starts a new thread, hands it the array
 * and exits; the slot lives through `gens` such threads. So most frees are
 * of blocks that another thread allocated, a thread that has exited by then,
 * and the allocator sees `threads * gens` thread starts and exits.
 *
 * Time: from before the first thread starts until every slot's last thread has
 * freed its blocks. ops = mallocs + frees.
 *
 *   larson [threads=2] [gens=N] [iters=N per thread] [live=1000] [min=8] [max=512] [seed=1]
 */
#include <semaphore.h>

#include "handoff.h"

static size_t g_live, g_lo, g_hi;
static long long g_iters;
static int g_gens;
static uint64_t g_seed;
static sem_t g_done;

typedef struct {
    int slot, gen;
    unsigned char **ptr;
    size_t *len;
    uint64_t *tag;
    uint64_t next_tag, check;
} slot_t;

static void *serve(void *arg);

static void start_detached(slot_t *s)
{
    pthread_attr_t attr;
    pthread_t tid;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&tid, &attr, serve, s);
    pthread_attr_destroy(&attr);
    if (e != 0)
        fail("pthread_create failed (error %d)", e);
}

static void new_block(slot_t *s, rng_t *r, size_t i)
{
    s->len[i] = rand_size(r, g_lo, g_hi);
    s->ptr[i] = xmalloc(s->len[i]);
    s->tag[i] = s->next_tag++ * 0x9E3779B97F4A7C15ULL;
    fill_block(s->ptr[i], s->len[i], s->tag[i]);
    s->check += s->len[i];
}

static void *serve(void *arg)
{
    slot_t *s = arg;
    rng_t r;
    rng_seed(&r, (g_seed * 1000003 + (uint64_t)s->slot) * 65537 + (uint64_t)s->gen);
    if (s->gen == 0)
        for (size_t i = 0; i < g_live; i++)
            new_block(s, &r, i);
    for (long long n = 0; n < g_iters; n++) {
        size_t i = rng_below(&r, (uint32_t)g_live);
        check_block(s->ptr[i], s->len[i], s->tag[i], "larson");
        free(s->ptr[i]);
        new_block(s, &r, i);
    }
    if (++s->gen < g_gens) {
        start_detached(s); /* the successor continues with the same blocks */
        return NULL;
    }
    for (size_t i = 0; i < g_live; i++) {
        check_block(s->ptr[i], s->len[i], s->tag[i], "larson (end)");
        free(s->ptr[i]);
    }
    sem_post(&g_done);
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {"threads", "gens", "iters", "live",
                                        "min",     "max",  "seed",  NULL};
    args_init(argc, argv, known);
    int slots = (int)arg_ll("threads", 2);
    g_gens = (int)arg_ll("gens", 100);
    g_iters = arg_ll("iters", 10000);
    g_live = (size_t)arg_ll("live", 1000);
    g_lo = (size_t)arg_ll("min", 8);
    g_hi = (size_t)arg_ll("max", 512);
    g_seed = (uint64_t)arg_ll("seed", 1);
    if (slots < 1 || slots > 1024 || g_gens < 1 || g_live < 1 || g_lo < 1 || g_lo > g_hi)
        fail("bad arguments");

    slot_t *s = xmalloc((size_t)slots * sizeof *s);
    sem_init(&g_done, 0, 0);
    double t0 = now();
    for (int k = 0; k < slots; k++) {
        s[k] = (slot_t){.slot = k,
                        .ptr = xmalloc(g_live * sizeof *s[k].ptr),
                        .len = xmalloc(g_live * sizeof *s[k].len),
                        .tag = xmalloc(g_live * sizeof *s[k].tag),
                        .next_tag = ((uint64_t)k << 40) + 1};
        start_detached(&s[k]);
    }
    for (int k = 0; k < slots; k++)
        while (sem_wait(&g_done) != 0)
            if (errno != EINTR)
                fail("sem_wait failed (errno %d)", errno);
    double secs = now() - t0;
    uint64_t check = 0;
    for (int k = 0; k < slots; k++) {
        if (s[k].gen != g_gens)
            fail("larson: slot %d ended after %d of %d threads", k, s[k].gen, g_gens);
        check += s[k].check;
        free(s[k].ptr);
        free(s[k].len);
        free(s[k].tag);
    }
    long long ops = (long long)slots * (2 * (long long)g_live + 2 * g_iters * g_gens);

    result_begin("larson");
    printf(" threads=%d gens=%d ops=%lld seconds=%.6f ops_per_sec=%.0f check=%llu", slots, g_gens,
           ops, secs, (double)ops / secs, (unsigned long long)check);
    result_end();
    free(s);
    return 0;
}
