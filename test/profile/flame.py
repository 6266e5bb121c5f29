"""Run by run.sh as python3 under LD_PRELOAD=libmemory.so with profiling
on: holds 80 MB of bytes objects (over pymalloc's 512-byte limit, so they
come from malloc), then has the allocator write its profile (argv[1])
through ctypes, as any program could at its peak."""
import ctypes
import sys


def hold_bytes(n):
    return [bytes(4000) for _ in range(n)]


kept = hold_bytes(20000)
dump = ctypes.CDLL(None).memory_profile_dump
dump.argtypes = [ctypes.c_char_p]
if dump(sys.argv[1].encode()) != 0:
    sys.exit(f"memory_profile_dump failed: errno {ctypes.get_errno()}")
print(f"{len(kept)} blocks held, profile in {sys.argv[1]}")
