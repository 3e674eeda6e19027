# libtfo: `make demo` builds everything and shows Fast Open at work;
# `make test` builds everything and runs every test; `make bench` builds
# everything and prints one table of measured ratios (bench/bench.py). All
# three first install the Debian packages of scripts/packages.txt that are
# missing, when root.
# `make install PREFIX=/usr/local DESTDIR=` installs libtfo.so, tfo and its
# man pages; `make uninstall` removes them; `make deb` builds a .deb.

CC      ?= gcc
CFLAGS  ?= -O2 -g -Wall -Wextra
EXAMPLES = tfo_client tfo_echo_server tfo_trace
EXAMPLE_BINS = $(addprefix target/examples/,$(EXAMPLES))
BENCHES  = fastpath fastpath_count ttfb bench_server rate sockets spawn forks
BENCH_BINS = $(addprefix target/examples/,$(BENCHES)) target/examples/libempty_preload.so
# C programs of the reliability tests (tests/programs/*.c).
TEST_PROGRAMS = tfo_stress tfo_signals tfo_procs tfo_badinput tfo_nonetlink tfo_oldkernel tfo_elsewhere
TEST_PROGRAM_BINS = $(addprefix target/examples/,$(TEST_PROGRAMS))

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(PREFIX)/bin
LIBDIR   = $(PREFIX)/lib
MANDIR   = $(PREFIX)/share/man/man1
# One page per command, generated from tfo's clap definitions.
MANPAGES = tfo tfo-run tfo-doctor tfo-cookies tfo-stats tfo-failures tfo-forget tfo-probe
MAN_FILES = $(addprefix target/release/man/,$(addsuffix .1,$(MANPAGES)))

.PHONY: all build packages demo test container-test fuzz reliability bench install uninstall deb clean

all: build

build: $(EXAMPLE_BINS) $(BENCH_BINS) $(TEST_PROGRAM_BINS)
	cargo build --release --workspace
	cargo run --release --quiet -p tfo --example mangen -- target/release/man

target/examples/%: examples/%.c
	@mkdir -p target/examples
	$(CC) $(CFLAGS) -o $@ $<

target/examples/%: bench/%.c bench/preload_env.h
	@mkdir -p target/examples
	$(CC) $(CFLAGS) -o $@ $<

# (tfo_badinput passes NULL and invalid pointers on purpose.)
target/examples/%: tests/programs/%.c tests/programs/frame.h tests/programs/target.h tests/programs/seccomp.h
	@mkdir -p target/examples
	$(CC) $(CFLAGS) -pthread -Wno-nonnull -Wno-stringop-overflow -Wno-stringop-overread -o $@ $<

# What any LD_PRELOAD costs a process, for bench/spawn.c to compare with.
target/examples/libempty_preload.so: bench/empty_preload.c
	@mkdir -p target/examples
	$(CC) $(CFLAGS) -shared -fPIC -o $@ $<

packages:
	scripts/ensure-packages

demo: packages build
	tests/in-netns --delay 50 -- examples/demo.sh

# --no-fail-fast: every test binary runs (a failure in one must not hide
# the others' results).
test: packages build
	cargo test --release --workspace --no-fail-fast

# The container recipe for real (tests/container/run, also part of `make
# test`): mmdebstrap, libtfo's .deb, podman build and run; about 1.5 minutes.
# Needs root, podman, crun, mmdebstrap and cargo-deb (cargo install --locked cargo-deb).
container-test: packages build
	cargo test --release -p tfo-tests --test container

# The reliability suite (tests/tests/reliability.rs) N times bigger than in
# `make test`: N=10 checks about 200 000 connections (about 10 minutes).
N ?= 10
reliability: packages build
	TFO_RELIABILITY_SCALE=$(N) cargo test --release -p tfo-tests --test reliability -- --nocapture

# Installing never runs cargo when the files are built (sudo make install
# need not find a Rust toolchain); a fresh tree is built first.
target/release/tfo target/release/libtfo.so $(MAN_FILES):
	$(MAKE) build

install: target/release/tfo target/release/libtfo.so $(MAN_FILES)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(MANDIR)
	install -m 0755 target/release/tfo $(DESTDIR)$(BINDIR)/tfo
	install -m 0644 target/release/libtfo.so $(DESTDIR)$(LIBDIR)/libtfo.so
	install -m 0644 $(MAN_FILES) $(DESTDIR)$(MANDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tfo $(DESTDIR)$(LIBDIR)/libtfo.so
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/,$(addsuffix .1,$(MANPAGES)))

# cargo-deb (cargo install cargo-deb) packs what `make build` made, as
# tfo/Cargo.toml's [package.metadata.deb] lists it.
deb: build
	cargo deb -p tfo --no-build --strip

# The differential fuzzer: N random call sequences from SEED, natively and
# under libtfo; each kind of divergence is shrunk to a scenario line.
N    ?= 1000
SEED ?= 1
fuzz: build
	target/release/tfo-fuzz --count $(N) --seed $(SEED)

bench: packages build
	bench/run

clean:
	cargo clean
