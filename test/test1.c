/*
 * test1: the smallest round trip. Allocate 32 bytes, write a string through
 * the pointer, print it, compare it, deallocate it once.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"

int main(void)
{
    static const char msg[] = "Hello, Mallocator!";
    char *s;

    setvbuf(stdout, NULL, _IONBF, 0);

    s = allocate(32);
    if (s == NULL) {
        printf("FAIL: test1: allocate(32) returned NULL\n");
        return 1;
    }
    if ((uintptr_t)s % 16 != 0) {
        printf("FAIL: test1: allocate(32) returned %p, not 16-byte aligned\n",
               (void *)s);
        return 1;
    }

    strcpy(s, msg);
    printf("allocate(32) = %p, string: %s\n", (void *)s, s);

    if (strcmp(s, msg) != 0) {
        printf("FAIL: test1: read back \"%s\", expected \"%s\"\n", s, msg);
        return 1;
    }

    deallocate(s);
    printf("PASS: test1 (allocate 32 bytes, strcpy/strcmp \"%s\", deallocate)\n",
           msg);
    return 0;
}
