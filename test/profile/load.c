/* Heap profiler test program: dumps of a multithreaded program under load.
 *
 *   load PREFIX SIGNALS SECONDS
 *
 * Four worker threads allocate, reallocate and free blocks of every kind
 * (small, large, now and then huge) without pause, each keeping a working
 * set. Meanwhile the main thread sends SIGNALS signals (SIGUSR2, to the
 * workers in turn with pthread_kill, so that the handler lands inside their
 * allocations and frees) and then lets them run for the rest of SECONDS.
 * Run with MALLOCATOR_PROFILE=PREFIX and MALLOCATOR_PROFILE_SIGNAL=USR2
 * and/or MALLOCATOR_PROFILE_INTERVAL.
 *
 * With the signal alone (no interval), each signal's dump must appear:
 * after each signal the program waits for PREFIX.<pid>.<n>.pb.gz, the n-th
 * file, and fails if it does not come within 20 s (a deadlock). With an
 * interval as well, numbers are shared, and it waits for any new file.
 * It prints the pid and the bytes the workers allocated ("pid N bytes B"),
 * and fails if a block was overwritten. run.sh reads every file written. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { WORKERS = 4, SLOTS = 400 };

static volatile int stop;
static pthread_t workers[WORKERS];
static unsigned long long allocated[WORKERS];
static int failures;

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* 80 % small (16 B .. 2 KiB), 19 % large (16 .. 200 KiB), 1 % huge
 * (9 MB: above LARGE_MAX on both widths). */
static size_t pick(uint64_t *s)
{
    uint64_t r = next(s);
    unsigned kind = r % 100;
    if (kind < 80)
        return 16 + (r >> 8) % 2048;
    if (kind < 99)
        return 16384 + (r >> 8) % (200 * 1024);
    return 9000000;
}

static void *work(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (id + 1);
    unsigned char *slot[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    unsigned long long bytes = 0;
    while (!stop) {
        unsigned i = next(&s) % SLOTS;
        if (slot[i] && slot[i][0] != (unsigned char)i) {
            fprintf(stderr, "load: block overwritten\n");
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
        }
        size_t n = pick(&s);
        if (slot[i] && next(&s) % 4 == 0) {
            unsigned char *q = realloc(slot[i], n);
            if (q) {
                slot[i] = q;
                size[i] = n;
                bytes += n;
            }
        } else {
            free(slot[i]);
            slot[i] = malloc(n);
            size[i] = slot[i] ? n : 0;
            bytes += size[i];
        }
        if (slot[i])
            slot[i][0] = (unsigned char)i;
    }
    for (unsigned i = 0; i < SLOTS; i++)
        free(slot[i]);
    allocated[id] = bytes;
    return NULL;
}

/* Numbered files PREFIX.<pid>.<seq>.pb.gz in the prefix's directory. */
static int count_dumps(const char *prefix)
{
    char dir[4096], start[4200];
    const char *slash = strrchr(prefix, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - prefix) : 1, slash ? prefix : ".");
    snprintf(start, sizeof start, "%s.%d.", slash ? slash + 1 : prefix, (int)getpid());
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(start), total = strlen(e->d_name);
        if (strncmp(e->d_name, start, len) == 0 && total > len + 6 && e->d_name[len] >= '0' &&
            e->d_name[len] <= '9' && strcmp(e->d_name + total - 6, ".pb.gz") == 0)
            n++;
    }
    closedir(d);
    return n;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PREFIX SIGNALS SECONDS\n", argv[0]);
        return 2;
    }
    const char *prefix = argv[1];
    int signals = atoi(argv[2]);
    double seconds = atof(argv[3]), start = now();
    int exact = getenv("MALLOCATOR_PROFILE_INTERVAL") == NULL;
    for (int i = 0; i < WORKERS; i++) {
        if (pthread_create(&workers[i], NULL, work, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "load: pthread_create failed\n");
            return 1;
        }
    }
    for (int k = 0; k < signals; k++) {
        int before = count_dumps(prefix);
        pthread_kill(workers[k % WORKERS], SIGUSR2);
        double sent = now();
        /* Without an interval, the k-th file; else any new one. */
        while (exact ? count_dumps(prefix) < k + 1 : count_dumps(prefix) <= before) {
            if (now() - sent > 20) {
                fprintf(stderr, "load: no dump 20 s after signal %d (%d files)\n", k + 1, count_dumps(prefix));
                _exit(1);
            }
            usleep(2000);
        }
        usleep(10000);
    }
    while (now() - start < seconds)
        usleep(10000);
    stop = 1;
    unsigned long long total = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(workers[i], NULL);
        total += allocated[i];
    }
    printf("pid %d bytes %llu\n", (int)getpid(), total);
    return failures != 0;
}
