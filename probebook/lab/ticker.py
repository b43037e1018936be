"""The smallest service there is: calls `tick` a few times a second until stopped.

A target for fleet tests and benchmarks, where a hundred of them must fit in little memory:
``python -m probebook.lab.ticker [INTERVAL_S]``. Probe it at `TICK_LINE`.
"""

import sys
import time

TICK_LINE = 14  # the line of `total = ...` below: a probe here sees `n` and `total`


def tick(n: int) -> int:
    total = n * 2
    return total


def main() -> None:
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
    n = 0
    try:
        while True:
            n += 1
            tick(n)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
