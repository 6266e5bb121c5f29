/* Built against an installed copy (make install PREFIX=...) through its
 * pkg-config file: proves the header and library are found where installed. */
#include <stdio.h>
#include <string.h>
#include "memory.h"

int main(void) {
    char *p = allocate(64);
    if (p == NULL) {
        printf("FAIL: install_check: allocate returned NULL\n");
        return 1;
    }
    strcpy(p, "installed");
    int ok = strcmp(p, "installed") == 0;
    deallocate(p);
    printf("%s: install_check (header and library found through pkg-config)\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
