"""Profile the scheduler's hot paths on the states `bench/core.py` measures.

    .venv/bin/python bench/profile_core.py                  # cProfile, every case
    .venv/bin/python bench/profile_core.py strict weighted  # some cases
    .venv/bin/python bench/profile_core.py --pyinstrument strict

Cases: ``uncontended``, ``strict``, ``weighted``, ``strict_min`` (the dispatch
steady states) and ``evict`` (the put-when-full cycle at 10,000 waiters). The
state is built and warmed up outside the profiler; only the timed loop of
`bench/core.py` runs under it. cProfile's per-call overhead inflates small
functions, so read the ``tottime`` column as a ranking, not as a cost.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
from collections.abc import Callable

from prioritize.core import Ticket
from scenarios import (
    CAPACITY,
    DISPATCH_CASES,
    SEED,
    fill_dispatch,
    fill_evict,
    flow_names,
    gate,
    loop_dispatch,
    loop_evict_cycle,
    loop_submit_release,
)

OPS = 200_000


def dispatch_case(key: str) -> Callable[[], None]:
    _, _, weights, mins = next(c for c in DISPATCH_CASES if c[0] == key)
    rng = random.Random(SEED)
    s = gate(key.split("_", maxsplit=1)[0], queue=20_000, weights=weights, mins=mins)
    held = fill_dispatch(s, rng, 10_000)
    levels = list(s.levels)
    names = flow_names()

    def batch() -> list[Ticket]:
        return [Ticket(levels[rng.randrange(5)], rng.choice(names)) for _ in range(OPS)]

    loop_dispatch(s, held, batch(), 1.0)  # warm up to the steady state
    tickets = batch()
    return lambda: loop_dispatch(s, held, tickets, 2.0)


def evict_case() -> Callable[[], None]:
    rng = random.Random(SEED)
    s = gate("strict", queue=10_000)
    held = fill_evict(s, rng, 10_000)
    high, bulk = s.levels["high"], s.levels["bulk"]
    names = flow_names()
    highs = [Ticket(high, rng.choice(names)) for _ in range(OPS // 2)]
    bulks = [Ticket(bulk, rng.choice(names)) for _ in range(OPS // 2)]
    return lambda: loop_evict_cycle(s, held, highs, bulks, 1.0)


def uncontended_case() -> Callable[[], None]:
    s = gate("strict", queue=1000)
    names = flow_names()
    tickets = [Ticket(s.levels["high"], names[i % len(names)]) for i in range(OPS)]
    return lambda: loop_submit_release(s, tickets, 1.0)


def build(case: str) -> Callable[[], None]:
    if case == "evict":
        return evict_case()
    if case == "uncontended":
        return uncontended_case()
    return dispatch_case(case)


def main() -> int:
    cases = ["uncontended", *(c[0] for c in DISPATCH_CASES), "evict"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", metavar="case", help=f"one of {', '.join(cases)}")
    parser.add_argument("--pyinstrument", action="store_true", help="use pyinstrument")
    parser.add_argument("--top", type=int, default=15, help="rows of cProfile output")
    args = parser.parse_args()
    unknown = sorted(set(args.cases) - set(cases))
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(cases)}")
    for case in args.cases or cases:
        run = build(case)
        print(f"=== {case} ({OPS:,} ops, {CAPACITY} seats) ===")
        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
            run()
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        else:
            prof = cProfile.Profile()
            prof.runcall(run)
            pstats.Stats(prof).strip_dirs().sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
