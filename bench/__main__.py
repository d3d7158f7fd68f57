"""`make bench`: every benchmark in turn, then ONE table on stdout (progress on stderr).

Powertools' metrics are switched off and anything the handlers print (an EMF blob when a metric
set reaches 100 values is printed directly, whatever the switch) goes to /dev/null while the
benchmarks run, so the table is all stdout carries. BENCH_OUT=<file> also writes the table there.
"""

from __future__ import annotations

import contextlib
import os
import sys

# Before any handler module is imported (the metrics singleton reads them).
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from bench import booking, calendar_rules, cold_start, log_volume, webhooks
from bench.common import TABLE

ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))


def main() -> None:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if not ONLY or "booking" in ONLY:
            booking.main()
        if not ONLY or "rules" in ONLY:
            calendar_rules.main()
        if not ONLY or "webhooks" in ONLY:
            webhooks.main()
        if not ONLY or "cold" in ONLY:
            cold_start.main()
        if not ONLY or "logs" in ONLY:
            log_volume.main()
    table = TABLE.render()
    print(table)
    if out := os.environ.get("BENCH_OUT"):
        with open(out, "w") as f:
            f.write(table + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
