#!/usr/bin/env bash
# Time-bounded fuzzing of Mallocator, for CI:  fuzz/run.sh [SECONDS]  (default 30)
#
# 1. Builds the stable driver (src/bin/driver.rs) for x86_64 and i686 and
#    checks that it catches a corrupted block (FUZZ_SELFTEST=1 must fail).
# 2. Tries libFuzzer: `cargo fuzz build ops` (cargo-fuzz installed; -Z flags
#    through RUSTC_BOOTSTRAP=1 on stable, or FUZZ_TOOLCHAIN=nightly). If that
#    does not build, says why and uses the driver instead.
# 3. Runs, in parallel, each for SECONDS:
#      64-bit  libFuzzer `ops` (or the driver)   default options
#      64-bit  driver                            MALLOCATOR_SECURE=1
#      32-bit  driver                            default options
#      32-bit  driver                            MALLOCATOR_SECURE=1
#    and fails if any of them finds a failure, crashes or hangs.
#
# Environment: FUZZ_ENGINE=auto|libfuzzer|driver (default auto: libFuzzer if
# it builds), FUZZ_TOOLCHAIN (e.g. nightly: `cargo +nightly fuzz`),
# FUZZ_NO_32=1 (skip the i686 jobs).
#
# Logs: fuzz/target/run-logs/*.log; failing inputs: fuzz/artifacts/.
# MALLOCATOR_ON_ERROR is removed: the fuzzer makes bad frees on purpose.
set -uo pipefail

secs=${1:-30}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz_dir")
cd "$fuzz_dir" || exit 2
unset MALLOCATOR_ON_ERROR MALLOCATOR_SECURE MALLOCATOR_FAIL_MMAP FUZZ_SELFTEST FUZZ_TRACE

engine=${FUZZ_ENGINE:-auto}
case $engine in auto | libfuzzer | driver) ;; *) echo "FUZZ_ENGINE must be auto, libfuzzer or driver" >&2; exit 2 ;; esac
cargo_tc=(cargo)
[ -n "${FUZZ_TOOLCHAIN:-}" ] && cargo_tc=(cargo "+$FUZZ_TOOLCHAIN")

T64=x86_64-unknown-linux-gnu
T32=i686-unknown-linux-gnu
logs=$fuzz_dir/target/run-logs
mkdir -p "$logs" "$fuzz_dir/artifacts"

# Prints a log without the library's "mallocator: ..." lines (one per bad
# free, expected), last $2 lines.
show_log() {
    grep -v '^mallocator: ' "$1" | tail -n "${2:-40}" | sed 's/^/    /'
}

# ---- 1. the stable driver --------------------------------------------------
targets=(--target "$T64")
with32=1
if [ -n "${FUZZ_NO_32:-}" ]; then
    with32=0
elif command -v rustup >/dev/null && ! rustup target list --installed 2>/dev/null | grep -qx "$T32"; then
    echo "run.sh: the $T32 target is not installed: no 32-bit jobs (rustup target add $T32)"
    with32=0
fi
[ $with32 = 1 ] && targets+=(--target "$T32")

echo "run.sh: building the driver (${targets[*]})"
if ! cargo build --release --no-default-features --bin driver "${targets[@]}" >"$logs/build-driver.log" 2>&1; then
    echo "run.sh: FAILED: the driver does not build:"
    show_log "$logs/build-driver.log" 40
    exit 1
fi
driver64=$fuzz_dir/target/$T64/release/driver
driver32=$fuzz_dir/target/$T32/release/driver

# The self-test: a model corrupted on purpose must be caught.
selftest() { # driver name
    local log=$logs/selftest-$2.log
    FUZZ_SELFTEST=1 FUZZ_ARTIFACTS=$logs FUZZ_STDERR_LOG=$logs/selftest-$2.stderr \
        timeout 120 "$1" --iters 50 --seed 1 --quiet >"$log" 2>&1
    local rc=$?
    if [ $rc = 101 ] && grep -q 'FUZZ FAILURE:' "$log" && grep -q 'contents changed' "$log"; then
        echo "run.sh: self-test $2: a corrupted block is caught (exit $rc): ok"
        rm -f "$logs"/crash-*.bin "$logs/selftest-$2.stderr"
        return 0
    fi
    echo "run.sh: FAILED: self-test $2: FUZZ_SELFTEST=1 should fail with 'contents changed' (exit 101), got exit $rc:"
    show_log "$log" 20
    return 1
}
selftest "$driver64" driver64 || exit 1
if [ $with32 = 1 ]; then selftest "$driver32" driver32 || exit 1; fi

# ---- 2. libFuzzer ------------------------------------------------------------
use_libfuzzer=0
# cargo-fuzz's -Z flags (sanitizer, coverage) need nightly; RUSTC_BOOTSTRAP=1
# lets the stable compiler take them. LTO off: it breaks the coverage
# instrumentation (undefined __sancov_gen_ symbols, rust-fuzz/cargo-fuzz#384).
lf_env=(env RUSTC_BOOTSTRAP=1 CARGO_PROFILE_RELEASE_LTO=false)
if [ "$engine" != driver ]; then
    if ! "${cargo_tc[@]}" fuzz --version >/dev/null 2>&1; then
        why="cargo-fuzz is not installed (cargo install cargo-fuzz)"
    else
        echo "run.sh: building the libFuzzer target (${cargo_tc[*]} fuzz build ops)"
        if (cd "$root" && "${lf_env[@]}" "${cargo_tc[@]}" fuzz build ops --fuzz-dir "$fuzz_dir") \
            >"$logs/build-libfuzzer.log" 2>&1; then
            use_libfuzzer=1
        else
            why="cargo fuzz build failed ($logs/build-libfuzzer.log):
$(grep -E '^error|undefined symbol' "$logs/build-libfuzzer.log" | awk '!seen[$0]++' | head -4 | sed 's/^/      /')"
        fi
    fi
    if [ $use_libfuzzer = 0 ]; then
        if [ "$engine" = libfuzzer ]; then
            echo "run.sh: FAILED: libFuzzer requested but $why"
            exit 1
        fi
        echo "run.sh: libFuzzer not used: $why"
        echo "run.sh: the 64-bit default-options job uses the stable driver instead"
    fi
fi
lf_run=("${lf_env[@]}" "${cargo_tc[@]}" fuzz run ops --fuzz-dir "$fuzz_dir")
if [ $use_libfuzzer = 1 ]; then
    # The libFuzzer self-test: a corrupted model must crash the target.
    (cd "$root" && FUZZ_SELFTEST=1 timeout 300 "${lf_run[@]}" -- -runs=500 -seed=1 \
        -artifact_prefix="$logs/selftest-") >"$logs/selftest-libfuzzer.log" 2>&1
    rc=$?
    rm -f "$logs"/selftest-crash-*
    if [ $rc != 0 ] && grep -q 'contents changed' "$logs/selftest-libfuzzer.log"; then
        echo "run.sh: self-test libfuzzer: a corrupted block is caught (exit $rc): ok"
    else
        echo "run.sh: FAILED: self-test libfuzzer: FUZZ_SELFTEST=1 should fail with 'contents changed', got exit $rc:"
        show_log "$logs/selftest-libfuzzer.log" 20
        exit 1
    fi
fi

# ---- 3. the jobs ---------------------------------------------------------------
names=() pids=()
start_job() { # name, command...
    local name=$1
    shift
    names+=("$name")
    "$@" >"$logs/$name.log" 2>&1 &
    pids+=($!)
}
# A job that outlives SECONDS by this much hangs (a deadlock is a finding too).
grace=$((secs + 180))
driver_job() { # name, binary, secure
    local art=$fuzz_dir/artifacts/driver-$1
    mkdir -p "$art"
    start_job "$1" env ${3:+MALLOCATOR_SECURE=1} FUZZ_ARTIFACTS="$art" FUZZ_STDERR_LOG="$logs/$1.stderr" \
        timeout -k 10 $grace "$2" --seconds "$secs" --quiet
}

echo "run.sh: fuzzing for $secs s"
if [ $use_libfuzzer = 1 ]; then
    mkdir -p "$fuzz_dir/corpus/ops" "$fuzz_dir/artifacts/ops"
    start_job libfuzzer64 bash -c 'cd "$1" && shift && exec "$@"' _ "$root" \
        timeout -k 10 $grace "${lf_run[@]}" -- -max_total_time="$secs" -timeout=60 -max_len=4096 \
        -rss_limit_mb=4096 -print_final_stats=1
else
    driver_job driver64 "$driver64" ""
fi
driver_job driver64-secure "$driver64" 1
if [ $with32 = 1 ]; then
    driver_job driver32 "$driver32" ""
    driver_job driver32-secure "$driver32" 1
fi

failed=()
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    rc=$?
    name=${names[$i]}
    log=$logs/$name.log
    if [ $rc = 0 ]; then
        if [ "$name" = libfuzzer64 ]; then
            summary=$(grep -E '^Done [0-9]+ runs|stat::number_of_executed_units' "$log" | head -1)
        else
            summary=$(grep '^driver: OK' "$log" | sed 's/^driver: //')
        fi
        echo "run.sh: $name: $summary"
    else
        case $rc in 124 | 137) what="hung (killed after $grace s)" ;; *) what="exit status $rc" ;; esac
        echo "run.sh: FAILED: $name: $what; log $log:"
        show_log "$log" 40
        failed+=("$name")
    fi
done
rm -f "$logs"/*.stderr 2>/dev/null

if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: FAILED: ${failed[*]} (failing inputs in $fuzz_dir/artifacts/)"
    exit 1
fi
echo "run.sh: PASS: ${#names[@]} fuzz jobs ($( [ $use_libfuzzer = 1 ] && echo libFuzzer + driver || echo driver only)), $secs s each"
