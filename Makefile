# Deni developer commands. Everything runs from the project venv (.venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: re-install only when pyproject.toml changes.
STAMP := $(VENV)/.installed-stamp
SRC := src tests benchmarks deploy
# Processes for `make mutation`: one per core.
MUTATION_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: venv run lint test test-fast chromium alert-tests monitoring-tools pgbackrest backup-drill \
	bench soak mutation fmt clean stack stack-down stack-status stack-check stack-packages systemd-verify

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Deni needs Python >= 3.11 ($(PYTHON) is older)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The embedded default: SQLite, the in-process M-PESA worker and the local Daraja sandbox
# (DENI_SANDBOX=on), so one command shows a whole loan: top-up, request, approve, payout, repay.
run: venv
	$(BIN)/deni db upgrade
	DENI_MPESA=on DENI_SANDBOX=on $(BIN)/deni serve

lint: venv
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy
	$(BIN)/mypy deploy
	$(BIN)/lint-imports

# The service tier runs on SQLite too here, which holds its fakes to the real repositories.
test: venv lint chromium alert-tests pgbackrest
	DENI_TEST_SERVICES_SQLITE=1 $(BIN)/pytest $(PYTEST_ARGS)

# The quick loop: the services on in-memory fakes (tests/services) and the unit tests.
test-fast: venv
	$(BIN)/pytest tests/services tests/unit $(PYTEST_ARGS)

# The browser tests (tests/web) drive Debian's Chromium; Playwright never downloads a browser.
# As root with apt (CI, a fresh machine) install it when missing, refreshing the package lists
# only if the plain install fails. Without it the browser tests skip (and fail under CI=true).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends chromium \
			|| { apt-get update && apt-get install -y --no-install-recommends chromium; }; \
	else echo "no /usr/bin/chromium: the browser tests will skip (apt-get install chromium)"; fi

# The monitoring in deploy/: Prometheus alert rules and their unit tests, the Prometheus and
# Alertmanager configurations, the Grafana dashboard (docs/operations.md is the runbook).
# promtool and amtool come with Debian's prometheus and prometheus-alertmanager: as root with
# apt they are installed when missing, like Chromium above. Without them the checks that need
# them are skipped (and fail under CI=true); the dashboard is checked either way.
# prometheus.yml is checked as a copy whose ops-token file exists (the real one lives in
# /etc/prometheus and is never in the repository).
alert-tests: monitoring-tools
	$(PYTHON) -m json.tool deploy/grafana/deni.json > /dev/null
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then \
		if [ "$$CI" = true ]; then echo "promtool or amtool missing (apt-get install prometheus prometheus-alertmanager)"; exit 1; fi; \
		echo "promtool or amtool missing: alert rules and configs NOT checked"; exit 0; fi; \
	set -e; \
	promtool check rules deploy/prometheus/rules/*.yml; \
	promtool test rules deploy/prometheus/tests/*.yml; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp -R deploy/prometheus/rules "$$tmp/"; echo not-a-token > "$$tmp/deni-ops-token"; \
	sed "s#/etc/prometheus/deni-ops-token#$$tmp/deni-ops-token#" deploy/prometheus/prometheus.yml \
		> "$$tmp/prometheus.yml"; \
	promtool check config "$$tmp/prometheus.yml"; \
	amtool check-config deploy/alertmanager/alertmanager.yml; \
	amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml \
		--verify.receivers=deni-pager severity=critical alertname=DeniOutboxStuck 2>/dev/null; \
	amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml \
		--verify.receivers=deni-team severity=warning alertname=DeniPar30High 2>/dev/null

monitoring-tools:
	@if command -v promtool >/dev/null && command -v amtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's prometheus and prometheus-alertmanager (promtool, amtool)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends prometheus prometheus-alertmanager \
			|| { apt-get update && apt-get install -y --no-install-recommends \
				prometheus prometheus-alertmanager; }; \
	else echo "no promtool/amtool: the alert tests will skip (apt-get install prometheus prometheus-alertmanager)"; fi

# The restore drill (deploy/backup/drill.py; the PostgreSQL tier runs it as a test) drives
# Debian's pgBackRest on a PostgreSQL cluster of its own. As root with apt install pgBackRest
# when missing, as for chromium above; without it the drill's test skips (fails under CI=true).
pgbackrest:
	@if command -v pgbackrest >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's pgbackrest for the restore drill"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends pgbackrest \
			|| { apt-get update && apt-get install -y --no-install-recommends pgbackrest; }; \
	else echo "no pgbackrest: the restore drill will skip (apt-get install pgbackrest)"; fi

# The restore drill alone, printing what it measured (docs/backups.md). DRILL_ARGS: e.g.
# --port 18610 --json drill.json --keep.
backup-drill: venv pgbackrest
	$(BIN)/python deploy/backup/drill.py $(DRILL_ARGS)

bench: venv
	$(BIN)/python -m benchmarks.run

# The whole system under load and faults, then the proof that no shilling was lost or paid
# twice (docs/benchmarks-soak.md). SOAK_SECONDS (default 600) and SOAK_SEED (default random,
# printed; the same seed replays the same people and fault schedule). Needs PostgreSQL on
# 127.0.0.1:5432 and redis-server; starts its own Redis, sandbox, APIs and workers on
# SOAK_PORT_BASE (18790) and up. Writes var/soak/run-SEED/soak.json and soak.svg.
soak: venv
	$(BIN)/python -m benchmarks.soak

# Mutation testing of the money core (docs/testing.md): slow, so neither `make test` nor CI runs
# it. Starts afresh each time; the files and tests it uses are in pyproject.toml [tool.mutmut].
mutation: venv
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS)
	$(BIN)/python -m tests.mutation_score

fmt: venv
	$(BIN)/ruff format $(SRC)
	$(BIN)/ruff check --fix $(SRC)

# The production topology on this machine (deploy/stack/stack.sh says what runs where):
# Caddy (HTTPS, its local CA) in front of 2 API processes, the worker, the Daraja sandbox,
# Prometheus and Alertmanager; PostgreSQL and Redis must be running. State in var/stack/.
# Too heavy for `make test`: `make stack-check` exercises a running stack end to end.
stack: venv stack-packages
	deploy/stack/stack.sh up

stack-down:
	deploy/stack/stack.sh down

stack-status:
	deploy/stack/stack.sh status

stack-check: venv
	deploy/stack/check.sh

# The units of deploy/systemd as systemd-analyze reads them (also part of `make test`).
systemd-verify: venv
	$(BIN)/pytest -q tests/deploy

# Debian's Caddy, Prometheus and Alertmanager, installed as `chromium` is when missing. On a
# machine run by systemd, Debian also starts the packages' own services on their usual ports;
# the stack runs its own copies on its own ports and leaves those alone.
STACK_PACKAGES := caddy:caddy prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager
stack-packages:
	@missing=""; for pair in $(STACK_PACKAGES); do \
		command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's$$missing for make stack"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends $$missing \
			|| { apt-get update && apt-get install -y --no-install-recommends $$missing; }; \
	else echo "make stack needs$$missing: apt-get install$$missing"; exit 1; fi

# Leaves .venv and ./var (local data) alone; delete those by hand if you mean it.
clean:
	rm -rf .mypy_cache .pytest_cache .ruff_cache .hypothesis .import_linter_cache \
		.coverage htmlcov build dist src/*.egg-info mutants
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
