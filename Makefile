# libtfo: `make demo` builds everything and shows Fast Open at work;
# `make test` builds everything and runs every test.

CC      ?= gcc
CFLAGS  ?= -O2 -g -Wall -Wextra
EXAMPLES = tfo_client tfo_echo_server tfo_trace
EXAMPLE_BINS = $(addprefix target/examples/,$(EXAMPLES))

.PHONY: all build demo test clean

all: build

build: $(EXAMPLE_BINS)
	cargo build --release --workspace

target/examples/%: examples/%.c
	@mkdir -p target/examples
	$(CC) $(CFLAGS) -o $@ $<

demo: build
	tests/in-netns -- examples/demo.sh

test: build
	cargo test --release --workspace

clean:
	cargo clean
