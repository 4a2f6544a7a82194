# ssed: `make run` to try it, `make test` before every commit.
CARGO ?= cargo
CHROMIUM ?= /usr/bin/chromium

.PHONY: all build run test check browser-test bench bench-compare fmt clippy clean

all: build

build:
	$(CARGO) build --release --locked

run: build
	./target/release/ssed $(ARGS)

# The whole suite: formatting, lints as errors, every Rust test, then the
# pages in headless Chromium when it is installed (apt-get install chromium).
test: check
	$(CARGO) test --locked --all-targets
	@if [ -x "$(CHROMIUM)" ]; then \
		$(MAKE) --no-print-directory browser-test; \
	else \
		echo "browser tests skipped: $(CHROMIUM) not found (apt-get install chromium)"; \
	fi

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Every page in headless Chromium; screenshots go to screenshots/.
browser-test:
	$(CARGO) build --locked
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && \
		CHROMIUM=$(CHROMIUM) SSED_BIN=$(CURDIR)/target/debug/ssed npm test --silent

# Load benchmark: starts release servers on free loopback ports and prints a
# table (see README, Performance). BENCH_ARGS='--subs 2000 --events 50 --rate 20'.
bench: build
	$(CARGO) run --release --locked --example load -- --bin target/release/ssed $(BENCH_ARGS)

# The same load against axum on tokio and against uvicorn + sse-starlette,
# in one run (scenarios a, b and d; see README, Performance).
BENCH_VENV := target/bench-venv
bench-compare: build
	$(CARGO) build --release --locked --features bench-compare --example compare-axum
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	$(CARGO) run --release --locked --example load -- --bin target/release/ssed --compare \
		--python $(BENCH_VENV)/bin/python --only a,b,d $(BENCH_ARGS)

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
