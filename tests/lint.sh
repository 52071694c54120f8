#!/usr/bin/env bash
# Lint, format check and type check of the source (run by tests/run.sh
# before the tests; needs the venv that tests/install-deps.sh makes).
#
#   ruff check .             the linter (rules in pyproject.toml [tool.ruff])
#   ruff format --check .    the formatter: `ruff format .` fixes what it finds
#   mypy -p estafeta         the type checker, over a tree of links that gives
#                            the folders their import names (estafeta.actors
#                            = actors/, ...; pyproject.toml package-dir)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
tree=.venv/mypy-tree
mkdir -p "$tree/estafeta"
for d in actors proto store supervisor tracing; do ln -sfn "$repo/$d" "$tree/estafeta/$d"; done
(cd "$tree" && "$repo/.venv/bin/mypy" --config-file "$repo/pyproject.toml" --no-incremental -p estafeta)
