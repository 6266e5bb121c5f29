/*
 * test_remote_misuse: misuse across threads never crashes the allocator,
 * never gets a wrong diagnosis, and never gives a block two owners.
 *
 *  (a) write after a cross-thread free: in a forked child with stderr on a
 *      pipe, the main thread allocates 64 blocks of 64 bytes; a second
 *      thread frees them all and exits (they are posted in their page's
 *      bitmaps, nothing is written into them); the main thread then writes
 *      0x41 over the first 16 bytes of every block and allocates 64-byte
 *      blocks. Written before the owner takes the blocks back, that must do
 *      no harm (nothing of the allocator's is in a posted block): the child
 *      exits normally, with nothing on stderr. Written after (the main
 *      thread first fills a page of another class, whose slow path takes
 *      the posted blocks back onto their free list, each linked through its
 *      first word), the child must die of SIGABRT (never SIGSEGV), and its
 *      stderr must say "heap corruption" and "free block overwritten".
 *  (b) concurrent double frees: for T = 2, 4, 8, ROUNDS rounds: the main
 *      thread allocates N blocks of 16..512 bytes and fills them; T threads
 *      (half of them with a heap of their own, half without: both remote
 *      paths) wait at a barrier, then each frees every block, in its own
 *      order, at the same moment. stderr goes to a file: exactly N * (T - 1)
 *      "double free" lines must appear (each block freed once, every other
 *      free of it reported), and no other line. Then the main thread
 *      allocates 2N blocks and fills them: no two may be the same address,
 *      and every pattern must be intact at the end (no block has two owners).
 *  (c) stale frees racing with memory return: the main thread, 100 times,
 *      allocates 8 MiB of 8000-byte blocks (new segments), frees
 *      them (the emptied segments go back to the system) and publishes the
 *      freed addresses; a second thread frees, at random, published address
 *      + 16 all the while (inside a block whatever the memory became, so
 *      never a valid free, always reported: stderr is discarded), so that
 *      some of its frees meet a segment being given back. Nothing may crash
 *      (the allocator used to read the header of a segment it had just
 *      unmapped: SIGSEGV in about a third of the runs); segments must have
 *      gone back meanwhile; the allocator works after.
 *  (d) the same as (b) with 4 huge blocks of 3 MiB a round: a huge block's
 *      free may give its mapping back while another thread's free of it
 *      reads its header; exactly T - 1 reports per block again.
 *  (e) the same as (b) with the owner among the freeing threads (its free
 *      and another thread's of one block can both pass their checks, and
 *      put the block on its free list and in a posted chain at once); after,
 *      the owner allocates 4N blocks of the same sizes, and every pattern
 *      must be intact, no address twice: exactly T reports per block.
 *  (f) the same instant, forced: RACE_ITERS times, the owner allocates a
 *      block, hands it to another thread that spins for it, waits a random
 *      few hundred cycles and frees it too (so that some frees land inside
 *      the other's check); then it allocates a block of the same class
 *      (the one freed twice, if it may be handed out) and keeps it among
 *      RACE_RING live blocks. No block may be handed out while live,
 *      every pattern must be intact, and exactly RACE_ITERS double frees
 *      reported, with the other thread with a heap of its own or without.
 *      After, with everything freed, RACE_REFILL blocks of the class must
 *      include every block freed by both: none lost (a block refused while
 *      its pending bit was set used to stay off every list).
 *      (The library before the fix aborted with "free block overwritten",
 *      a wrong diagnosis, in every run.)
 * Exits 1 on failure.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memory.h"

static int failures;

#define FAIL(...)                                                                                           \
    do {                                                                                                    \
        printf("FAIL: test_remote_misuse: " __VA_ARGS__);                                                   \
        printf("\n");                                                                                       \
        failures++;                                                                                         \
    } while (0)

/* ---- (a) write after a cross-thread free ---------------------------------------- */

#define UAF_BLOCKS 64
static void *uaf_blocks[UAF_BLOCKS];

static void *free_all(void *arg)
{
    (void)arg;
    free(malloc(32)); /* a heap of its own, as most freeing threads have */
    for (int i = 0; i < UAF_BLOCKS; i++)
        deallocate(uaf_blocks[i]);
    return NULL;
}

/* Blocks of another class that fill its page (64 KiB of 1 KiB blocks): the
 * slow path that follows takes the posted blocks back. */
#define DRAIN_BLOCKS 80

static void uaf_child(int drain_first)
{
    pthread_t t;
    for (int i = 0; i < UAF_BLOCKS; i++)
        uaf_blocks[i] = allocate(64);
    pthread_create(&t, NULL, free_all, NULL);
    pthread_join(t, NULL);
    if (drain_first)
        for (int i = 0; i < DRAIN_BLOCKS; i++)
            allocate(1024);
    for (int i = 0; i < UAF_BLOCKS; i++)
        memset(uaf_blocks[i], 0x41, 16); /* the use after free */
    for (int i = 0; i < 100000; i++)
        if (allocate(64) == NULL)
            break;
    _exit(0); /* not detected */
}

/* Runs uaf_child(drain_first) in a child; returns its status, its stderr's
 * first line in err. */
static int run_uaf_child(int drain_first, char *err, size_t size)
{
    int fds[2];
    if (pipe(fds) != 0) {
        FAIL("pipe");
        return -1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        uaf_child(drain_first);
    }
    close(fds[1]);
    ssize_t n, got = 0;
    while ((n = read(fds[0], err + got, size - 1 - (size_t)got)) > 0)
        got += n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    char *nl = strchr(err, '\n');
    if (nl)
        *nl = 0;
    return status;
}

static void expect_remote_uaf_abort(const char *what)
{
    char err[1024] = {0};
    int status = run_uaf_child(1, err, sizeof err);
    if (status == -1)
        return;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        FAIL("%s: child %s %d (expected SIGABRT), stderr: \"%s\"", what,
             WIFSIGNALED(status) ? "died of signal" : "exited with status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), err);
    else if (strstr(err, "heap corruption") == NULL || strstr(err, "free block overwritten") == NULL)
        FAIL("%s: SIGABRT, but stderr was \"%s\"", what, err);
    else
        printf("  %s: SIGABRT, stderr: %s (ok)\n", what, err);
}

static void expect_remote_uaf_harmless(const char *what)
{
    char err[1024] = {0};
    int status = run_uaf_child(0, err, sizeof err);
    if (status == -1)
        return;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || err[0])
        FAIL("%s: child %s %d (expected a normal exit), stderr: \"%s\"", what,
             WIFSIGNALED(status) ? "died of signal" : "exited with status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), err);
    else
        printf("  %s: no harm, no report (ok)\n", what);
}

/* ---- (b) concurrent double frees ---------------------------------------------- */

#define N 500
#define ROUNDS 40
#define MAX_T 8

static unsigned char *blocks[N];
/* (b): N blocks of 16..512 bytes; (d): 4 huge ones, mappings of their own. */
static int nblocks = N, huge;
static pthread_barrier_t barrier;

struct freer {
    int index;
    int with_heap;
};

static void *free_at_once(void *arg)
{
    struct freer *f = arg;
    if (f->with_heap)
        free(malloc(24));
    pthread_barrier_wait(&barrier);
    /* Each thread its own order, so that frees of one block meet. */
    for (int k = 0; k < nblocks; k++)
        deallocate(blocks[(k * (2 * f->index + 1) + f->index * 37) % nblocks]);
    return NULL;
}

static size_t size_of_block(int i, int round)
{
    if (huge)
        return ((size_t)3 << 20) + (size_t)i * 4096;
    return 16 + (size_t)((i * 131 + round * 17) % 497);
}

static int count_lines(FILE *f, const char *needle, int *others)
{
    char line[512];
    int count = 0;
    *others = 0;
    rewind(f);
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            count++;
        else
            (*others)++;
    return count;
}

/* Puts stderr back (saved) and counts the "double free" lines of log, the
 * others in *others. */
static long end_log(FILE *log, int saved, int *others)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long reported = count_lines(log, "double free", others);
    fclose(log);
    return reported;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* The owner's checks of the blocks (e) allocates after the frees. */
static int check_owner_again(int threads, int round)
{
    static unsigned char *again[4 * N];
    for (int i = 0; i < 4 * N; i++) {
        size_t size = size_of_block(i % nblocks, round);
        again[i] = allocate((unsigned)size);
        memset(again[i], (i * 7) & 0xff, size);
    }
    for (int i = 0; i < 4 * N; i++)
        for (size_t k = 0; k < size_of_block(i % nblocks, round); k++)
            if (again[i][k] != ((i * 7) & 0xff)) {
                FAIL("T=%d and the owner, round %d: block %p overwritten: two owners", threads, round,
                     (void *)again[i]);
                return 0;
            }
    for (int i = 0; i < 4 * N; i++)
        deallocate(again[i]);
    return 1;
}

static void concurrent_double_frees(int threads, int owner_too)
{
    static unsigned char *again[2 * N];
    pthread_t t[MAX_T];
    struct freer f[MAX_T];
    long expected = 0;
    FILE *log = tmpfile();
    int saved = dup(2);
    dup2(fileno(log), 2);

    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < nblocks; i++) {
            blocks[i] = allocate((unsigned)size_of_block(i, round));
            memset(blocks[i], i & 0xff, size_of_block(i, round));
        }
        pthread_barrier_init(&barrier, NULL, (unsigned)(threads + owner_too));
        for (int k = 0; k < threads; k++) {
            f[k] = (struct freer){k, k % 2};
            pthread_create(&t[k], NULL, free_at_once, &f[k]);
        }
        if (owner_too) {
            struct freer me = {threads, 0};
            free_at_once(&me);
        }
        for (int k = 0; k < threads; k++)
            pthread_join(t[k], NULL);
        pthread_barrier_destroy(&barrier);
        expected += (long)nblocks * (threads - 1 + owner_too);
        if (owner_too && !check_owner_again(threads, round)) {
            dup2(saved, 2);
            return;
        }

        for (int i = 0; i < 2 * N; i++) {
            again[i] = allocate(64);
            memset(again[i], (i * 7) & 0xff, 64);
        }
        qsort(again, 2 * N, sizeof again[0], cmp_ptr);
        for (int i = 1; i < 2 * N; i++)
            if (again[i] == again[i - 1]) {
                dup2(saved, 2);
                FAIL("T=%d round %d: the same block %p handed out twice", threads, round, (void *)again[i]);
                return;
            }
        for (int i = 0; i < 2 * N; i++)
            deallocate(again[i]);
    }
    int others;
    long reported = end_log(log, saved, &others);
    if (reported != expected || others != 0)
        FAIL("T=%d: %ld double-free reports (expected %ld) and %d other lines", threads, reported, expected, others);
    else
        printf("  T=%d%s: %d rounds of %d %s blocks freed by every thread at once: %ld double frees reported, "
               "no block handed out twice (ok)\n",
               threads, owner_too ? " and the owner" : "", ROUNDS, nblocks, huge ? "huge" : "small", reported);
}

/* ---- (c) stale frees racing with memory return ---------------------------------- */

#define STALE_BLOCKS 1024 /* of 8000 bytes: two segments or more each round */
#define STALE_ROUNDS 100

static char *volatile stale[STALE_BLOCKS];
static volatile int stale_done;

static void *free_stale(void *arg)
{
    uint32_t r = 12345;
    long n = 0;
    (void)arg;
    while (!stale_done) {
        r = r * 1103515245u + 12345u;
        char *p = stale[(r >> 8) % STALE_BLOCKS];
        if (p) {
            deallocate(p + 16);
            n++;
        }
    }
    return (void *)n;
}

static void stale_frees_racing_with_return(void)
{
    static void *b[STALE_BLOCKS];
    struct memory_stats before, after;
    pthread_t t;
    void *n = NULL;
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    memory_stats(&before);
    pthread_create(&t, NULL, free_stale, NULL);
    for (int round = 0; round < STALE_ROUNDS; round++) {
        /* Not written: a stale free may have freed a block handed out
         * again, and a write into it would be (rightly) reported as a
         * write after a cross-thread free, and abort. */
        for (int i = 0; i < STALE_BLOCKS; i++)
            b[i] = allocate(8000);
        for (int i = 0; i < STALE_BLOCKS; i++) {
            deallocate(b[i]);
            stale[i] = b[i];
        }
    }
    stale_done = 1;
    pthread_join(t, &n);
    memory_stats(&after);
    dup2(saved, 2);
    close(saved);
    close(null);
    void *p = allocate(100);
    long returned = (long)(after.munmap_calls - before.munmap_calls);
    if (!p)
        FAIL("no allocation after the stale frees");
    else if (returned < STALE_ROUNDS / 10)
        FAIL("only %ld mappings went back in %d rounds: the race was not exercised", returned, STALE_ROUNDS);
    else
        printf("  %d rounds of 8 MiB allocated and returned (%ld munmaps) while %ld stale frees ran: no crash (ok)\n",
               STALE_ROUNDS, returned, (long)n);
    deallocate(p);
}

/* ---- (f) the owner's free and another thread's in the same instant ------------- */

#define RACE_ITERS 100000
#define RACE_RING 64
#define RACE_SIZE 48

#define RACE_SEEN 256
#define RACE_REFILL 8192

static void *_Atomic race_block;
static atomic_long race_seq, race_ack;
/* The blocks freed by both threads (distinct addresses, the first RACE_SEEN). */
static void *race_seen[RACE_SEEN];
static int race_nseen;

static void remember(void *b)
{
    for (int i = 0; i < race_nseen; i++)
        if (race_seen[i] == b)
            return;
    if (race_nseen < RACE_SEEN)
        race_seen[race_nseen++] = b;
}

/* After everything is freed: RACE_REFILL blocks of the class, enough to take
 * every free block of its pages, must include every block freed by both
 * threads: none may be lost (a block the allocation refused while its
 * pending bit was set used to stay off every list). Returns how many are
 * missing. */
static int missing_after_refill(void)
{
    static void *refill[RACE_REFILL];
    int missing = 0;
    for (int i = 0; i < RACE_REFILL; i++)
        refill[i] = allocate(RACE_SIZE);
    for (int j = 0; j < race_nseen; j++) {
        int found = 0;
        for (int i = 0; i < RACE_REFILL && !found; i++)
            found = refill[i] == race_seen[j];
        missing += !found;
    }
    for (int i = 0; i < RACE_REFILL; i++)
        deallocate(refill[i]);
    return missing;
}

static void *free_when_handed(void *arg)
{
    if (arg)
        deallocate(allocate(24)); /* a heap of its own, as most freeing threads have */
    for (long s = 1; s <= RACE_ITERS; s++) {
        while (atomic_load_explicit(&race_seq, memory_order_acquire) != s)
            ;
        deallocate(atomic_load_explicit(&race_block, memory_order_relaxed));
        atomic_store_explicit(&race_ack, s, memory_order_release);
    }
    return NULL;
}

static void owner_and_other_at_once(int with_heap)
{
    static unsigned char *ring[RACE_RING];
    static void *more[4096];
    pthread_t t;
    FILE *log = tmpfile();
    int saved = dup(2), ok = 1;
    unsigned r = 1;
    dup2(fileno(log), 2);
    atomic_store(&race_seq, 0);
    atomic_store(&race_ack, 0);
    race_nseen = 0;
    pthread_create(&t, NULL, free_when_handed, with_heap ? &t : NULL);
    for (long s = 1; s <= RACE_ITERS && ok; s++) {
        void *b = allocate(RACE_SIZE);
        remember(b);
        atomic_store_explicit(&race_block, b, memory_order_relaxed);
        atomic_store_explicit(&race_seq, s, memory_order_release);
        r = r * 1103515245u + 12345u;
        for (volatile unsigned k = (r >> 16) & 511; k; k--)
            ;
        deallocate(b);
        while (atomic_load_explicit(&race_ack, memory_order_acquire) != s)
            ;
        unsigned char *c = allocate(RACE_SIZE);
        int slot = (int)(s % RACE_RING);
        for (int i = 0; i < RACE_RING; i++)
            if (ring[i] == c) {
                dup2(saved, 2);
                FAIL("(f) %p handed out while live, iteration %ld", (void *)c, s);
                ok = 0;
            }
        if (ring[slot]) {
            for (int k = 0; k < RACE_SIZE; k++)
                if (ok && ring[slot][k] != (unsigned char)slot) {
                    dup2(saved, 2);
                    FAIL("(f) live block %p overwritten, iteration %ld", (void *)ring[slot], s);
                    ok = 0;
                }
            deallocate(ring[slot]);
        }
        memset(c, slot, RACE_SIZE);
        ring[slot] = c;
    }
    if (!ok)
        _exit(1); /* the other thread may wait forever */
    pthread_join(t, NULL);
    /* Past the head page: the slow path takes back the last posted blocks
     * (and reports the last double frees) before the count. */
    for (int i = 0; i < 4096; i++)
        more[i] = allocate(RACE_SIZE);
    for (int i = 0; i < 4096; i++)
        deallocate(more[i]);
    for (int i = 0; i < RACE_RING; i++) {
        deallocate(ring[i]);
        ring[i] = NULL;
    }
    int others, missing = missing_after_refill();
    long reported = end_log(log, saved, &others);
    if (reported != RACE_ITERS || others != 0)
        FAIL("(f) %ld double-free reports (expected %d) and %d other lines", reported, RACE_ITERS, others);
    else if (missing)
        FAIL("(f) %d of the %d blocks freed by both threads never handed out again: lost", missing, race_nseen);
    else
        printf("  the other thread %s a heap: %d blocks freed by both at once: %ld double frees reported, none "
               "handed out while live, all %d of them handed out again after (ok)\n",
               with_heap ? "with" : "without", RACE_ITERS, reported, race_nseen);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("(a) writes after a cross-thread free\n");
    expect_remote_uaf_harmless("16 bytes of 0x41 over each block freed by another thread, not yet taken back");
    expect_remote_uaf_abort("16 bytes of 0x41 over each block freed by another thread, taken back");
    printf("(b) concurrent double frees\n");
    for (int threads = 2; threads <= MAX_T; threads *= 2)
        concurrent_double_frees(threads, 0);
    printf("(c) stale frees racing with memory return\n");
    stale_frees_racing_with_return();
    printf("(d) concurrent double frees of huge blocks (a freed mapping may go back to the system)\n");
    nblocks = 4;
    huge = 1;
    for (int threads = 2; threads <= MAX_T; threads *= 2)
        concurrent_double_frees(threads, 0);
    printf("(e) concurrent double frees with the owner among the freeing threads\n");
    nblocks = N;
    huge = 0;
    for (int threads = 1; threads < MAX_T; threads *= 2)
        concurrent_double_frees(threads, 1);
    printf("(f) the owner's free and another thread's of one block in the same instant\n");
    owner_and_other_at_once(1);
    owner_and_other_at_once(0);
    if (failures) {
        printf("FAIL: test_remote_misuse: %d failure(s)\n", failures);
        return 1;
    }
    printf("PASS: test_remote_misuse (writes after cross-thread frees harmless, or abort with a report once taken back; concurrent double "
           "frees, the owner's among them, reported exactly, never a block with two owners; stale frees racing with memory return never crash)\n");
    return 0;
}
