"""Baseline (c): a faust-streaming table count of the same topic, run in its own virtual
environment (faust pins its own dependencies): `python bench/faust_baseline.py BOOTSTRAP TOPIC
COUNT CATALOG_JSON`. Prints one JSON line: events counted and the steady rate.

One table update per event per rollup key (unit and ancestors × day, month, year, all time),
each a changelog record, as faust's own word-count example does it. Tables in memory (no
RocksDB wheel here), so this is faust's best case on this broker.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import faust


def main() -> None:
    bootstrap, topic_name, count_text, catalog_path = sys.argv[1:5]
    count = int(count_text)
    with open(catalog_path) as file:
        parent = {u["id"]: u["parent_id"] for u in json.load(file)["units"]}
    app = faust.App(
        f"faust-bench-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_partitions=4,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    topic = app.topic(topic_name, value_type=bytes, value_serializer="raw")
    table = app.Table("totals", default=int, partitions=4)
    state: dict[str, Any] = {"n": 0, "first": 0.0, "last": 0.0}

    @app.agent(topic)  # type: ignore[untyped-decorator]
    async def counter(stream: Any) -> None:
        async for value in stream:
            event = json.loads(value)
            day = event["occurred_at"][:10]
            unit = event["unit_id"]
            while unit is not None:
                for period in (day, day[:7], day[:4], "all"):
                    table[f"{unit}|{period}|{event['type']}"] += 1
                unit = parent[unit]
            state["n"] += 1
            if state["n"] == 1:
                state["first"] = time.perf_counter()
            state["last"] = time.perf_counter()
            if state["n"] >= count:
                elapsed = state["last"] - state["first"]
                print(json.dumps({"events": state["n"], "rate": (state["n"] - 1) / elapsed}))
                sys.stdout.flush()
                await app.stop()

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


if __name__ == "__main__":
    main()
