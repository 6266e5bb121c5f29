#!/bin/bash
# The heap profiler's end-to-end test, for one width:  run.sh 32|64
#
# sites.c (60/30/10 % of the bytes from three call sites, built -O2 -g) runs
# with profiling on; mallocator-prof top and go tool pprof -top must each
# give every site its share within 3 points, of the profile dumped with all
# blocks live and of the bytes allocated in the exit profile; the leak report
# must name the one site whose blocks leak. On 64-bit, python3 under
# LD_PRELOAD dumps a profile that mallocator-prof draws as a flame graph.
set -euo pipefail
BITS=${1:?usage: run.sh 32|64}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case $BITS in
  32) triple=i686-unknown-linux-gnu; arch=-m32 ;;
  64) triple=x86_64-unknown-linux-gnu; arch=-m64 ;;
  *) echo "run.sh: BITS must be 32 or 64" >&2; exit 2 ;;
esac
libdir=$root/target/$triple/release
prof=$root/target/x86_64-unknown-linux-gnu/release/mallocator-prof
for need in "$libdir/libmemory.so" "$prof"; do
  [ -e "$need" ] || { echo "run.sh: $need not built (make build)" >&2; exit 1; }
done
command -v go >/dev/null || { echo "run.sh: go not found (make setup installs golang-go)" >&2; exit 1; }
# go tool pprof keeps symbolized copies here; a scratch one keeps runs apart.
export PPROF_TMPDIR
tmp=$(mktemp -d); PPROF_TMPDIR=$tmp/pprof; trap 'rm -rf "$tmp"' EXIT

gcc $arch -O2 -g -I"$root/include" -o "$tmp/sites" "$here/sites.c" \
    -L"$libdir" -lmemory -Wl,-rpath,"$libdir"
# A small rate for many samples (see sites.c); the leak report's true figure
# is ROUNDS x TEN bytes.
env -u MALLOCATOR_ON_ERROR MALLOCATOR_PROFILE="$tmp/exit" MALLOCATOR_PROFILE_RATE=4096 MALLOCATOR_LEAKS=1 \
    "$tmp/sites" "$tmp/live.pb.gz" 2> "$tmp/leaks.txt"
exitprof=$(ls "$tmp"/exit.*.pb.gz)

"$prof" top "$tmp/live.pb.gz" > "$tmp/top.txt"
"$here/check.py" shares prof "$tmp/top.txt"
go tool pprof -top "$tmp/live.pb.gz" > "$tmp/go.txt" 2> /dev/null
"$here/check.py" shares go "$tmp/go.txt"
# The mapping of the program carries its build id (so that a rebuilt binary
# is not used to name the addresses).
id=$(readelf -n "$tmp/sites" | sed -n 's/.*Build ID: //p')
go tool pprof -raw "$tmp/live.pb.gz" 2> /dev/null | grep -q "$tmp/sites $id" || {
  echo "run.sh: the profile's mapping of sites lacks its build id $id" >&2; exit 1; }
"$prof" top --alloc "$exitprof" > "$tmp/top_alloc.txt"
"$here/check.py" shares prof "$tmp/top_alloc.txt"
go tool pprof -sample_index=alloc_space -top "$exitprof" > "$tmp/go_alloc.txt" 2> /dev/null
"$here/check.py" shares go "$tmp/go_alloc.txt"
"$prof" top "$exitprof" > "$tmp/top_exit.txt"
"$here/check.py" inuse "$tmp/top_exit.txt"
"$here/check.py" leaks "$tmp/leaks.txt" $((30000 * 100))

if [ "$BITS" = 64 ]; then
  # The interpreter itself, not a launcher script (pyenv's shims are bash).
  py=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
  # 80 MB at one sample per 64 KiB: about 1,200 samples, the estimate
  # within a few %.
  env -u MALLOCATOR_ON_ERROR MALLOCATOR_PROFILE="$tmp/py" MALLOCATOR_PROFILE_RATE=65536 LD_PRELOAD="$libdir/libmemory.so" \
      "$py" "$here/flame.py" "$tmp/py.pb.gz"
  "$prof" flamegraph "$tmp/py.pb.gz" -o "$tmp/py.svg"
  "$here/check.py" flame "$tmp/py.svg" $((20000 * 4000)) Py_BytesMain
fi
echo "profile test passed ($BITS-bit)"
