#!/usr/bin/env bash
# Checks benchmark end to end (issue 10): smtp-source as a remote sender
# whose domain has SPF, DKIM and DMARC records in a private Knot -> Postfix
# (no checks) | estafeta (every check) | estafeta (checks off) -> Maildir,
# interleaved in one run, unsigned and DKIM-signed messages. Prints a
# markdown table. Root:
#
#   bash tests/bench/checks_e2e.sh                                  # everything, 3 runs
#   bash tests/bench/checks_e2e.sh --targets postfix --runs 1       # a quick look
#   bash tests/bench/checks_e2e.sh --dkim rsa,ed25519               # the signed message signed twice
#   bash tests/bench/checks_e2e.sh --help
#
# Inside ../shared/bench/run.sh (loopback only); see relay.sh.
BENCH_SCRIPT=checks_e2e.py exec bash "$(dirname "$0")/relay.sh" "$@"
