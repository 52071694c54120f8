#!/usr/bin/env bash
# Install what the test suite needs, on a fresh Debian 12 machine, as root.
# Idempotent: a second run does nothing that is already done.
#
#   - Debian packages: swaks (SMTP client), postfix (for its smtp-source load
#     generator only: debconf is preseeded "No configuration", so the system
#     Postfix is never configured nor started); python3-venv if python3
#     cannot make a venv (Debian's own python3 needs it).
#   - the project's venv .venv (python3 -m venv) with `pip install -e '.[test]'`,
#     redone only when pyproject.toml changed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

pkgs=(postfix swaks)
python3 -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3-venv)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    apt-get update -q
    # Preseed before postfix's postinst runs: never configure the system MTA.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || { echo "install-deps: smtp-source missing" >&2; exit 1; }
command -v swaks >/dev/null || { echo "install-deps: swaks missing" >&2; exit 1; }

cd "$repo"
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.estafeta-install-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import estafeta.supervisor.cli, pytest, pytest_timeout, mypy' 2>/dev/null; then
    echo "install-deps: pip install -e '.[test]'"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi
