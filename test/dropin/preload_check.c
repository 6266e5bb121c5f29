/*
 * preload_check: an ordinary program for LD_PRELOAD (run_programs.sh).
 *
 * Not linked with -lmemory: it uses plain malloc, calloc, realloc, free,
 * strdup, qsort from 4 threads and prints a deterministic digest of what it
 * built on stdout, so a run with LD_PRELOAD=libmemory.so must print exactly
 * what a run without it prints.
 *
 * Usage: preload_check yes|no
 *   yes: libmemory.so must be loaded and serve malloc:
 *        dlsym(RTLD_DEFAULT, "allocate") is not NULL (only libmemory exports
 *        it) and the malloc the program calls lies in a file whose name
 *        contains "libmemory" (dladdr);
 *   no:  neither holds (the system allocator).
 * What was found goes to stderr ("allocator: ..."). Exit status 0 if the
 * expectation holds and the work checked out, 1 otherwise.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define WORDS 40000

static uint32_t digest[THREADS];
static int errors[THREADS];

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 16777619u;
    return h;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void *work(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint32_t x = 12345u + (uint32_t)t, h = 2166136261u;
    char **w = NULL;
    size_t n = 0, cap = 0;
    char buf[64];

    /* Strings of many sizes in an array grown with realloc. */
    for (int i = 0; i < WORDS; i++) {
        int len;
        x = x * 69069u + 1;
        len = snprintf(buf, sizeof buf, "%u-%0*d", x % 100000, (int)(x % 40), i);
        if (n == cap) {
            char **nw;
            cap = cap ? cap * 2 : 16;
            nw = realloc(w, cap * sizeof *w);
            if (!nw) {
                errors[t]++;
                break;
            }
            w = nw;
        }
        w[n] = strdup(buf);
        if (!w[n] || (int)strlen(w[n]) != len) {
            errors[t]++;
            break;
        }
        n++;
    }
    qsort(w, n, sizeof *w, cmp);
    for (size_t i = 0; i < n; i++)
        h = fnv(h, w[i], strlen(w[i]) + 1);
    /* Large and huge blocks: calloc must give zeros, realloc keeps data. */
    for (size_t size = 1000; size <= (8u << 20); size *= 3) {
        unsigned char *p = calloc(1, size), *q;
        if (!p) {
            errors[t]++;
            continue;
        }
        for (size_t i = 0; i < size; i += 997)
            if (p[i])
                errors[t]++;
        memset(p, t + 1, size);
        q = realloc(p, size * 2 + 5);
        if (!q) {
            free(p);
            errors[t]++;
            continue;
        }
        for (size_t i = 0; i < size; i += 499)
            if (q[i] != t + 1)
                errors[t]++;
        h = fnv(h, &size, sizeof size);
        free(q);
    }
    for (size_t i = 0; i < n; i++)
        free(w[i]);
    free(w);
    digest[t] = h;
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[THREADS];
    void *allocate_sym = dlsym(RTLD_DEFAULT, "allocate");
    void *malloc_sym = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    const char *file = "?";
    int expect, ours, failed = 0;

    if (argc != 2 || (strcmp(argv[1], "yes") != 0 && strcmp(argv[1], "no") != 0)) {
        fprintf(stderr, "usage: %s yes|no\n", argv[0]);
        return 2;
    }
    expect = strcmp(argv[1], "yes") == 0;
    if (malloc_sym && dladdr(malloc_sym, &info) && info.dli_fname)
        file = info.dli_fname;
    ours = allocate_sym != NULL && strstr(file, "libmemory") != NULL;
    fprintf(stderr, "allocator: malloc from %s; dlsym(\"allocate\") = %p (%zu-bit)\n",
            file, allocate_sym, sizeof(void *) * 8);
    if (ours != expect) {
        fprintf(stderr, "FAIL: preload_check: expected %s, but malloc comes from %s and "
                        "allocate is %s\n",
                expect ? "libmemory.so" : "the system allocator", file,
                allocate_sym ? "defined" : "undefined");
        failed = 1;
    }

    for (int t = 0; t < THREADS; t++)
        if (pthread_create(&th[t], NULL, work, (void *)(intptr_t)t) != 0) {
            fprintf(stderr, "FAIL: preload_check: pthread_create\n");
            return 1;
        }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++) {
        printf("thread %d: digest %08x, errors %d\n", t, digest[t], errors[t]);
        failed |= errors[t] != 0;
    }
    return failed;
}
