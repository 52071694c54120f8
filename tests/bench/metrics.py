"""Microbenchmark: the cost of one metric update (supervisor/metrics.py) in
multiprocess mode, as the daemon counts: a labelled counter increment and
a histogram observation, each into its mmap file.

    .venv/bin/python tests/bench/metrics.py

Prints µs per call (best of 5 rounds of 100,000). Not a test: numbers go
to docs/PERFORMANCE.md.
"""

from gevent import monkey

monkey.patch_all()

import tempfile  # noqa: E402
import timeit  # noqa: E402

from estafeta.supervisor import metrics  # noqa: E402

N, ROUNDS = 100_000, 5


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        metrics.setup(d, clean=True)
        cases = {
            "count_connection (counter, 1 label)": lambda: metrics.count_connection("smtp"),
            "count_accepted (counter, no label)": metrics.count_accepted,
            "observe_disk (histogram, 13 buckets)": lambda: metrics.observe_disk("queue_write", 0.002),
            "count_delivery delivered (counter + histogram)": lambda: metrics.count_delivery("local", "delivered", 0.5),
        }
        for label, fn in cases.items():
            best = min(timeit.repeat(fn, number=N, repeat=ROUNDS))
            print(f"{label:48} {best / N * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
