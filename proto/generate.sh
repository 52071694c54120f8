#!/usr/bin/env bash
# Regenerates proto/*_pb2.py and *_pb2.pyi from proto/*.proto.
# The .proto files import each other as "estafeta/proto/x.proto", so the
# generated modules import "from estafeta.proto import x_pb2"; we compile
# through a temporary tree where estafeta/proto points at this folder.
# Needs grpcio-tools (pip install -e '.[dev]').
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python}
# A relative PYTHON (".venv/bin/python") is made absolute before the cd below.
case $py in */*) py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py") ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/estafeta"
ln -s "$here" "$tmp/estafeta/proto"
cd "$tmp"
"$py" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. estafeta/proto/*.proto
