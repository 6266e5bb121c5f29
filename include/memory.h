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
 */
#ifndef MALLOCATOR_MEMORY_H
#define MALLOCATOR_MEMORY_H

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

#ifdef __cplusplus
}
#endif

#endif /* MALLOCATOR_MEMORY_H */
