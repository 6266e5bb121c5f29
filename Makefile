# Mallocator: `make` sets up what is missing, builds libmemory.so for i686 and
# x86_64, and runs the six seed programs in both; `make test` runs every test.
SHELL := /bin/bash
LIB32 := target/i686-unknown-linux-gnu/release/libmemory.so
LIB64 := target/x86_64-unknown-linux-gnu/release/libmemory.so

.PHONY: all setup build demo test test-rust test-c lint clean

all: setup build demo

# Idempotent: installs only what is missing (needs root for apt-get).
setup:
	@rustup target list --installed | grep -qx i686-unknown-linux-gnu || rustup target add i686-unknown-linux-gnu
	@[ -f "$$(gcc -m32 -print-file-name=crti.o)" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-multilib; }

build: setup
	cargo build --release

demo: build
	$(MAKE) -C test BITS=32 run
	$(MAKE) -C test BITS=64 run

test: build test-rust test-c lint

test-rust:
	cargo test --release

test-c: build
	$(MAKE) -C test BITS=32 run
	$(MAKE) -C test BITS=64 run

lint:
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings

clean:
	cargo clean
	$(MAKE) -C test clean
