/*
 * memory.h -- the C interface of libmemory.so (Mallocator).
 *
 * Link with:  gcc -m32 -o prog prog.c -L<dir> -lmemory      (32-bit)
 *             gcc      -o prog prog.c -L<dir> -lmemory      (64-bit)
 * -lmemory must come after the sources: Debian's gcc links with --as-needed.
 *
 * Alignment rule: every block is at least 8-byte aligned; a request whose size
 * is a non-zero multiple of 16 gets a 16-byte aligned block; blocks above the largest
 * small class (16 KiB) are page (4096-byte) aligned.
 *
 * Errors: deallocating a pointer twice, a pointer this library never returned,
 * or a pointer into the middle of a block prints one line on stderr
 * ("mallocator: <kind> of 0x<addr> ...") and is otherwise ignored; the heap
 * stays intact. With MALLOCATOR_ON_ERROR=abort in the environment the process
 * aborts instead. Out of memory returns NULL with errno set to ENOMEM.
 *
 * The library also exports the malloc family (malloc, free, calloc, realloc,
 * posix_memalign, ...) with glibc's semantics; see README.md. Environment
 * options (MALLOCATOR_STATS, MALLOCATOR_SECURE, ...) are listed there too.
 */
#ifndef MALLOCATOR_MEMORY_H
#define MALLOCATOR_MEMORY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Allocates `size` bytes, like malloc(3). allocate(0) returns a unique
 * pointer that may be deallocated. Returns NULL (errno = ENOMEM) when memory
 * cannot be obtained. */
void *allocate(unsigned int size);

/* Frees a block returned by allocate(), like free(3). deallocate(NULL) does
 * nothing. */
void deallocate(void *addr);

/* ---- Statistics ---------------------------------------------------------
 * Counters are kept per thread and summed when read: each counter is exact,
 * the set is a moment's picture while other threads run. */

#define MEMORY_STATS_CLASSES 64

/* One slab size class. */
struct memory_class_stats {
    uint64_t block_size;      /* bytes per block of this class */
    uint64_t allocations;     /* blocks handed out, ever */
    uint64_t frees;           /* blocks returned, ever */
    uint64_t live_blocks;     /* allocations - frees */
};

struct memory_stats {
    uint64_t mapped_bytes;      /* address space mapped from the system now */
    uint64_t peak_mapped_bytes; /* ... at most, ever */
    uint64_t mmap_calls;        /* mappings made */
    uint64_t munmap_calls;      /* mappings (or parts) returned */
    uint64_t purged_bytes;      /* bytes returned with madvise, ever */
    uint64_t unmapped_bytes;    /* bytes returned with munmap, ever */
    uint64_t small_allocations; /* blocks up to 16 KiB */
    uint64_t small_frees;
    uint64_t small_live_bytes;      /* in class-sized blocks */
    uint64_t requested_bytes;   /* sum of requested sizes (small and large), ever */
    uint64_t remote_frees;      /* small blocks freed by another thread */
    uint64_t large_allocations; /* best-fit regions up to LARGE_MAX */
    uint64_t large_frees;
    uint64_t large_live_bytes;
    uint64_t huge_allocations;  /* blocks with a mapping of their own */
    uint64_t huge_frees;
    uint64_t huge_live_bytes;
    uint32_t classes_used;      /* valid entries of classes[] (by class index) */
    struct memory_class_stats classes[MEMORY_STATS_CLASSES];
};

/* Fills *out with a snapshot; returns 0, or -1 if out is NULL. */
int memory_stats(struct memory_stats *out);

/* ---- Heap profile -------------------------------------------------------
 * With MALLOCATOR_PROFILE=<prefix> (or MALLOCATOR_LEAKS=1) set, allocations
 * are sampled, one per MALLOCATOR_PROFILE_RATE bytes on average (512 KiB).
 * Writes the profile (pprof's profile.proto, gzipped) to path, or to
 * <prefix>.<pid>.pb.gz if path is NULL. Returns 0, or -1 with errno set:
 * EINVAL if profiling is off (or path is NULL without a prefix), else what
 * open or write said. Read it with `mallocator-prof` or `go tool pprof`. */
int memory_profile_dump(const char *path);

/* The same, of the profile as it was at its peak: when the sampled bytes in
 * use were highest. Without a path: <prefix>.<pid>.peak.pb.gz (which is
 * also written at exit). */
int memory_profile_dump_peak(const char *path);

/* Writes the statistics as a readable table to the file descriptor fd. */
void memory_stats_print(int fd);

#ifdef __cplusplus
}
#endif

#endif /* MALLOCATOR_MEMORY_H */
