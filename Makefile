# Mallocator: `make` sets up what is missing, builds libmemory.so for i686 and
# x86_64, and runs the six seed programs in both; `make test` runs every test.
SHELL := /bin/bash
LIB32 := target/i686-unknown-linux-gnu/release/libmemory.so
LIB64 := target/x86_64-unknown-linux-gnu/release/libmemory.so
PROF_BIN := target/x86_64-unknown-linux-gnu/release/mallocator-prof
# The profile tool runs on the build machine only: one width, the host's.
PROF = cargo $(1) --release -p mallocator-prof --target x86_64-unknown-linux-gnu

PREFIX ?= /usr/local

.PHONY: all setup build demo test test-rust test-tsan test-c test-guards test-install test-profile test-bench test-fuzz lint install bench clean

all: setup build demo

# Idempotent: installs only what is missing (needs root for apt-get).
setup:
	@rustup target list --installed | grep -qx i686-unknown-linux-gnu || rustup target add i686-unknown-linux-gnu
	@[ -f "$$(gcc -m32 -print-file-name=crti.o)" ] && [ -f "$$(g++ -m32 -print-file-name=libstdc++.so)" ] && \
	  command -v pkg-config >/dev/null && command -v sqlite3 >/dev/null || \
	  { apt-get -o Acquire::Retries=3 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y -qq gcc-multilib g++-multilib pkg-config sqlite3; }
	@command -v go >/dev/null || { apt-get -o Acquire::Retries=3 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y -qq golang-go; }
	@command -v valgrind >/dev/null || { apt-get -o Acquire::Retries=3 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y -qq valgrind; }

build: setup
	cargo build --release
	$(call PROF,build)

demo: build
	$(MAKE) -C test BITS=32 run
	$(MAKE) -C test BITS=64 run

test: build test-rust test-tsan test-c test-guards test-install test-profile test-bench test-fuzz lint

test-rust:
	cargo test --release
	$(call PROF,test)

# The multithreaded Rust tests under ThreadSanitizer (x86_64): std rebuilt
# with it (-Zbuild-std, the rust-src component; RUSTC_BOOTSTRAP=1 gives the
# -Z flags on stable). Without the malloc exports (-p mallocator, no default
# features), so that TSan's own malloc serves the test harness. Any report
# fails the run. Unwinding panics: std's panic_abort cannot be rebuilt here.
TSAN_TESTS := --lib --test threads --test global_alloc --test stats
test-tsan:
	@rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
	RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Zsanitizer=thread CARGO_PROFILE_DEV_PANIC=unwind \
	  TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
	  cargo test -Zbuild-std --target x86_64-unknown-linux-gnu --target-dir target/tsan \
	    -p mallocator --no-default-features $(TSAN_TESTS)

test-c: build
	$(MAKE) -C test BITS=32 run
	$(MAKE) -C test BITS=64 run

# Figures won, as checks that fail when they slip (deterministic, no timing):
# instructions per malloc+free pair under callgrind, test 6's utilisation
# (test/guards/guard.sh has the budgets and why).
test-guards: build
	$(MAKE) -C test BITS=32 build/32/test6
	$(MAKE) -C test BITS=64 build/64/test6
	test/guards/guard.sh 32
	test/guards/guard.sh 64

# Installs the 64-bit library in $(PREFIX)/lib, the 32-bit one in
# $(PREFIX)/lib32, the header, a pkg-config file for each, and the profile
# tool in $(PREFIX)/bin (its `run` finds the libraries beside it).
install: build
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/lib32/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/memory.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(LIB64) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB32) $(DESTDIR)$(PREFIX)/lib32/
	install -m 755 $(PROF_BIN) $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|lib|' pkg/memory.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/memory.pc
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|lib32|' pkg/memory.pc.in > $(DESTDIR)$(PREFIX)/lib32/pkgconfig/memory.pc

# Installs into a scratch prefix and builds a program through pkg-config;
# the installed mallocator-prof runs both widths with their libraries.
test-install: build
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(MAKE) -s install PREFIX=$$tmp && \
	gcc -o $$tmp/check test/install_check.c $$(PKG_CONFIG_PATH=$$tmp/lib/pkgconfig pkg-config --cflags --libs memory) && \
	$$tmp/check && \
	gcc -m32 -o $$tmp/check32 test/install_check.c $$(PKG_CONFIG_PATH=$$tmp/lib32/pkgconfig pkg-config --cflags --libs memory) && \
	$$tmp/check32 && \
	$$tmp/bin/mallocator-prof run -p $$tmp/p -- $$tmp/check > /dev/null && \
	$$tmp/bin/mallocator-prof run -p $$tmp/p -- $$tmp/check32 > /dev/null

# The heap profiler end to end (test/profile/run.sh says what it checks):
# estimates of every allocation path against their statistical bounds, by
# mallocator-prof and go tool pprof, the leak report, a flame graph of
# python3. The Rust example exercises GlobalAlloc (both targets).
test-profile: build
	cargo build --release --example profile_sites
	test/profile/run.sh 32
	test/profile/run.sh 64

# The benchmark suite against glibc, jemalloc, tcmalloc and mimalloc:
# bench/results/REPORT.md and SVG charts (QUICK=1: about a minute).
bench: build
	$(MAKE) -C bench setup run OUT=results $(if $(QUICK),QUICK=1)

test-bench:
	$(MAKE) -C bench test

# Time-bounded fuzzing (libFuzzer when cargo-fuzz is installed, else the
# stable driver), 64- and 32-bit, default and secure mode.
FUZZ_SECONDS ?= 30
test-fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

lint:
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings
	$(call PROF,clippy) --all-targets -- -D warnings

clean:
	cargo clean
	$(MAKE) -C test clean
	$(MAKE) -C bench clean
