"""Start the local MongoDB-protocol server (SecantusDB), with its update-path check made
linear and the transaction lifetime of the production stack. Run by the database's own
interpreter (.local/venv-db), as a script.

Before applying an operator update, SecantusDB checks that no two of its paths overlap (`a`
and `a.b`), as mongod does, but by comparing every path with every earlier one. The
aggregator's month documents take one `$inc` per (day, metric), about 200 paths: 20,000
comparisons per document, and with py-spy this check was the aggregator's largest single cost.
mongod does the same check on a sorted set of paths. This replacement returns exactly what
the original returns (the same conflict, found first in the same order; tested in
tests/unit/test_local_database.py), by looking each path's prefixes up in dicts instead.
Nothing here changes what is stored; it only makes the stand-in behave more like mongod.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any

# Run by the database's own interpreter only (.local/venv-db), where SecantusDB is installed.
from secantus import cli
from secantus import update as secantus_update


def validate_update_paths(update: Mapping[str, Any]) -> tuple[str, str] | None:
    # Each claimed path by its parts, and each prefix of a claimed path (itself included) by
    # the earliest claimed path that has it: a new path conflicts with a claimed path that
    # is one of its prefixes, or that has it as a prefix.
    claimed_paths: dict[tuple[str, ...], tuple[int, str]] = {}
    claimed_prefixes: dict[tuple[str, ...], tuple[int, str]] = {}
    order = 0
    for op, payload in update.items():
        if not op.startswith("$") or op not in secantus_update._KNOWN_UPDATE_OPS:
            raise secantus_update._unknown_modifier(op)
        if not isinstance(payload, Mapping):
            continue
        for field in payload:
            paths = [field]
            if op == "$rename":
                dest = payload.get(field)
                if isinstance(dest, str) and dest != field:
                    paths.append(dest)
            claimed: list[tuple[str, tuple[str, ...]]] = []
            for path in paths:
                if path == "":
                    raise secantus_update.UpdateError("An empty update path is not valid.", code=56)
                parts = tuple(path.split("."))
                if "" in parts:
                    raise secantus_update.UpdateError(
                        f"The update path '{path}' contains an empty field name, "
                        "which is not allowed.",
                        code=56,
                    )
                conflicts = [
                    claimed_paths[parts[:n]]
                    for n in range(1, len(parts) + 1)
                    if parts[:n] in claimed_paths
                ]
                if parts in claimed_prefixes:
                    conflicts.append(claimed_prefixes[parts])
                if conflicts:
                    _, prev_path = min(conflicts)
                    prev_len = len(prev_path.split("."))
                    return path, prev_path if prev_len <= len(parts) else path
                claimed.append((path, parts))
            for path, parts in claimed:
                claimed_paths.setdefault(parts, (order, path))
                for n in range(1, len(parts) + 1):
                    claimed_prefixes.setdefault(parts[:n], (order, path))
                order += 1
    return None


# How long a transaction whose client vanished (kill -9 of an aggregator mid-batch) keeps its
# documents locked before the server aborts it. Every write of the next aggregator to those
# documents conflicts until then: with mongod's and SecantusDB's default of 60 s, one kill -9
# stalled counting for about a minute (measured: 63 s to catch up with 30,000 events instead
# of 9 s). A batch's transaction takes well under a second, so 15 s leaves ample room; the
# production stack sets mongod's transactionLifetimeLimitSeconds to the same (docker-compose).
TRANSACTION_LIFETIME_S = 15.0


def main() -> int:
    secantus_update._validate_update_paths = validate_update_paths
    cli.SecantusDBServer = functools.partial(
        cli.SecantusDBServer, transaction_lifetime_seconds=TRANSACTION_LIFETIME_S
    )
    return int(cli.main())


if __name__ == "__main__":
    sys.exit(main())
