#!/bin/bash
# run_programs.sh -- real programs with LD_PRELOAD=libmemory.so.
#
# Usage: run_programs.sh LIBMEMORY_SO [PRELOAD_CHECK]
#
#   LIBMEMORY_SO   the library to preload (made absolute here)
#   PRELOAD_CHECK  the preload_check program built for the same word size
#                  (optional; the Makefile passes build/BITS/dropin/preload_check)
#
# Each case runs twice, in a fresh directory each time: without LD_PRELOAD
# and with LD_PRELOAD=<absolute path of the library>. It passes if both runs
# exit 0, their standard output is identical, and the preloaded run wrote no
# "mallocator:" line on stderr (a bad free or other report of the library).
#
# A 64-bit library: preload_check (a C program not linked with -lmemory),
# then python3, sort, gcc, sqlite3 and git on generated workloads.
# A 32-bit library: the system programs are 64-bit and cannot load it, so
# they are skipped (said so) and only the 32-bit preload_check runs; it
# proves that the library really replaced malloc in the preloaded run
# (dlsym(RTLD_DEFAULT, "allocate") != NULL, dladdr(malloc) in libmemory).
#
# Prints "PASS: run_programs: <case> ..." or "FAIL: run_programs: <case>: ..."
# per case, then a summary; exits 1 if any case failed.
# Environment: RUN_PROGRAMS_TIMEOUT (seconds per run, default 300),
# RUN_PROGRAMS_KEEP=1 keeps the work directory.

set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 LIBMEMORY_SO [PRELOAD_CHECK]" >&2
    exit 2
fi
LIB=$1
CHECK_BIN=${2:-}
if [ ! -f "$LIB" ]; then
    echo "FAIL: run_programs: $LIB not found (build the library first: cargo build --release)"
    exit 1
fi
LIB=$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")
if [ -n "$CHECK_BIN" ]; then
    if [ ! -x "$CHECK_BIN" ]; then
        echo "FAIL: run_programs: $CHECK_BIN not found"
        exit 1
    fi
    CHECK_BIN=$(cd "$(dirname "$CHECK_BIN")" && pwd)/$(basename "$CHECK_BIN")
fi
HERE=$(cd "$(dirname "$0")" && pwd)
TESTDIR=$(dirname "$HERE")
INCDIR=$(cd "$TESTDIR/../include" && pwd)
TIMEOUT=${RUN_PROGRAMS_TIMEOUT:-300}

# ELF class byte: 1 = 32-bit, 2 = 64-bit.
case $(od -An -tx1 -j4 -N1 "$LIB" | tr -d ' \n') in
    01) BITS=32 ;;
    02) BITS=64 ;;
    *) echo "FAIL: run_programs: $LIB is not an ELF file"; exit 1 ;;
esac

WORK=$(mktemp -d /tmp/run_programs.XXXXXX)
if [ "${RUN_PROGRAMS_KEEP:-0}" = 1 ]; then
    echo "work directory: $WORK (kept)"
else
    trap 'rm -rf "$WORK"' EXIT
fi

# Library options that print on stderr (which is checked) or inject
# failures are removed; others (e.g. MALLOCATOR_SECURE=1) apply to the runs.
unset MALLOCATOR_ON_ERROR MALLOCATOR_STATS MALLOCATOR_VERBOSE MALLOCATOR_FAIL_MMAP LD_PRELOAD
export LC_ALL=C
export HERE TESTDIR INCDIR CHECK_BIN

passed=0
failed=""
skipped=0

# ---- the workloads (each runs in a fresh empty directory) ------------------

# preload_check: "yes" under LD_PRELOAD, "no" without.
wl_preload_check() {
    if [ -n "${LD_PRELOAD:-}" ]; then "$CHECK_BIN" yes; else "$CHECK_BIN" no; fi
}

wl_python() {
    python3 "$HERE/alloc_heavy.py" || return
    echo "--- PYTHONMALLOC=malloc (every object through malloc)"
    PYTHONMALLOC=malloc python3 "$HERE/alloc_heavy.py"
}

# 500,000 lines from a 32-bit LCG (exact in awk's doubles).
wl_sort() {
    awk 'BEGIN { x = 12345
        for (i = 0; i < 500000; i++) {
            x = (x * 69069 + 1) % 4294967296
            printf "%d %s%d\n", x % 1000003, substr("abcdefghijklmnopqrstuvwxyz", x % 26 + 1, 1 + x % 7), i % 977
        } }' > in.txt || return
    md5sum < in.txt
    sort -n in.txt | md5sum
    sort in.txt | md5sum
    sort -r -k2,2 -k1,1n in.txt | md5sum
    # Small buffer, several threads: temporary files and a multiway merge.
    sort -S 4M --parallel=4 -T . -k2 in.txt | md5sum
    sort -u -n in.txt | wc -l
    sort -n in.txt | uniq -c -w 3 | sort -rn | head -5
}

wl_gcc() {
    gcc -O2 -I"$INCDIR" -c "$TESTDIR/test1.c" -o test1.o || return
    nm test1.o
    md5sum < test1.o
    gcc -O2 -I"$INCDIR" -S "$TESTDIR/test1.c" -o - | md5sum
    gcc -O2 -I"$INCDIR" -pthread -S "$TESTDIR/test5.c" -o - | md5sum
    gcc -O2 -fno-builtin -S "$HERE/malloc_edge.c" -o - | md5sum
    gcc -O3 -funroll-loops -pthread -c "$HERE/fork_threads.c" -o ft.o || return
    nm ft.o | md5sum
    md5sum < ft.o
}

wl_sqlite() {
    awk 'BEGIN {
        print "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, v REAL, blob TEXT);"
        print "BEGIN;"
        x = 1
        for (i = 1; i <= 50000; i++) {
            x = (x * 69069 + 1) % 4294967296
            printf "INSERT INTO t(k, name, v, blob) VALUES(%d, '\''n%d'\'', %d.%02d, '\''%s'\'');\n", x % 1000, x % 7919, x % 100000, i % 100, substr("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz", 1 + x % 20, 5 + x % 50)
        }
        print "COMMIT;"
        print "CREATE INDEX tk ON t(k);"
        print "CREATE INDEX tn ON t(name, v);"
        print "SELECT count(*), sum(k), min(name), max(name), round(sum(v), 2) FROM t;"
        print "SELECT k, count(*), round(avg(v), 3) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 10;"
        print "SELECT length(group_concat(name, '\'','\'')) FROM t;"
        print "SELECT count(*) FROM t a JOIN t b ON a.k = b.k WHERE a.id < 3000;"
        print "CREATE TABLE u AS SELECT k, count(*) AS c, group_concat(blob) AS g FROM t GROUP BY k;"
        print "SELECT sum(c), sum(length(g)) FROM u;"
        print "UPDATE t SET name = name || '\''-updated'\'' WHERE k < 200;"
        print "SELECT count(*) FROM t WHERE name LIKE '\''%-updated'\'';"
        print "DELETE FROM t WHERE k % 3 = 0;"
        print "VACUUM;"
        print "SELECT count(*), sum(id) FROM t;"
        print "SELECT name, v FROM t ORDER BY name DESC, v LIMIT 5;"
        print "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 20000) SELECT count(*), sum(n), max(printf('\''%08d'\'', n)) FROM c;"
        print "PRAGMA integrity_check;"
    }' > work.sql || return
    sqlite3 db.sqlite < work.sql || return
    sqlite3 db.sqlite 'SELECT count(*) FROM t; SELECT count(*) FROM u;' || return
    # The same in memory, with a large page cache.
    sqlite3 :memory: 'PRAGMA cache_size = -65536;' < work.sql
}

# A generated repository; fixed author, committer and dates, so every object
# id is the same in both runs.
wl_git() {
    export HOME=$PWD/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME="Test Author" GIT_AUTHOR_EMAIL=author@example.com
    export GIT_COMMITTER_NAME="Test Committer" GIT_COMMITTER_EMAIL=committer@example.com
    mkdir -p home repo && cd repo || return
    git init -q -b main . || return
    git config gc.auto 0
    git config pack.threads 2
    awk 'BEGIN { x = 7
        for (f = 0; f < 200; f++) {
            file = sprintf("dir%d/file%03d.txt", f % 10, f)
            system("mkdir -p dir" (f % 10))
            for (l = 0; l < 50 + f % 150; l++) {
                x = (x * 69069 + 1) % 4294967296
                printf "line %d of file %d: %d %s\n", l, f, x, substr("the quick brown fox jumps over the lazy dog", 1 + x % 20) > file
            }
            close(file)
        } }' || return
    git add -A || return
    GIT_AUTHOR_DATE="2024-01-01T10:00:00Z" GIT_COMMITTER_DATE="2024-01-01T10:00:00Z" \
        git commit -q -m "initial: 200 files" || return
    for f in dir1/file*.txt dir3/file*.txt; do echo "changed $f" >> "$f"; done
    git rm -q dir5/file005.txt dir5/file015.txt
    git mv dir7/file007.txt dir7/renamed007.txt
    for i in $(seq 0 19); do echo "new file $i" > "dir9/new$i.txt"; done
    git add -A || return
    GIT_AUTHOR_DATE="2024-01-02T10:00:00Z" GIT_COMMITTER_DATE="2024-01-02T10:00:00Z" \
        git commit -q -m "second: changes, removals, a rename, new files" || return
    git checkout -q -b side HEAD~1 || return
    echo "side change" >> dir2/file002.txt
    GIT_AUTHOR_DATE="2024-01-03T10:00:00Z" GIT_COMMITTER_DATE="2024-01-03T10:00:00Z" \
        git commit -q -am "side" || return
    git checkout -q main || return
    GIT_AUTHOR_DATE="2024-01-04T10:00:00Z" GIT_COMMITTER_DATE="2024-01-04T10:00:00Z" \
        git merge -q --no-edit side || return
    echo "--- rev-parse"
    git rev-parse HEAD HEAD~1 HEAD^{tree}
    echo "--- log --stat"
    git log --stat --format='%H %an %ad %s' --date=iso-strict
    echo "--- ls-files"
    git ls-files -s | md5sum
    git ls-files | wc -l
    echo "--- diff"
    git diff --stat HEAD~2 HEAD | tail -1
    git diff HEAD~2 HEAD | md5sum
    echo "--- gc"
    git gc -q --aggressive || return
    git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
    git fsck --full --no-progress 2>&1 || return
    git log --oneline | md5sum
    git blame -s dir1/file011.txt | md5sum
    git archive --format=tar HEAD | md5sum
}

# ---- running and comparing -------------------------------------------------

export -f wl_preload_check wl_python wl_sort wl_gcc wl_sqlite wl_git

# run_case NAME FUNCTION: runs FUNCTION without and with LD_PRELOAD and
# compares.
run_case() {
    local name=$1 func=$2 mode dir rc_plain rc_preload t0 t1 why=""
    local -A secs
    for mode in plain preload; do
        dir=$WORK/$name.$mode
        mkdir -p "$dir"
        t0=$(date +%s.%N)
        if [ $mode = plain ]; then
            (cd "$dir" && timeout "$TIMEOUT" bash -c "$func") > "$dir.out" 2> "$dir.err"
        else
            (cd "$dir" && LD_PRELOAD=$LIB timeout "$TIMEOUT" bash -c "$func") \
                > "$dir.out" 2> "$dir.err"
        fi
        echo $? > "$dir.rc"
        t1=$(date +%s.%N)
        secs[$mode]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    done
    rc_plain=$(cat "$WORK/$name.plain.rc")
    rc_preload=$(cat "$WORK/$name.preload.rc")
    if [ "$rc_plain" != 0 ]; then
        why="without LD_PRELOAD it exited with status $rc_plain (the workload itself is broken here)"
    elif [ "$rc_preload" != 0 ]; then
        why="exit status $rc_preload with LD_PRELOAD, 0 without"
        [ "$rc_preload" = 124 ] && why="$why (timed out after $TIMEOUT s)"
        [ "$rc_preload" -gt 128 ] && why="$why (signal $((rc_preload - 128)))"
    elif ! cmp -s "$WORK/$name.plain.out" "$WORK/$name.preload.out"; then
        why="standard output differs with LD_PRELOAD"
    elif grep -q 'mallocator:' "$WORK/$name.preload.err"; then
        why="the library reported errors on stderr"
    fi
    if [ -z "$why" ]; then
        echo "PASS: run_programs: $name ($(wc -l < "$WORK/$name.plain.out") lines of output identical;" \
             "${secs[plain]} s without, ${secs[preload]} s with LD_PRELOAD)"
        passed=$((passed + 1))
        return 0
    fi
    echo "FAIL: run_programs: $name: $why"
    if ! cmp -s "$WORK/$name.plain.out" "$WORK/$name.preload.out"; then
        echo "  diff (without < > with LD_PRELOAD), first lines:"
        diff "$WORK/$name.plain.out" "$WORK/$name.preload.out" | head -20 | sed 's/^/    /'
    fi
    if [ -s "$WORK/$name.preload.err" ]; then
        echo "  stderr with LD_PRELOAD, first lines:"
        head -20 "$WORK/$name.preload.err" | sed 's/^/    /'
    fi
    if [ "$rc_plain" != 0 ] && [ -s "$WORK/$name.plain.err" ]; then
        echo "  stderr without LD_PRELOAD, first lines:"
        head -10 "$WORK/$name.plain.err" | sed 's/^/    /'
    fi
    failed="$failed $name"
    return 1
}

# need NAME PROGRAM APT-PACKAGE: fails the case if PROGRAM is missing.
need() {
    if command -v "$2" > /dev/null 2>&1; then return 0; fi
    echo "FAIL: run_programs: $1: '$2' is not installed (apt-get install $3)"
    failed="$failed $1"
    return 1
}

echo "library: $LIB ($BITS-bit)"

if [ -n "$CHECK_BIN" ]; then
    run_case preload_check wl_preload_check
    # Show what the preloaded run found (its stderr).
    sed 's/^/  /' "$WORK/preload_check.preload.err" | grep 'allocator:'
else
    echo "note: no preload_check program given; skipped"
fi

if [ $BITS = 32 ]; then
    echo "SKIP: run_programs: python3, sort, gcc, sqlite3, git: the system programs" \
         "are 64-bit and cannot load a 32-bit library (the 32-bit library is" \
         "checked with the 32-bit preload_check above)"
    skipped=5
else
    # A 64-bit system program really loads the library.
    if LD_PRELOAD=$LIB grep -qF "$LIB" /proc/self/maps; then
        echo "preload works: the library is mapped into a preloaded grep"
    else
        echo "FAIL: run_programs: LD_PRELOAD=$LIB did not load the library into grep"
        failed="$failed preload-maps"
    fi
    need python3 python3 python3 && run_case python3 wl_python
    need sort sort coreutils && run_case sort wl_sort
    need gcc gcc gcc && run_case gcc wl_gcc
    need sqlite3 sqlite3 sqlite3 && run_case sqlite3 wl_sqlite
    need git git git && run_case git wl_git
fi

if [ -n "$failed" ]; then
    echo "FAIL: run_programs ($BITS-bit): $passed passed, failed:$failed"
    exit 1
fi
if [ $skipped -gt 0 ]; then
    echo "PASS: run_programs ($BITS-bit): $passed passed, $skipped skipped"
else
    echo "PASS: run_programs ($BITS-bit): all $passed passed"
fi
exit 0
