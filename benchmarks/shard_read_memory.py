"""Memory of reading one split of a shard set: what every training worker does at start (its
validation mixtures) and what evaluation does for its sets. Peak RSS of a fresh process that reads the
split with `ShardSet.read_table(splits=...)` (filtered shard by shard), against the same process reading
the whole set and filtering afterwards (how it was read before), on the same shard set in one run.

Usage: python benchmarks/shard_read_memory.py SHARDS [--split valid]
(SHARDS: a synthesised set, e.g. out/scale-amt/shards after `mixscribe pipeline --config scale-amt`.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402

READ = """
import json, resource, sys, time
import pyarrow.compute as pc
from mixscribe.schema import table_to_clips
from mixscribe.shards import ShardSet
shards, split, whole = sys.argv[1], sys.argv[2], sys.argv[3] == "whole"
t0 = time.perf_counter()
s = ShardSet.open(shards)
if whole:
    table = s.read_table()
    table = table.filter(pc.equal(table["split"], split))
else:
    table = s.read_table(splits=(split,))
clips = table_to_clips(table)
print(json.dumps({"clips": len(clips), "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(shards: str, split: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", READ, shards, split, mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*.parquet")) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("--split", default="valid")
    args = ap.parse_args()
    size = directory_mb(Path(args.shards))
    filtered = measure(args.shards, args.split, "filtered")
    whole = measure(args.shards, args.split, "whole")
    for name, r in (("shard by shard", filtered), ("whole set, then filter", whole)):
        print(f"{name}: {r['clips']} clips in {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    ratio = whole["peak_rss_mb"] / filtered["peak_rss_mb"]
    print(f"peak RSS whole / shard by shard = {ratio:.1f}x")
    body = f"""## Reading one split (`benchmarks/shard_read_memory.py {args.shards} --split {args.split}`)

A shard set of {size:,.0f} MB of Parquet; split `{args.split}`: {filtered['clips']} clips. One fresh process per read.

| read | seconds | peak RSS (MB) |
|---|---|---|
| `read_table(splits=...)`, shard by shard | {filtered['seconds']:.1f} | {filtered['peak_rss_mb']:.0f} |
| whole set, then filter | {whole['seconds']:.1f} | {whole['peak_rss_mb']:.0f} |

The whole-set read holds {ratio:.1f}x the memory; every training worker reads its validation split at start."""
    update_section("shard-read-memory", body)


if __name__ == "__main__":
    main()
