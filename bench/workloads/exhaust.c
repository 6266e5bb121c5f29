/*
 * exhaust: the seed's test 6 with malloc. Allocates random sizes 1..256
 * (xorshift32, the seed test's seed) until malloc returns NULL, which must
 * come with errno == ENOMEM. Nothing is freed on the way and the blocks are
 * not touched, except one byte in every 1000th block. Every 64th pointer is
 * kept; afterwards the written bytes are checked, the kept blocks freed and
 * malloc(64) must succeed again; free_seconds and rss_end_kb describe that
 * clean-up (the kept blocks are scattered over the whole heap).
 *
 * 64-bit: RLIMIT_AS is lowered to `limit_mb` (default 1024 MiB) first.
 * 32-bit: the real address space (limit_mb=0), unless limit_mb is given.
 *
 *   exhaust [limit_mb=N] [time_limit=300]
 */
#include <sys/resource.h>

#include "common.h"

#define KEEP_EVERY 64
#define WRITE_EVERY 1000
#define KEEP_MAX (1u << 20)

static void *keep[KEEP_MAX];

int main(int argc, char **argv)
{
    static const char *const known[] = {"limit_mb", "time_limit", NULL};
    args_init(argc, argv, known);
    long long limit_mb = arg_ll("limit_mb", sizeof(void *) == 8 ? 1024 : 0);
    double time_limit = (double)arg_ll("time_limit", 300);
    unsigned long long total = 0;
    unsigned long count = 0, nkeep = 0;
    uint32_t x = 2463534242u;
    void *p;

    setvbuf(stdout, NULL, _IONBF, 0);
    if (limit_mb > 0) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_AS, &rl) != 0)
            fail("getrlimit: %s", strerror(errno));
        rlim_t want = (rlim_t)limit_mb << 20;
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > want) {
            rl.rlim_cur = want;
            if (setrlimit(RLIMIT_AS, &rl) != 0)
                fail("setrlimit(RLIMIT_AS, %lld MiB): %s", limit_mb, strerror(errno));
        }
    }

    int err;
    double t0 = now();
    for (;;) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        unsigned size = x % 256 + 1;
        errno = 0;
        p = malloc(size);
        if (p == NULL)
            break;
        if (count % WRITE_EVERY == 0)
            *(volatile unsigned char *)p = (unsigned char)(count / WRITE_EVERY);
        if (count % KEEP_EVERY == 0 && nkeep < KEEP_MAX)
            keep[nkeep++] = p;
        count++;
        total += size;
        if ((count & 0xFFFFF) == 0 && now() - t0 > time_limit)
            fail("exhaust: no NULL after %.0f s (%lu blocks, %llu bytes)", time_limit, count,
                 total);
    }
    err = errno;
    double secs = now() - t0;
    vmstat_t v = vmstat();

    if (err != ENOMEM)
        fail("exhaust: errno after NULL is %d, expected ENOMEM", err);
    if (count == 0)
        fail("exhaust: the first malloc failed");
    for (unsigned long k = 0; k < nkeep; k++) {
        unsigned long idx = k * KEEP_EVERY;
        if (idx % WRITE_EVERY == 0 &&
            *(volatile unsigned char *)keep[k] != (unsigned char)(idx / WRITE_EVERY))
            fail("exhaust: block %lu (%p) lost its contents", idx, keep[k]);
    }
    double t1 = now();
    for (unsigned long k = 0; k < nkeep; k++)
        free(keep[k]);
    p = malloc(64);
    if (p == NULL)
        fail("exhaust: malloc(64) after OOM and frees returned NULL");
    memset(p, 0x5A, 64);
    free(p);
    double free_secs = now() - t1;
    vmstat_t end = vmstat();

    result_begin("exhaust");
    printf(" limit_mb=%lld blocks=%lu bytes=%llu seconds=%.6f rss_kb=%ld vmsize_kb=%ld "
           "vmpeak_kb=%ld free_seconds=%.6f rss_end_kb=%ld hwm_end_kb=%ld",
           limit_mb, count, total, secs, v.rss_kb, v.size_kb, v.peak_kb, free_secs, end.rss_kb,
           end.hwm_kb);
    result_end();
    return 0;
}
