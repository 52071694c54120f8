#!/usr/bin/env bash
# Install what the test suite needs, on a fresh Debian 12 machine, as root.
# Idempotent: a second run does nothing that is already done.
#
#   - Debian packages: swaks and msmtp (SMTP clients), postfix (its
#     smtp-source load generator and smtp-sink scripted MX, and private
#     Postfix instances as remote MXes: debconf is preseeded "No
#     configuration", so the system Postfix is never configured nor
#     started), knot (an authoritative DNS server the tests run on
#     loopback), dovecot-core + dovecot-lmtpd (a private Dovecot for LMTP),
#     opendkim-tools and opendkim (OpenDKIM: an independent DKIM signer and
#     verifier, run in its test mode), libmail-dkim-perl (Mail::DKIM, a
#     second one), chromium +
#     chromium-driver (the web page's browser tests), openssl, iproute2
#     (`ip`, inside the network namespaces of tests/peers/netns_dns.py and
#     tests/e2e/netns_remote_client.py); python3-venv
#     if python3 cannot make a venv (Debian's own python3 needs it). No
#     installed service is started: a policy-rc.d refuses every start
#     during the install, and the tests run private instances only.
#   - the project's venv .venv with `pip install -e '.[test]'`, made with
#     Debian's /usr/bin/python3 (built with PGO and a static libpython:
#     measured 4 % less CPU per relayed message and 15 % less for the SMTP
#     protocol than a pyenv build with --enable-shared, docs/PERFORMANCE.md),
#     or $ESTAFETA_PYTHON, or the python3 on PATH where there is no Debian
#     one; a venv made by another interpreter is made again;
#     redone only when pyproject.toml changed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

pkgs=(postfix swaks msmtp knot dovecot-core dovecot-lmtpd opendkim-tools opendkim libmail-dkim-perl chromium chromium-driver openssl iproute2)
PY=${ESTAFETA_PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=$(command -v python3)
"$PY" -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3-venv)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    apt-get update -q
    # Preseed before postfix's postinst runs: never configure the system MTA.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # No service starts at install (knot, dovecot): the tests run their own.
    policy=/usr/sbin/policy-rc.d
    had_policy=0; [ -e $policy ] && had_policy=1
    [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' > $policy; chmod 755 $policy; }
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    [ $had_policy = 1 ] || rm -f $policy
fi
command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || { echo "install-deps: smtp-source missing" >&2; exit 1; }
for tool in swaks msmtp knotd knotc dovecot opendkim-testkey opendkim chromium chromedriver openssl ip unshare; do
    command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || { echo "install-deps: $tool missing" >&2; exit 1; }
done

cd "$repo"
want_home=$(dirname "$(readlink -f "$PY")")
have_home=$(sed -n 's/^home = //p' .venv/pyvenv.cfg 2>/dev/null || true)
if [ -x .venv/bin/python ] && [ "$(readlink -f "$have_home")" != "$want_home" ]; then
    echo "install-deps: .venv was made by $have_home, not $PY: made again"
    rm -rf .venv
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.estafeta-install-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import estafeta.supervisor.cli, pytest, pytest_timeout, mypy' 2>/dev/null; then
    echo "install-deps: pip install -e '.[test]'"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi
