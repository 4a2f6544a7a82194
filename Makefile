# ssed: `make run` to try it, `make test` before every commit.
CARGO ?= cargo

.PHONY: all build run test check fmt clippy clean

all: build

build:
	$(CARGO) build --release --locked

run: build
	./target/release/ssed $(ARGS)

# The whole suite: formatting, lints as errors, then every test.
test: check
	$(CARGO) test --locked --all-targets

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
