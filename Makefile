# libtfo: `make demo` builds everything and shows Fast Open at work;
# `make test` builds everything and runs every test.

CC      ?= gcc
CFLAGS  ?= -O2 -g -Wall -Wextra
EXAMPLES = tfo_client tfo_echo_server tfo_trace
EXAMPLE_BINS = $(addprefix target/examples/,$(EXAMPLES))
BENCHES  = fastpath fastpath_count connect_bench
BENCH_BINS = $(addprefix target/examples/,$(BENCHES))

.PHONY: all build demo test fuzz bench clean

all: build

build: $(EXAMPLE_BINS) $(BENCH_BINS)
	cargo build --release --workspace

target/examples/%: examples/%.c
	@mkdir -p target/examples
	$(CC) $(CFLAGS) -o $@ $<

target/examples/%: bench/%.c
	@mkdir -p target/examples
	$(CC) $(CFLAGS) -o $@ $<

demo: build
	tests/in-netns --delay 50 -- examples/demo.sh

test: build
	cargo test --release --workspace --no-fail-fast

# The differential fuzzer: N random call sequences from SEED, natively and
# under libtfo; each kind of divergence is shrunk to a scenario line.
N    ?= 1000
SEED ?= 1
fuzz: build
	target/release/tfo-fuzz --count $(N) --seed $(SEED)

bench: build
	bench/run

clean:
	cargo clean
