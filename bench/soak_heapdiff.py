#!/usr/bin/env python3
"""What grew between two heap snapshots of one gateway process (see soak_trace/sitecustomize.py):
the allocation sites whose live memory grew most, with their call stacks.

    .venv/bin/python bench/soak_heapdiff.py EARLIER.snap LATER.snap [--top 15]
"""

from __future__ import annotations

import argparse
import tracemalloc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("earlier")
    p.add_argument("later")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--frames", type=int, default=6, help="stack frames shown per site")
    args = p.parse_args()
    # The tracer's own frames and the import machinery are noise here.
    noise = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
    earlier = tracemalloc.Snapshot.load(args.earlier).filter_traces(noise)
    later = tracemalloc.Snapshot.load(args.later).filter_traces(noise)
    total = sum(s.size for s in later.statistics("filename")) - sum(
        s.size for s in earlier.statistics("filename"))
    print(f"traced memory grew by {total / 1024:.1f} KiB")
    for stat in later.compare_to(earlier, "traceback")[: args.top]:
        print(f"\n{stat.size_diff / 1024:+.1f} KiB ({stat.count_diff:+d} blocks), now "
              f"{stat.size / 1024:.1f} KiB in {stat.count} blocks")
        for line in stat.traceback.format(limit=args.frames, most_recent_first=True):
            print("   ", line)


if __name__ == "__main__":
    main()
