"""`make bench`: every benchmark in turn."""

from __future__ import annotations

import os
import platform

from bench import booking, webhooks


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    booking.main()
    webhooks.main()


if __name__ == "__main__":
    main()
