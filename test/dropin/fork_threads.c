/*
 * fork_threads: fork() while other threads allocate.
 *
 * Linked with -lmemory (the library's malloc is the program's malloc).
 * A child of fork() has only the thread that called fork; if another thread
 * held one of the allocator's locks at that moment and nothing released it
 * in the child, the child's first allocation that needs the lock waits
 * forever. The library's pthread_atfork handlers must prevent that.
 *
 *  - 8 worker threads allocate and free continuously: mixed sizes, 90% small
 *    (1 .. 2048 bytes), 9% large (16 KiB .. 528 KiB), 1% huge (1 .. 4 MiB),
 *    some realloc'd, each block tagged at both ends and checked when freed;
 *  - meanwhile the main thread forks 50 times (reaping in batches of 10, so
 *    up to 10 children run at once) and a second thread forks 10 times
 *    (fork from a thread other than main, concurrently with main's forks);
 *  - each child sets alarm(10) (a deadlock becomes a failure, not a hang),
 *    then: checks and frees blocks the parent's main thread and an exited
 *    thread allocated before the fork; allocates, checks and frees many
 *    small, large and huge blocks (malloc, calloc, realloc) from its main
 *    thread; starts a new thread that does the same and leaves blocks live
 *    for the child's main thread to check and free; every 10th child also
 *    forks a grandchild that does the same work. The child exits 0 only if
 *    all of it went well (_exit: no atexit handlers of the parent);
 *  - the parent checks every child exited with status 0 (exit status 99:
 *    the child's alarm fired, i.e. it hung), the workers saw no corruption
 *    and no NULL (the first 3 errors of each worker are printed), and
 *    allocation still works after all the forks;
 *  - stderr of the parent and every child goes to a temporary file, which
 *    must stay empty (a "mallocator:" report means a block of ours was not
 *    recognised).
 *
 * The parent itself has alarm(150): if fork() or the workers deadlock in
 * the parent, the program prints FAIL and exits 1 instead of hanging.
 * Output: PASS: fork_threads ... or FAIL: fork_threads: ... lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 8
#define SLOTS 64
#define MAIN_FORKS 50
#define BATCH 10
#define THREAD_FORKS 10
#define PRE_BLOCKS 120
#define CHILD_ALARM 10
#define PARENT_ALARM 150
#define TIMEOUT_STATUS 99
#define MiB ((size_t)1 << 20)

static atomic_int stop_workers;
static atomic_ulong worker_errors;
/* The first few errors of each worker, printed at the end. */
#define WORKER_MSGS 3
static char worker_msg[WORKERS][WORKER_MSGS][160];
static int worker_nmsg[WORKERS];

static void worker_error(int id, const char *what, const void *p, size_t n,
                         size_t new_n)
{
    int e = errno;
    atomic_fetch_add(&worker_errors, 1);
    if (worker_nmsg[id] < WORKER_MSGS)
        snprintf(worker_msg[id][worker_nmsg[id]++], sizeof worker_msg[0][0],
                 "worker %d: %s (block %p of %zu bytes, new size %zu, errno %d)",
                 id, what, p, n, new_n, e);
}
static unsigned long worker_ops[WORKERS];

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* 90% small, 9% large, 1% huge. */
static size_t pick_size(uint32_t *rng)
{
    uint32_t r = xorshift(rng), k = r % 1000, v = r / 1000;
    if (k < 900)
        return 1 + v % 2048;
    if (k < 990)
        return 16 * 1024 + 1 + v % (512 * 1024);
    return MiB + 1 + v % (3 * MiB);
}

static unsigned char pat(size_t i, uint32_t seed)
{
    return (unsigned char)(((uint32_t)i + seed * 0x9E3779B1u) * 2654435761u >> 24);
}

/* Tags the first and last up to 64 bytes of a block (cheap for huge blocks). */
static void tag(unsigned char *p, size_t n, uint32_t seed)
{
    size_t head = n < 64 ? n : 64;
    for (size_t i = 0; i < head; i++)
        p[i] = pat(i, seed);
    for (size_t i = n - head; i < n; i++)
        p[i] = pat(i, seed);
}

static int tag_ok(const unsigned char *p, size_t n, uint32_t seed)
{
    size_t head = n < 64 ? n : 64;
    for (size_t i = 0; i < head; i++)
        if (p[i] != pat(i, seed))
            return 0;
    for (size_t i = n - head; i < n; i++)
        if (p[i] != pat(i, seed))
            return 0;
    return 1;
}

/* Every byte up to 4 KiB; above, every 61st byte and the last one: cheap
 * for blocks of megabytes, and a block that moved or was overwritten still
 * shows. */
static size_t stride(size_t n)
{
    return n <= 4096 ? 1 : 61;
}

static void fill(unsigned char *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i += stride(n))
        p[i] = pat(i, seed);
    if (n)
        p[n - 1] = pat(n - 1, seed);
}

static int fill_ok(const unsigned char *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i += stride(n))
        if (p[i] != pat(i, seed))
            return 0;
    return n == 0 || p[n - 1] == pat(n - 1, seed);
}

/* ---- the parent's worker threads ------------------------------------------ */

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint32_t rng = 0x1234567u + (uint32_t)id * 7919u;
    unsigned char *p[SLOTS] = {0};
    size_t n[SLOTS] = {0};
    uint32_t seed[SLOTS] = {0};
    unsigned long ops = 0;

    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        uint32_t r = xorshift(&rng);
        int i = (int)(r % SLOTS);
        if (p[i] && (r >> 8) % 8 == 0) {
            /* Resize in place or by moving; the kept part keeps its tags
             * only if the size did not shrink, so re-tag afterwards. */
            size_t m = pick_size(&rng);
            unsigned char *q;
            if (!tag_ok(p[i], n[i], seed[i]))
                worker_error(id, "tags changed before realloc", p[i], n[i], m);
            q = realloc(p[i], m);
            if (!q) {
                worker_error(id, "realloc returned NULL", p[i], n[i], m);
                continue;
            }
            /* The head tag survives any resize, the tail tag a growth. */
            if (!tag_ok(q, m < n[i] ? (m < 64 ? m : 64) : n[i], seed[i]))
                worker_error(id, "realloc did not keep the contents", q, n[i], m);
            p[i] = q;
            n[i] = m;
            seed[i] = r;
            tag(q, m, r);
        } else {
            if (p[i]) {
                if (!tag_ok(p[i], n[i], seed[i]))
                    worker_error(id, "tags changed before free", p[i], n[i], 0);
                free(p[i]);
            }
            n[i] = pick_size(&rng);
            p[i] = malloc(n[i]);
            if (!p[i]) {
                worker_error(id, "malloc returned NULL", NULL, n[i], 0);
                continue;
            }
            seed[i] = r;
            tag(p[i], n[i], r);
        }
        ops++;
    }
    for (int i = 0; i < SLOTS; i++)
        if (p[i]) {
            if (!tag_ok(p[i], n[i], seed[i]))
                worker_error(id, "tags changed at the end", p[i], n[i], 0);
            free(p[i]);
        }
    worker_ops[id] = ops;
    return NULL;
}

/* ---- blocks allocated before the forks ------------------------------------- */

struct blocks {
    unsigned char *p[PRE_BLOCKS];
    size_t n[PRE_BLOCKS];
};

static struct blocks pre_main;  /* by the main thread */
static struct blocks pre_donor; /* by a thread that has exited since */

static size_t pre_size(int i)
{
    if (i % 40 == 39)
        return 2 * MiB + 100 * (size_t)i; /* huge */
    if (i % 8 == 7)
        return 20000 + 1000 * (size_t)i; /* large */
    return 1 + 37 * (size_t)i;            /* small */
}

static int make_blocks(struct blocks *b, uint32_t seed)
{
    for (int i = 0; i < PRE_BLOCKS; i++) {
        b->n[i] = pre_size(i);
        b->p[i] = malloc(b->n[i]);
        if (!b->p[i])
            return 0;
        fill(b->p[i], b->n[i], seed + (uint32_t)i);
    }
    return 1;
}

/* Checks and frees the blocks; returns the number that changed. */
static int free_blocks(struct blocks *b, uint32_t seed)
{
    int bad = 0;
    for (int i = 0; i < PRE_BLOCKS; i++) {
        if (!fill_ok(b->p[i], b->n[i], seed + (uint32_t)i))
            bad++;
        free(b->p[i]);
    }
    return bad;
}

static void *donor(void *arg)
{
    (void)arg;
    return make_blocks(&pre_donor, 2000) ? (void *)1 : NULL;
}

/* ---- the children ----------------------------------------------------------- */

static int child_id;

/* Prints a failure line from a child (write(2): no stdio locks needed). */
static void child_say(const char *what)
{
    char buf[256];
    int len = snprintf(buf, sizeof buf, "FAIL: fork_threads: child %d (pid %d): %s\n",
                       child_id, (int)getpid(), what);
    if (len > 0 && write(1, buf, (size_t)len) < 0) { /* nothing to do */ }
}

static void child_alarm(int sig)
{
    (void)sig;
    child_say("timed out after 10 s (deadlock in the allocator?)");
    _exit(TIMEOUT_STATUS);
}

struct work {
    uint32_t seed;
    int errors;
    /* Blocks left live for another thread to check and free. */
    unsigned char *left[16];
    size_t left_n[16];
};

#define CHILD_SMALL 2000

/* Many small, large and huge blocks, live together, checked, freed; calloc
 * must give zeros, realloc must keep contents. */
static void child_work(struct work *w)
{
    static const size_t large_sizes[] = {16385, 20000, 65536, 100000, 300000, 500000};
    static const size_t huge_sizes[] = {MiB + 4096, 2 * MiB, 3 * MiB + 1};
    unsigned char **small = malloc(CHILD_SMALL * sizeof *small);
    unsigned char *large[24], *huge[6];

    if (!small) {
        w->errors++;
        return;
    }
    for (int i = 0; i < CHILD_SMALL; i++) {
        size_t n = 1 + i % 1024;
        small[i] = malloc(n);
        if (!small[i]) {
            w->errors++;
            continue;
        }
        fill(small[i], n, w->seed + (uint32_t)i);
    }
    for (int i = 0; i < 24; i++) {
        size_t n = large_sizes[i % 6];
        large[i] = i % 3 ? malloc(n) : calloc(1, n);
        if (!large[i]) {
            w->errors++;
            continue;
        }
        if (i % 3 == 0)
            for (size_t k = 0; k < n; k += 512)
                if (large[i][k] || large[i][n - 1])
                    w->errors++;
        tag(large[i], n, w->seed + 100 + (uint32_t)i);
    }
    for (int i = 0; i < 6; i++) {
        size_t n = huge_sizes[i % 3];
        huge[i] = malloc(n);
        if (!huge[i]) {
            w->errors++;
            continue;
        }
        fill(huge[i], n, w->seed + 200 + (uint32_t)i);
    }
    /* realloc across kinds, contents kept. */
    {
        size_t n = 100;
        unsigned char *p = malloc(n);
        if (!p)
            w->errors++;
        else {
            fill(p, n, w->seed + 300);
            while (n < 3 * MiB) {
                size_t m = n * 3;
                unsigned char *q = realloc(p, m);
                if (!q) {
                    w->errors++;
                    break;
                }
                if (!fill_ok(q, n, w->seed + 300))
                    w->errors++;
                fill(q, m, w->seed + 300);
                p = q;
                n = m;
            }
            free(p);
        }
    }
    for (int i = 0; i < CHILD_SMALL; i++)
        if (small[i]) {
            if (!fill_ok(small[i], 1 + (size_t)(i % 1024), w->seed + (uint32_t)i))
                w->errors++;
            free(small[i]);
        }
    for (int i = 0; i < 24; i++)
        if (large[i]) {
            if (!tag_ok(large[i], large_sizes[i % 6], w->seed + 100 + (uint32_t)i))
                w->errors++;
            free(large[i]);
        }
    for (int i = 0; i < 6; i++)
        if (huge[i]) {
            if (!fill_ok(huge[i], huge_sizes[i % 3], w->seed + 200 + (uint32_t)i))
                w->errors++;
            free(huge[i]);
        }
    free(small);
    /* Leave some blocks live for another thread. */
    for (int i = 0; i < 16; i++) {
        w->left_n[i] = i % 8 == 7 ? 2 * MiB : i % 4 == 3 ? 40000 : 8 + 50 * (size_t)i;
        w->left[i] = malloc(w->left_n[i]);
        if (w->left[i])
            fill(w->left[i], w->left_n[i], w->seed + 400 + (uint32_t)i);
        else
            w->errors++;
    }
}

static int free_left(struct work *w)
{
    int bad = 0;
    for (int i = 0; i < 16; i++)
        if (w->left[i]) {
            if (!fill_ok(w->left[i], w->left_n[i], w->seed + 400 + (uint32_t)i))
                bad++;
            free(w->left[i]);
        }
    return bad;
}

static void *child_thread(void *arg)
{
    child_work(arg);
    return NULL;
}

/* Returns the exit status of a child (0: all went well). */
static int child_main(int id)
{
    struct work mine = {0}, theirs = {0};
    pthread_t t;
    int bad, failed = 0;

    child_id = id;
    signal(SIGALRM, child_alarm);
    alarm(CHILD_ALARM);

    /* Blocks of the parent: from the forking process's main thread (in a
     * child forked by a thread, a heap whose thread is gone) and from an
     * exited thread. */
    bad = free_blocks(&pre_main, 1000);
    if (bad) {
        child_say("blocks allocated by the parent's main thread changed");
        failed = 1;
    }
    bad = free_blocks(&pre_donor, 2000);
    if (bad) {
        child_say("blocks allocated by an exited thread changed");
        failed = 1;
    }

    mine.seed = 0xC0FFEEu + (uint32_t)id;
    child_work(&mine);
    if (mine.errors) {
        child_say("allocation errors in the child's main thread");
        failed = 1;
    }

    theirs.seed = 0xBEEFu + (uint32_t)id;
    if (pthread_create(&t, NULL, child_thread, &theirs) != 0) {
        child_say("pthread_create failed");
        failed = 1;
    } else {
        pthread_join(t, NULL);
        if (theirs.errors) {
            child_say("allocation errors in a thread created by the child");
            failed = 1;
        }
        if (free_left(&theirs)) {
            child_say("blocks left by the child's thread changed");
            failed = 1;
        }
    }
    if (free_left(&mine)) {
        child_say("blocks left by the child's main thread changed");
        failed = 1;
    }

    if (id % 10 == 0) {
        /* A grandchild. */
        pid_t g = fork();
        if (g == 0) {
            struct work gw = {0};
            child_id = 1000 + id;
            alarm(CHILD_ALARM);
            gw.seed = 0xABCu + (uint32_t)id;
            child_work(&gw);
            _exit(gw.errors || free_left(&gw) ? 1 : 0);
        } else if (g < 0) {
            child_say("fork of a grandchild failed");
            failed = 1;
        } else {
            int st;
            if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                child_say("the grandchild failed");
                failed = 1;
            }
        }
    }
    return failed;
}

/* ---- the parent --------------------------------------------------------------- */

static int failures;
static int err_fd = -1; /* stderr of the parent and all children, captured */

/* Copies what was captured from stderr to stdout (async-signal-safe). */
static void dump_stderr(void)
{
    char buf[1024];
    ssize_t n;
    off_t off = 0;

    while (err_fd >= 0 && (n = pread(err_fd, buf, sizeof buf, off)) > 0) {
        if (write(1, buf, (size_t)n) < 0)
            break;
        off += n;
    }
}

static void parent_alarm(int sig)
{
    static const char msg[] = "FAIL: fork_threads: the parent did not finish in "
                              "150 s (deadlock?); stderr so far:\n";
    (void)sig;
    if (write(1, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
    dump_stderr();
    _exit(1);
}

/* Waits for a child; returns 1 if it exited with status 0. */
static int reap(pid_t pid, int id, const char *who)
{
    int st;
    pid_t r;

    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r != pid) {
        printf("FAIL: fork_threads: waitpid(child %d of %s): %s\n", id, who,
               strerror(errno));
        return 0;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 1;
    if (WIFEXITED(st) && WEXITSTATUS(st) == TIMEOUT_STATUS)
        printf("FAIL: fork_threads: child %d of %s hung (its alarm(%d) fired)\n", id,
               who, CHILD_ALARM);
    else if (WIFEXITED(st))
        printf("FAIL: fork_threads: child %d of %s exited with status %d\n", id, who,
               WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("FAIL: fork_threads: child %d of %s killed by signal %d (%s)\n", id,
               who, WTERMSIG(st), strsignal(WTERMSIG(st)));
    return 0;
}

static atomic_int thread_fork_failures;

/* Forks from a thread other than main, while main forks too. */
static void *forker(void *arg)
{
    (void)arg;
    for (int i = 0; i < THREAD_FORKS; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_main(100 + i));
        if (pid < 0) {
            printf("FAIL: fork_threads: fork in a thread: %s\n", strerror(errno));
            atomic_fetch_add(&thread_fork_failures, 1);
            continue;
        }
        if (!reap(pid, 100 + i, "a thread"))
            atomic_fetch_add(&thread_fork_failures, 1);
        usleep(3000);
    }
    return NULL;
}

/* Options that print on stderr or inject failures would break the checks
 * (stderr must stay empty, every allocation must succeed): if one is set,
 * run again without them. Other MALLOCATOR_* options (e.g. SECURE) stay. */
static void drop_output_options(char **argv)
{
    static const char *const names[] = {"MALLOCATOR_ON_ERROR", "MALLOCATOR_STATS",
                                        "MALLOCATOR_VERBOSE", "MALLOCATOR_FAIL_MMAP"};
    int found = 0;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (getenv(names[i])) {
            unsetenv(names[i]);
            found = 1;
        }
    if (found) {
        printf("(running again without MALLOCATOR_ON_ERROR/STATS/VERBOSE/FAIL_MMAP)\n");
        execv("/proc/self/exe", argv);
        printf("FAIL: %s: execv(/proc/self/exe): %s\n", argv[0], strerror(errno));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    pthread_t workers[WORKERS], forker_thread, d;
    void *donor_ok = NULL;
    pid_t batch[BATCH];
    int batch_ids[BATCH], nbatch = 0, passed = 0, grandchildren = 0;
    unsigned long total_ops = 0;
    struct timespec t0, t1;

    setvbuf(stdout, NULL, _IONBF, 0);
    (void)argc;
    drop_output_options(argv);
    {
        /* stderr to a file: the library must report nothing. */
        char name[] = "/tmp/fork_threads.XXXXXX";
        err_fd = mkstemp(name);
        if (err_fd < 0 || unlink(name) != 0 || dup2(err_fd, 2) < 0) {
            printf("FAIL: fork_threads: capturing stderr: %s\n", strerror(errno));
            return 1;
        }
    }
    signal(SIGALRM, parent_alarm);
    alarm(PARENT_ALARM);
    clock_gettime(CLOCK_MONOTONIC, &t0);

    if (!make_blocks(&pre_main, 1000)) {
        printf("FAIL: fork_threads: malloc failed before forking\n");
        return 1;
    }
    if (pthread_create(&d, NULL, donor, NULL) != 0 || pthread_join(d, &donor_ok) != 0 ||
        !donor_ok) {
        printf("FAIL: fork_threads: the donor thread failed\n");
        return 1;
    }

    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&workers[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            printf("FAIL: fork_threads: pthread_create: %s\n", strerror(errno));
            return 1;
        }
    usleep(20000); /* let the workers get going */
    if (pthread_create(&forker_thread, NULL, forker, NULL) != 0) {
        printf("FAIL: fork_threads: pthread_create (forker): %s\n", strerror(errno));
        return 1;
    }

    for (int i = 0; i < MAIN_FORKS; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_main(i));
        if (pid < 0) {
            printf("FAIL: fork_threads: fork: %s\n", strerror(errno));
            failures++;
        } else {
            batch[nbatch] = pid;
            batch_ids[nbatch++] = i;
        }
        if (nbatch == BATCH || i == MAIN_FORKS - 1) {
            for (int k = 0; k < nbatch; k++) {
                if (reap(batch[k], batch_ids[k], "main"))
                    passed++;
                else
                    failures++;
            }
            nbatch = 0;
        }
        usleep(2000);
    }
    pthread_join(forker_thread, NULL);
    failures += atomic_load(&thread_fork_failures);

    atomic_store(&stop_workers, 1);
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(workers[i], NULL);
        total_ops += worker_ops[i];
    }
    if (atomic_load(&worker_errors)) {
        printf("FAIL: fork_threads: the workers saw %lu corrupt blocks or NULLs\n",
               atomic_load(&worker_errors));
        for (int i = 0; i < WORKERS; i++)
            for (int k = 0; k < worker_nmsg[i]; k++)
                printf("  %s\n", worker_msg[i][k]);
        failures++;
    }
    if (free_blocks(&pre_main, 1000) || free_blocks(&pre_donor, 2000)) {
        printf("FAIL: fork_threads: the parent's pre-fork blocks changed\n");
        failures++;
    }
    {
        /* The parent still allocates after all of it. */
        struct work w = {0};
        w.seed = 77;
        child_work(&w);
        if (w.errors || free_left(&w)) {
            printf("FAIL: fork_threads: allocation in the parent after the forks\n");
            failures++;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    {
        char buf[4096];
        ssize_t n = pread(err_fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            printf("FAIL: fork_threads: output on stderr (parent or children):\n");
            dump_stderr();
            failures++;
        }
    }
    for (int i = 0; i < MAIN_FORKS; i++)
        grandchildren += i % 10 == 0;
    for (int i = 0; i < THREAD_FORKS; i++)
        grandchildren += (100 + i) % 10 == 0;

    printf("forks: %d from the main thread (%d exited 0), %d from a second thread "
           "(%d failed), %d grandchildren; worker threads: %d, %lu allocations; "
           "%.1f s\n",
           MAIN_FORKS, passed, THREAD_FORKS, atomic_load(&thread_fork_failures),
           grandchildren, WORKERS, total_ops,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    if (failures) {
        printf("FAIL: fork_threads: %d failures\n", failures);
        return 1;
    }
    printf("PASS: fork_threads (%d children exited 0, no deadlock, no corruption)\n",
           MAIN_FORKS + THREAD_FORKS);
    return 0;
}
