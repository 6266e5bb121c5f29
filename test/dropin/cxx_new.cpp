/*
 * cxx_new: C++'s operator new/delete family under LD_PRELOAD=libmemory.so.
 *
 * The program re-executes itself with LD_PRELOAD set to the library given
 * at compile time (LIBMEMORY_PATH) if it is not preloaded yet. Then it checks:
 *   - every form of operator new (plain, array, nothrow, aligned, aligned
 *     nothrow) resolves into libmemory.so (dladdr), and so do delete's forms;
 *   - blocks of every form are distinct, writable, aligned as asked, and
 *     are blocks of ours (malloc_usable_size reports no bad pointer; the
 *     library's stderr stays silent);
 *   - sized and aligned deletes, deletes from another thread, and the
 *     standard containers work;
 *   - an impossible size: nothrow new returns nullptr; throwing new calls
 *     the installed new-handler until it is removed, then throws
 *     std::bad_alloc (caught here); array new the same.
 * Exits 1 on any failure.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>

static int failures;

#define CHECK(cond, ...)                                                                                    \
    do {                                                                                                    \
        if (!(cond)) {                                                                                      \
            printf("FAIL: cxx_new: " __VA_ARGS__);                                                          \
            printf("\n");                                                                                   \
            failures++;                                                                                     \
        }                                                                                                   \
    } while (0)

static bool in_libmemory(const void *fn)
{
    Dl_info info;
    return dladdr(fn, &info) != 0 && info.dli_fname != nullptr && strstr(info.dli_fname, "libmemory") != nullptr;
}

static void check_resolution()
{
    void *(*plain)(size_t) = &::operator new;
    void *(*array)(size_t) = &::operator new[];
    void *(*nothrow)(size_t, const std::nothrow_t &) noexcept = &::operator new;
    void *(*aligned)(size_t, std::align_val_t) = &::operator new;
    void *(*aligned_nothrow)(size_t, std::align_val_t, const std::nothrow_t &) noexcept = &::operator new;
    void (*del)(void *) noexcept = &::operator delete;
    void (*del_sized)(void *, size_t) noexcept = &::operator delete;
    void (*del_aligned)(void *, std::align_val_t) noexcept = &::operator delete[];
    const void *fns[] = {(void *)plain,   (void *)array,     (void *)nothrow,    (void *)aligned,
                         (void *)aligned_nothrow, (void *)del, (void *)del_sized, (void *)del_aligned};
    for (const void *f : fns)
        CHECK(in_libmemory(f), "an operator new/delete at %p is not libmemory's", f);
}

struct alignas(64) Line {
    char bytes[64];
};
struct alignas(4096) Page {
    char bytes[100];
};

static void check_blocks()
{
    std::vector<char *> blocks;
    for (size_t size = 1; size <= (1u << 20); size = size * 3 / 2 + 1) {
        char *p = new char[size];
        memset(p, (int)(size & 0xff), size);
        CHECK(malloc_usable_size(p) >= size, "new char[%zu] gave a block of %zu bytes", size, malloc_usable_size(p));
        blocks.push_back(p);
        int *q = new int(7);
        CHECK(*q == 7, "new int lost its value");
        delete q;
    }
    for (char *p : blocks) {
        size_t size = malloc_usable_size(p);
        CHECK(size > 0, "block %p is not ours", (void *)p);
        delete[] p;
    }
    Line *lines = new Line[10];
    CHECK((uintptr_t)lines % 64 == 0, "new Line[] at %p is not 64-aligned", (void *)lines);
    delete[] lines;
    Page *page = new Page;
    CHECK((uintptr_t)page % 4096 == 0, "new Page at %p is not 4096-aligned", (void *)page);
    delete page;
    void *sized = ::operator new(200);
    ::operator delete(sized, 200);
    void *a = ::operator new(100, std::align_val_t(256));
    CHECK((uintptr_t)a % 256 == 0, "aligned new at %p", a);
    ::operator delete(a, 100, std::align_val_t(256));
    void *n = ::operator new(50, std::nothrow);
    CHECK(n != nullptr, "nothrow new(50) gave nullptr");
    ::operator delete(n, std::nothrow);

    /* Blocks made here, deleted by another thread. */
    std::vector<std::string *> strings;
    for (int i = 0; i < 10000; i++)
        strings.push_back(new std::string(std::to_string(i) + " a string long enough to be on the heap"));
    std::thread t([&] {
        for (std::string *s : strings)
            delete s;
    });
    t.join();

    std::map<int, std::vector<int>> m;
    for (int i = 0; i < 20000; i++)
        m[i % 977].push_back(i);
    long sum = 0;
    for (auto &kv : m)
        for (int v : kv.second)
            sum += v;
    CHECK(sum == 20000L * 19999 / 2, "map of vectors summed to %ld", sum);
}

static int handler_calls;

static void handler()
{
    if (++handler_calls == 3)
        std::set_new_handler(nullptr);
}

static void check_out_of_memory()
{
    /* More than any address space; volatile, so that gcc does not refuse it. */
    static volatile size_t huge_size = SIZE_MAX - 65536;
    const size_t huge = huge_size;
    void *p = ::operator new(huge, std::nothrow);
    CHECK(p == nullptr, "nothrow new of %zu bytes gave %p", huge, p);
    p = ::operator new[](huge, std::align_val_t(64), std::nothrow);
    CHECK(p == nullptr, "aligned nothrow new[] of %zu bytes gave %p", huge, p);

    bool thrown = false;
    try {
        p = ::operator new(huge);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown, "new of %zu bytes did not throw std::bad_alloc", huge);

    std::set_new_handler(handler);
    thrown = false;
    try {
        p = ::operator new[](huge);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown, "new[] of %zu bytes did not throw std::bad_alloc", huge);
    CHECK(handler_calls == 3, "the new-handler was called %d times, expected 3 (then it removed itself)",
          handler_calls);

    thrown = false;
    try {
        p = ::operator new(huge, std::align_val_t(128));
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown, "aligned new of %zu bytes did not throw std::bad_alloc", huge);
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *preload = getenv("LD_PRELOAD");
    if (preload == nullptr || strstr(preload, "libmemory") == nullptr) {
        setenv("LD_PRELOAD", LIBMEMORY_PATH, 1);
        execv("/proc/self/exe", argv);
        perror("cxx_new: execv");
        return 1;
    }
    check_resolution();
    check_blocks();
    check_out_of_memory();
    if (failures) {
        printf("FAIL: cxx_new: %d check(s) failed\n", failures);
        return 1;
    }
    printf("PASS: cxx_new (operator new/delete family preloaded: resolution, blocks, alignment, sized and "
           "cross-thread deletes, containers, nothrow nullptr, new-handler then std::bad_alloc; %zu-bit)\n",
           sizeof(void *) * 8);
    return 0;
}
