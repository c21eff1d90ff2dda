"""Memory of reading one split of a shard set: what every training worker does at start (its
validation mixtures) and what evaluation does for its sets. Peak RSS of a fresh process that reads the
split with `ShardSet.read_table(splits=...)` (filtered shard by shard), against the same process reading
the whole set and filtering afterwards (how it was read before), on the same shard set in one run.
Also finding one clip by id (`inspect --clip`): read_table(ids=...), which reads a shard's audio only
where the id is, against reading every shard whole and filtering each.

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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mixscribe.schema import table_to_clips
from mixscribe.shards import ShardSet
shards, split, mode = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
s = ShardSet.open(shards)
if mode == "whole":
    table = s.read_table()
    table = table.filter(pc.equal(table["split"], split))
elif mode == "filtered":
    table = s.read_table(splits=(split,))
else:  # one clip by id: the last listed, so every shard before it is passed over
    last = s.manifest.files[-1]
    clip = pq.read_table(s.path(last), columns=["id"], filesystem=s.fs)["id"][-1].as_py()
    t0 = time.perf_counter()
    if mode == "id":
        table = s.read_table(ids=(clip,))
    else:  # every shard whole, filtered as read
        table = pa.concat_tables([pq.read_table(s.path(f), filesystem=s.fs).filter(pc.equal(pc.field("id"), clip))
                                  for f in s.manifest.files])
clips = table_to_clips(table)
print(json.dumps({"clips": len(clips), "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(shards: str, split: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", READ, shards, split, mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_each(shards: str, split: str, modes: dict[str, str]) -> list[dict]:
    """Each mode's figures (keyed by the label printed), one fresh process each."""
    results = [measure(shards, split, mode) for mode in modes.values()]
    for label, r in zip(modes, results):
        print(f"{label}: {r['clips']} clips in {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    return results


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*.parquet")) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("--split", default="valid")
    args = ap.parse_args()
    size = directory_mb(Path(args.shards))
    filtered, whole = measure_each(args.shards, args.split, {"shard by shard": "filtered", "whole set, then filter": "whole"})
    ratio = whole["peak_rss_mb"] / filtered["peak_rss_mb"]
    print(f"peak RSS whole / shard by shard = {ratio:.1f}x")
    by_id, every_shard = measure_each(args.shards, args.split, {"one clip, id columns first": "id",
                                                                "one clip, every shard whole": "every-shard"})  # fmt: skip
    speedup = every_shard["seconds"] / by_id["seconds"]
    print(f"finding one clip: every shard whole / id columns first = {speedup:.1f}x the time")
    body = f"""## Reading one split (`benchmarks/shard_read_memory.py {args.shards} --split {args.split}`)

A shard set of {size:,.0f} MB of Parquet; split `{args.split}`: {filtered['clips']} clips. One fresh process per read.

| read | seconds | peak RSS (MB) |
|---|---|---|
| `read_table(splits=...)`, shard by shard | {filtered['seconds']:.1f} | {filtered['peak_rss_mb']:.0f} |
| whole set, then filter | {whole['seconds']:.1f} | {whole['peak_rss_mb']:.0f} |

The whole-set read holds {ratio:.1f}x the memory; every training worker reads its validation split at start.

Finding one clip by id (`mixscribe inspect --clip`; the set's last clip, timed after opening the set):

| read | seconds | peak RSS (MB) |
|---|---|---|
| `read_table(ids=...)`: id columns, then the one shard's rows | {by_id['seconds']:.2f} | {by_id['peak_rss_mb']:.0f} |
| every shard whole, filtered as read | {every_shard['seconds']:.2f} | {every_shard['peak_rss_mb']:.0f} |

Reading the id columns first takes {1 / speedup:.2f} of the time ({speedup:.0f}x faster)."""
    update_section("shard-read-memory", body)


if __name__ == "__main__":
    main()
