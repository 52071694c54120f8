#!/usr/bin/env bash
# Submission benchmark (issue 9): STARTTLS + AUTH PLAIN at c=10 against a
# private Postfix (TLS, Dovecot SASL) and estafeta's SUBMISSION listener,
# interleaved in one run, after the load client's own ceiling; then the
# memory of N sessions idle after STARTTLS. Prints a markdown table. Root:
#
#   bash tests/bench/submission.sh                               # everything (idle: 1,000 sessions)
#   bash tests/bench/submission.sh --targets postfix --runs 1    # a quick look
#   bash tests/bench/submission.sh --dovecot-scheme SHA512-CRYPT # another passdb hash for Postfix
#   bash tests/bench/submission.sh --help
#
# Inside ../shared/bench/run.sh (loopback only); see relay.sh.
BENCH_SCRIPT=submission.py exec bash "$(dirname "$0")/relay.sh" "$@"
