/*
 * test_dlopen: the library loaded and unloaded at run time.
 *
 * This program is not linked with -lmemory. It dlopen()s the library by the
 * absolute path LIBMEMORY_PATH (given by the Makefile), looks up allocate
 * and deallocate with dlsym(), and in each of 3 rounds:
 *   - allocates blocks of every kind (small: 0, 1, 64, 1000, 16384; large:
 *     20000, 100000, 500000; huge: 2 MiB, 8 MiB), all live together, fills
 *     each with its own pattern, checks alignment (8 bytes; 4096 above
 *     16384) and that the patterns survive, then deallocates them;
 *   - starts a thread that allocates and frees blocks through the library
 *     and exits leaving one block live; the main thread checks and frees it
 *     (a cross-thread free into the heap the thread abandoned);
 *   - dlclose()s the library, says whether it was really unloaded
 *     (dlopen with RTLD_NOLOAD; informational: a library may stay resident),
 *     and the next round dlopen()s it again.
 * Pass: no crash, no NULL, every pattern and alignment check holds.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LIBMEMORY_PATH
#error "LIBMEMORY_PATH (absolute path of libmemory.so) must be defined"
#endif

#define ROUNDS 3

typedef void *(*allocate_fn)(unsigned int);
typedef void (*deallocate_fn)(void *);

static allocate_fn p_allocate;
static deallocate_fn p_deallocate;
static int failures;

#define FAIL(...)                                                              \
    do {                                                                       \
        printf("FAIL: test_dlopen: " __VA_ARGS__);                             \
        printf("\n");                                                          \
        failures++;                                                            \
    } while (0)

static const unsigned int sizes[] = {0,     1,      64,     1000,
                                     16384, 20000,  100000, 500000,
                                     2u << 20, 8u << 20};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

static unsigned char pat(unsigned int round, size_t block, size_t j)
{
    return (unsigned char)(round * 59 + block * 17 + j * 3 + 1);
}

static void fill(unsigned char *p, size_t n, unsigned int round, size_t block)
{
    for (size_t j = 0; j < n; j++)
        p[j] = pat(round, block, j);
}

static int check(const unsigned char *p, size_t n, unsigned int round,
                 size_t block)
{
    for (size_t j = 0; j < n; j++)
        if (p[j] != pat(round, block, j)) {
            FAIL("round %u: block of %zu bytes at %p: byte %zu is 0x%02x, "
                 "expected 0x%02x", round, n, (const void *)p, j, p[j],
                 pat(round, block, j));
            return 0;
        }
    return 1;
}

struct thread_arg {
    unsigned int round;
    unsigned char *left; /* the block the thread leaves live */
};

static void *thread_main(void *argp)
{
    struct thread_arg *arg = argp;

    for (size_t k = 0; k < N_SIZES; k++) {
        unsigned char *p = p_allocate(sizes[k]);
        if (p == NULL)
            return NULL;
        fill(p, sizes[k], arg->round + 100, k);
        if (!check(p, sizes[k], arg->round + 100, k))
            return NULL;
        p_deallocate(p);
    }
    arg->left = p_allocate(4000);
    if (arg->left != NULL)
        fill(arg->left, 4000, arg->round + 200, 0);
    return NULL;
}

static void one_round(unsigned int round)
{
    unsigned char *blocks[N_SIZES];
    struct thread_arg arg = {round, NULL};
    pthread_t th;
    void *h, *again;
    int rc;

    h = dlopen(LIBMEMORY_PATH, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        FAIL("round %u: dlopen(%s): %s", round, LIBMEMORY_PATH, dlerror());
        return;
    }
    p_allocate = (allocate_fn)dlsym(h, "allocate");
    p_deallocate = (deallocate_fn)dlsym(h, "deallocate");
    if (p_allocate == NULL || p_deallocate == NULL) {
        FAIL("round %u: dlsym: allocate %p, deallocate %p", round,
             (void *)p_allocate, (void *)p_deallocate);
        dlclose(h);
        return;
    }
    printf("round %u: dlopen ok, allocate at %p\n", round, (void *)p_allocate);

    for (size_t k = 0; k < N_SIZES; k++) {
        errno = 0;
        blocks[k] = p_allocate(sizes[k]);
        if (blocks[k] == NULL) {
            FAIL("round %u: allocate(%u) returned NULL (errno %d)", round,
                 sizes[k], errno);
            continue;
        }
        if ((uintptr_t)blocks[k] % 8 != 0 ||
            (sizes[k] > 16384 && (uintptr_t)blocks[k] % 4096 != 0))
            FAIL("round %u: allocate(%u) = %p is misaligned", round, sizes[k],
                 (void *)blocks[k]);
        fill(blocks[k], sizes[k], round, k);
    }
    for (size_t k = 0; k < N_SIZES; k++)
        if (blocks[k] != NULL)
            check(blocks[k], sizes[k], round, k);
    for (size_t k = 0; k < N_SIZES; k++)
        p_deallocate(blocks[k]);
    p_deallocate(NULL);
    printf("round %u: %zu blocks (0 .. %u bytes) allocated, checked, "
           "deallocated\n", round, N_SIZES, sizes[N_SIZES - 1]);

    rc = pthread_create(&th, NULL, thread_main, &arg);
    if (rc != 0) {
        FAIL("round %u: pthread_create: %s", round, strerror(rc));
    } else {
        pthread_join(th, NULL);
        if (arg.left == NULL) {
            FAIL("round %u: the thread's allocations failed", round);
        } else {
            check(arg.left, 4000, round + 200, 0);
            p_deallocate(arg.left);
            printf("round %u: a thread allocated, exited; its block freed by "
                   "main\n", round);
        }
    }

    p_allocate = NULL;
    p_deallocate = NULL;
    if (dlclose(h) != 0)
        FAIL("round %u: dlclose: %s", round, dlerror());
    again = dlopen(LIBMEMORY_PATH, RTLD_NOW | RTLD_NOLOAD);
    printf("round %u: dlclose ok; library %s\n", round,
           again ? "still resident (not unloaded)" : "unloaded");
    if (again)
        dlclose(again);
}

/* A thread that allocated through the library, then waits until the library
 * has been unloaded before it exits: its exit must not run any of the
 * library's code (the thread-exit key is deleted at unload). */
static volatile int allocated, unloaded;

static void *lingering_thread(void *unused)
{
    (void)unused;
    p_deallocate(p_allocate(100));
    allocated = 1;
    while (!unloaded)
        usleep(1000);
    return NULL;
}

static void unload_while_a_thread_lives(void)
{
    pthread_t th;
    void *h = dlopen(LIBMEMORY_PATH, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        FAIL("lingering: dlopen: %s", dlerror());
        return;
    }
    p_allocate = (allocate_fn)dlsym(h, "allocate");
    p_deallocate = (deallocate_fn)dlsym(h, "deallocate");
    if (pthread_create(&th, NULL, lingering_thread, NULL) != 0) {
        FAIL("lingering: pthread_create failed");
        dlclose(h);
        return;
    }
    /* Not a fixed sleep: on a loaded machine the thread may not have run
     * yet, and its call would then find the library unmapped. */
    while (!allocated)
        usleep(1000);
    dlclose(h);
    unloaded = 1;
    pthread_join(th, NULL); /* crashed here before the key was deleted at unload */
    printf("lingering: a thread that allocated exited after dlclose: ok\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("library: %s\n", LIBMEMORY_PATH);

    for (unsigned int r = 1; r <= ROUNDS; r++)
        one_round(r);
    unload_while_a_thread_lives();

    if (failures) {
        printf("FAIL: test_dlopen: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: test_dlopen (%d rounds of dlopen, allocate/deallocate of "
           "every kind, a thread, dlclose; dlclose with a live thread)\n", ROUNDS);
    return 0;
}
