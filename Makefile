# Both entry points create and reuse .venv: torch (the CPU build pinned below) goes in first,
# so that the package's own `torch>=2.4` range is already met and pip pulls no CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH_SPEC ?= torch==2.13.0

# bench/ arrives with the serving-core issue; lint it once it exists.
LINT_PATHS := src tests migrations $(wildcard bench)

.PHONY: serve test lint bench soak fuzz fmt clean promtool chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# promtool (tests/deploy checks deploy/prometheus/ with it) comes from Debian's `prometheus`
# package: installed only when missing, and only as root with apt-get (elsewhere a note, and
# those tests skip). The package would start a Prometheus server on :9090: a policy-rc.d that
# answers 101 keeps invoke-rc.d from starting it (added for the install, removed after, unless
# one was there already), and a server that a systemd or SysV init started anyway is stopped and
# disabled. No recommends: prometheus-node-exporter would be one more service.
PROMTOOL_LOG := /tmp/maas-promtool-install.log
promtool:
	@command -v promtool >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: promtool is missing and cannot be installed here (needs root and apt-get: apt-get install prometheus); tests/deploy skips its Prometheus checks"; \
	  exit 0; \
	fi; \
	echo "installing promtool (Debian package prometheus; its server is kept stopped)"; \
	added=; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
	  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added=1; \
	fi; \
	apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >>$(PROMTOOL_LOG) 2>&1; }; \
	apt_install || { apt-get update -q >>$(PROMTOOL_LOG) 2>&1 && apt_install; } \
	  || echo "note: apt-get install prometheus failed (see $(PROMTOOL_LOG)); tests/deploy skips its Prometheus checks"; \
	if [ -n "$$added" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then \
	  systemctl disable --now prometheus.service >/dev/null 2>&1 || true; \
	elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then \
	  /etc/init.d/prometheus stop >/dev/null 2>&1 || true; \
	  update-rc.d prometheus disable >/dev/null 2>&1 || true; \
	fi

# chromium (tests/console drives the operator console in it, through Playwright) comes from
# Debian's `chromium` package: installed only when missing, and only as root with apt-get
# (elsewhere a note, and those tests skip). No recommends.
CHROMIUM_LOG := /tmp/maas-chromium-install.log
chromium:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: chromium is missing and cannot be installed here (needs root and apt-get: apt-get install chromium); tests/console skips its browser tests"; \
	  exit 0; \
	fi; \
	echo "installing chromium (Debian package chromium) for the console's browser tests"; \
	apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >>$(CHROMIUM_LOG) 2>&1; }; \
	apt_install || { apt-get update -q >>$(CHROMIUM_LOG) 2>&1 && apt_install; } \
	  || echo "note: apt-get install chromium failed (see $(CHROMIUM_LOG)); tests/console skips its browser tests"

serve: $(STAMP)
	$(BIN)/maas serve --demo

test: $(STAMP) promtool chromium
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The soak: `small` at C=64 for 10 minutes, every process's RSS watched (bench/soak.py).
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# The long fuzz campaign: tests/fuzz with 2000 cases per operation and phase (`make test`
# runs it with 40: ~2,700 cases). Measured here: 63,884 cases in 23 minutes (900 gave 29,898;
# the count grows slower than N: small operations run out of new cases). FUZZ_EXAMPLES=N.
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	MAAS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MAAS_FUZZ_TIMEOUT_S=7200 $(BIN)/python -m pytest -q -s tests/fuzz

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy src
	$(BIN)/lint-imports
	@# modules of one concept: none over 400 lines (CONTRIBUTING.md)
	@awk 'FNR == 401 { print FILENAME ": over 400 lines; split it along its seams"; bad = 1 } \
		END { exit bad }' $$(find src/maas -name '*.py')

fmt: $(STAMP)
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

clean:
	rm -rf $(VENV) maas-data .pytest_cache .mypy_cache .ruff_cache
