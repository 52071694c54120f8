#!/usr/bin/env bash
# Run the whole test suite: unit and end-to-end tests, slow ones included.
#
#   bash tests/run.sh                 # everything (what .ci/run does)
#   bash tests/run.sh -m "not slow"   # unit tests only (seconds)
#   bash tests/run.sh tests/e2e -k kill
#
# Installs what it needs first (tests/install-deps.sh: Debian's swaks and
# postfix's smtp-source, the venv .venv), lints and type-checks the source
# (tests/lint.sh: ruff, mypy), then runs pytest with an overall
# time limit (ESTAFETA_TEST_TIMEOUT seconds, default 2400); each test has
# its own limit too (pytest-timeout, pyproject.toml).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash tests/install-deps.sh
bash tests/lint.sh
exec timeout --signal=TERM --kill-after=30 "${ESTAFETA_TEST_TIMEOUT:-2400}" \
    .venv/bin/python -m pytest -q -ra "$@"
