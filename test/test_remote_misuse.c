/*
 * test_remote_misuse: misuse across threads never crashes the allocator,
 * never gets a wrong diagnosis, and never gives a block two owners.
 *
 *  (a) write after a cross-thread free: in a forked child with stderr on a
 *      pipe, the main thread allocates 64 blocks of 64 bytes; a second
 *      thread frees them all and exits (its batch goes to the main thread's
 *      inbox); the main thread then writes 0x41 over the first word of every
 *      block (the link of the chain the blocks are posted on), or over the
 *      first 16 bytes, and allocates until it takes the chain back. The child
 *      must die of SIGABRT (never SIGSEGV), and its stderr must say
 *      "heap corruption" and "freed by another thread".
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
 * Exits 1 on failure.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
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
    free(malloc(32)); /* a heap of its own: the frees are batched */
    for (int i = 0; i < UAF_BLOCKS; i++)
        deallocate(uaf_blocks[i]);
    return NULL;
}

static void uaf_child(size_t len)
{
    pthread_t t;
    for (int i = 0; i < UAF_BLOCKS; i++)
        uaf_blocks[i] = allocate(64);
    pthread_create(&t, NULL, free_all, NULL);
    pthread_join(t, NULL);
    for (int i = 0; i < UAF_BLOCKS; i++)
        memset(uaf_blocks[i], 0x41, len); /* the use after free */
    for (int i = 0; i < 100000; i++)
        if (allocate(64) == NULL)
            break;
    _exit(0); /* not detected */
}

static void expect_remote_uaf_abort(size_t len, const char *what)
{
    int fds[2];
    char err[1024] = {0};
    if (pipe(fds) != 0) {
        FAIL("pipe");
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        uaf_child(len);
    }
    close(fds[1]);
    ssize_t n, got = 0;
    while ((n = read(fds[0], err + got, sizeof err - 1 - (size_t)got)) > 0)
        got += n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    char *nl = strchr(err, '\n');
    if (nl)
        *nl = 0;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        FAIL("%s: child %s %d (expected SIGABRT), stderr: \"%s\"", what,
             WIFSIGNALED(status) ? "died of signal" : "exited with status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), err);
    else if (strstr(err, "heap corruption") == NULL || strstr(err, "freed by another thread") == NULL)
        FAIL("%s: SIGABRT, but stderr was \"%s\"", what, err);
    else
        printf("  %s: SIGABRT, stderr: %s (ok)\n", what, err);
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

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void concurrent_double_frees(int threads)
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
        pthread_barrier_init(&barrier, NULL, (unsigned)threads);
        for (int k = 0; k < threads; k++) {
            f[k] = (struct freer){k, k % 2};
            pthread_create(&t[k], NULL, free_at_once, &f[k]);
        }
        for (int k = 0; k < threads; k++)
            pthread_join(t[k], NULL);
        pthread_barrier_destroy(&barrier);
        expected += (long)nblocks * (threads - 1);

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
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    int others;
    long reported = count_lines(log, "double free", &others);
    fclose(log);
    if (reported != expected || others != 0)
        FAIL("T=%d: %ld double-free reports (expected %ld) and %d other lines", threads, reported, expected, others);
    else
        printf("  T=%d: %d rounds of %d %s blocks freed by every thread at once: %ld double frees reported, "
               "no block handed out twice (ok)\n",
               threads, ROUNDS, nblocks, huge ? "huge" : "small", reported);
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

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("(a) writes after a cross-thread free\n");
    expect_remote_uaf_abort(sizeof(void *), "the link word of each freed block");
    expect_remote_uaf_abort(16, "16 bytes of 0x41 over each freed block");
    printf("(b) concurrent double frees\n");
    for (int threads = 2; threads <= MAX_T; threads *= 2)
        concurrent_double_frees(threads);
    printf("(c) stale frees racing with memory return\n");
    stale_frees_racing_with_return();
    printf("(d) concurrent double frees of huge blocks (a freed mapping may go back to the system)\n");
    nblocks = 4;
    huge = 1;
    for (int threads = 2; threads <= MAX_T; threads *= 2)
        concurrent_double_frees(threads);
    if (failures) {
        printf("FAIL: test_remote_misuse: %d failure(s)\n", failures);
        return 1;
    }
    printf("PASS: test_remote_misuse (writes after cross-thread frees abort with a report; concurrent double "
           "frees reported exactly, never a block with two owners; stale frees racing with memory return never crash)\n");
    return 0;
}
