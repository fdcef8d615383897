"""How much memory the local database's drop of a large collection takes, as SecantusDB drops it
and in chunks (`deploy/local/secantusd.py`). Run by the database's own interpreter:

    .local/venv-db/bin/python bench/drop_memory.py original 3000000
    .local/venv-db/bin/python bench/drop_memory.py chunked 3000000

It fills one collection with `entries` index entries (documents of 1,000 ledger-like ids and
100 KB of padding each, in /dev/shm), then drops it, and prints the process's peak resident
memory before and after the drop, and the drop's time. Run each way in its own process: the
peak is the process's.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deploy" / "local"))

import secantusd
from secantus import storage

IDS_PER_DOCUMENT = 1_000


def main(way: str, entries: int) -> str:
    if way == "chunked":
        secantusd.apply_patches()
    elif way != "original":
        raise SystemExit("the way is 'original' or 'chunked'")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        store = storage.Storage(directory, ttl_sweep_seconds=0, durable=False, enable_oplog=False)
        store.create_collection("g", "ledger")
        store.create_index("g", "ledger", "ids_1", {"ids": 1}, {})
        for start in range(0, entries, IDS_PER_DOCUMENT):
            ids = [f"{start}-{k:06d}-{'a' * 44}" for k in range(IDS_PER_DOCUMENT)]
            document = {"_id": f"c{start}", "ids": ids, "pad": "x" * 100_000}
            store.insert("g", "ledger", [document], ordered=False)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        store.drop_collection("g", "ledger")
        took = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        store.close()
    return (
        f"{way} drop of {entries:,} index entries: peak {before / 1024:,.0f} MB before, "
        f"{after / 1024:,.0f} MB after (+{(after - before) / 1024:,.0f} MB), {took:.1f} s"
    )


if __name__ == "__main__":
    print(main(sys.argv[1], int(sys.argv[2])))
