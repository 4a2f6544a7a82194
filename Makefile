# ssed: `make run` to try it, `make test` before every commit.
CARGO ?= cargo
CHROMIUM ?= /usr/bin/chromium
PREFIX ?= /usr/local

IMAGE ?= ssed:latest
# The image's static build has a target directory of its own: a build
# under way elsewhere (the tests) does not wait for it.
IMAGE_TARGET ?= target/image

.PHONY: all build run install uninstall image test check browser-test compat-test bench bench-compare soak fmt clippy clean

all: build

build:
	$(CARGO) build --release --locked

run: build
	./target/release/ssed $(ARGS)

# The binary to $(DESTDIR)$(PREFIX)/bin (PREFIX=/usr/local by default).
install: build
	install -D -m 755 target/release/ssed $(DESTDIR)$(PREFIX)/bin/ssed

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/ssed

# A container image without pulling anything: a static build (glibc linked
# in, so the image needs no libraries) in an image FROM scratch, run as
# nobody. `Dockerfile` builds the same from source on a connected machine.
image:
	RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=$(IMAGE_TARGET) \
		$(CARGO) build --release --locked --target x86_64-unknown-linux-gnu
	mkdir -p $(IMAGE_TARGET)/context
	cp $(IMAGE_TARGET)/x86_64-unknown-linux-gnu/release/ssed $(IMAGE_TARGET)/context/ssed
	printf '%s\n' 'FROM scratch' 'COPY ssed /ssed' 'USER 65534:65534' 'EXPOSE 8000' \
		'ENTRYPOINT ["/ssed"]' 'CMD ["--addr", "0.0.0.0:8000"]' \
		| docker build --quiet -t $(IMAGE) -f - $(IMAGE_TARGET)/context
	@docker image inspect $(IMAGE) --format '$(IMAGE): {{.Size}} bytes'

# The whole suite: formatting, lints as errors, every Rust test, the
# third-party clients, then the pages in headless Chromium when it is
# installed (apt-get install chromium).
test: check
	$(CARGO) test --locked --all-targets
	$(MAKE) --no-print-directory compat-test
	@if [ -x "$(CHROMIUM)" ]; then \
		$(MAKE) --no-print-directory browser-test; \
	else \
		echo "browser tests skipped: $(CHROMIUM) not found (apt-get install chromium)"; \
	fi

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Every page in headless Chromium; screenshots go to screenshots/.
browser-test: tests/browser/node_modules/.package-lock.json
	$(CARGO) build --locked
	cd tests/browser && CHROMIUM=$(CHROMIUM) SSED_BIN=$(CURDIR)/target/debug/ssed npm test --silent

# httpx-sse, sseclient-py and undici's EventSource read ssed's streams and
# must see exactly the events sent (pinned: tests/compat/requirements.txt,
# tests/browser/package.json).
COMPAT_VENV := target/compat-venv
compat-test: tests/browser/node_modules/.package-lock.json
	$(CARGO) build --locked
	test -x $(COMPAT_VENV)/bin/python || python3 -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/compat/requirements.txt
	SSED_BIN=$(CURDIR)/target/debug/ssed $(COMPAT_VENV)/bin/python tests/compat/clients.py

tests/browser/node_modules/.package-lock.json: tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error

# Load benchmark: starts release servers on free loopback ports and prints a
# table (see docs/performance.md). BENCH_ARGS='--subs 2000 --events 50 --rate 20'.
bench: build
	$(CARGO) run --release --locked --example load -- --bin target/release/ssed $(BENCH_ARGS)

# RSS under a steady churn of subscribers and publishes (see docs/limits.md,
# Small hosts): SOAK_MINUTES=30 by default; prints the drift once the
# history is full.
SOAK_MINUTES ?= 30
soak: build
	python3 tests/bench/soak.py --bin target/release/ssed --minutes $(SOAK_MINUTES)

# The same load against axum on tokio and against uvicorn + sse-starlette,
# in one run (scenarios a, b and d; see docs/performance.md).
BENCH_VENV := target/bench-venv
bench-compare: build
	$(CARGO) build --release --locked --features bench-compare --example compare-axum
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	$(CARGO) run --release --locked --example load -- --bin target/release/ssed --compare \
		--python $(BENCH_VENV)/bin/python --only a,b,d,e,f $(BENCH_ARGS)

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
