"""Start the local MongoDB-protocol server (SecantusDB), with its update-path check made
linear, faster equivalents of five per-row costs (WiredTiger key packing, the oplog diff's
value comparison, the pruning of retryable-write records and of the oplog, the copy and diff
of a document under `$inc`), an indexed `$in` looked up in one walk of the index instead of
one seek per value, drops that delete a bounded chunk of rows at a time instead of holding
all of them in memory, a cache sized to the machine, and the transaction lifetime of the
production stack. Run by the database's own interpreter (.local/venv-db), as a script.

Before applying an operator update, SecantusDB checks that no two of its paths overlap (`a`
and `a.b`), as mongod does, but by comparing every path with every earlier one. The
aggregator's month documents take one `$inc` per (day, metric), about 200 paths: 20,000
comparisons per document, and with py-spy this check was the aggregator's largest single cost.
mongod does the same check on a sorted set of paths. This replacement returns exactly what
the original returns (the same conflict, found first in the same order; tested in
tests/unit/test_local_database.py), by looking each path's prefixes up in dicts instead.
The fast paths below (each explained where it is defined) take only the inputs whose answer
is plain and hand everything else to the original; tests/unit/test_local_database_fastpaths.py
compares them with the originals on random inputs. Nothing here changes what is stored or
answered; it only makes the stand-in behave more like mongod.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# Run by the database's own interpreter only (.local/venv-db), where SecantusDB is installed.
import wiredtiger
from secantus import cli, diff, ordering, storage, transactions
from secantus import update as secantus_update

# The module WiredTiger's Cursor methods (set_key, get_keys, ...) look `pack` and `unpack` up
# in, and the module those two come from (both imported under top-level names by the bindings).
_wt_cursor_module = sys.modules[wiredtiger.Cursor.__module__]
_wt_packing = sys.modules[_wt_cursor_module.pack.__module__]
_wt_pack_int = _wt_packing.pack_int
_wt_unpack_int = _wt_packing.unpack_int
original_wt_pack = _wt_packing.pack
original_wt_unpack = _wt_packing.unpack
original_same_stored_value = ordering.bson_same_stored_value


# The last update checked, with its answer: SecantusDB checks each update statement's paths
# when it parses the statement, and again when it applies it (through `_plain_increments`),
# the same object both times; the second check was 3 % of the database's CPU in a rebuild.
# The update is held here, so its id cannot be reused by another object while it is kept.
_last_validated: tuple[Any, tuple[str, str] | None] = (None, None)


def validate_update_paths(update: Mapping[str, Any]) -> tuple[str, str] | None:
    global _last_validated
    last_update, last_answer = _last_validated  # one read: other threads replace it
    if update is last_update:
        return last_answer
    answer = _conflicting_paths(update)  # raises for an unknown modifier: nothing kept
    _last_validated = (update, answer)
    return answer


def _conflicting_paths(update: Mapping[str, Any]) -> tuple[str, str] | None:
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


# WiredTiger's Python bindings turn every cursor key and value into the table's packed format
# (and back) with pure-Python `pack` / `unpack`, which re-parse the format string through a
# generator, character by character, on every call. SecantusDB's tables only use formats made
# of strings (`S`, NUL-terminated) followed by at most one last column that is a signed integer
# (`q`) or a byte string (`u`, stored as is when last): `SSSu`, `SSu`, `SSq`, `SS`, `S`, `q`,
# `u`. Under py-spy (--gil), in a 100,000-event no-fault run of the fault suite, this packing took
# 17-21% of the time the database ran Python: every index entry, `_id` lookup, document and
# oplog row goes through it. The replacements below produce the same bytes and values for those
# formats without parsing them: a string is its UTF-8 bytes and a NUL, so `k` strings are their
# NUL-joined UTF-8 plus a NUL, and reading them back splits on the first `k` NULs; an integer
# is the bindings' own `pack_int` / `unpack_int` (`_pack_q` only precomputes the one-byte
# values and writes the multi-byte positive ones with `int.to_bytes`, the same bytes as its
# `struct.pack` and zero-stripping). They only take a call whose every value has exactly the
# type the format expects (str, int, bytes): anything else (another format, a size digit, a
# bool or a str subclass, a missing or extra value, a string holding a NUL, a string or bytes
# that do not encode or decode, a record with too few NULs) goes to the original, so every
# output, and every exception, is the original's. tests/unit/test_local_database_fastpaths.py
# compares both on random values and random or damaged byte strings.
_formats: dict[str, tuple[int, str] | None] = {}


def _format_shape(fmt: str) -> tuple[int, str] | None:
    """(number of leading `S` columns, the last column if `q` or `u`, else "") or None."""
    if type(fmt) is not str or not fmt:
        return None
    try:
        return _formats[fmt]
    except KeyError:
        pass
    strings = len(fmt) - len(fmt.lstrip("S"))
    tail = fmt[strings:]
    shape = (strings, tail) if tail in ("", "q", "u") else None
    _formats[fmt] = shape
    return shape


# pack_int's multi-byte positive range: [11 10llll] and the length, then the value less 2^13 +
# 2^6 big-endian without its leading zero bytes (8256 itself is the two-byte special case).
_POS_MULTI_BASE = 2**13 + 2**6
_POS_MULTI_MARKERS = [bytes([0xE0 | length]) for length in range(9)]
_SMALL_INTS: dict[int, bytes] = {value: _wt_pack_int(value) for value in range(-64, 64)}


def _pack_q(value: int) -> bytes:
    packed = _SMALL_INTS.get(value)
    if packed is not None:
        return packed
    if _POS_MULTI_BASE < value < _POS_MULTI_BASE + 2**64:
        rest = (value - _POS_MULTI_BASE).to_bytes(8, "big").lstrip(b"\0")
        return _POS_MULTI_MARKERS[len(rest)] + rest
    result: bytes = _wt_pack_int(value)
    return result


def wt_pack(fmt: str, *values: Any) -> Any:
    shape = _format_shape(fmt)
    if shape is None or len(values) != len(fmt):
        return original_wt_pack(fmt, *values)
    strings, tail = shape
    head = b""
    if strings:
        for value in values[:strings]:
            if type(value) is not str or "\0" in value:
                return original_wt_pack(fmt, *values)
        try:
            head = ("\0".join(values[:strings]) + "\0").encode()
        except UnicodeError:
            return original_wt_pack(fmt, *values)  # to raise the original's very error
    if not tail:
        return head
    last = values[-1]
    if tail == "u":
        if type(last) is not bytes:
            return original_wt_pack(fmt, *values)
        return head + last
    if type(last) is not int:
        return original_wt_pack(fmt, *values)
    return head + _pack_q(last)


def wt_unpack(fmt: str, packed: Any) -> Any:
    shape = _format_shape(fmt)
    if shape is None or type(packed) is not bytes:
        return original_wt_unpack(fmt, packed)
    strings, tail = shape
    parts = packed.split(b"\0", strings)
    if len(parts) <= strings:
        return original_wt_unpack(fmt, packed)  # fewer NULs than strings
    try:
        result: list[Any] = [part.decode() for part in parts[:strings]]
    except UnicodeError:
        return original_wt_unpack(fmt, packed)  # to raise the original's very error
    if tail == "u":
        result.append(parts[strings])
    elif tail == "q":
        result.append(_wt_unpack_int(parts[strings])[0])
    return result


# The oplog entry of every update is a diff of the document before and after it
# (`secantus.diff.compute_update_description`), which compares each leaf of both with
# `bson_same_stored_value`: BSON equality (`bson_equal`), then the two values' encoded BSON
# (`bson.encode` twice), so that `0.0` -> `-0.0` or `1` -> `1.0` count as changes. The
# aggregator's month documents hold a few hundred integer leaves, nearly all unchanged by a
# batch, and these comparisons took 4-6% of the database's Python time (py-spy --gil). For two
# values both exactly `int` (not bool) or both exactly `str`, the answer is `a == b`:
# `bson_equal` is then `a == b` (no bool, no NaN), and two equal ints or two equal strings
# encode to the same bytes, or both fail to encode, which the original answers True too.
# Everything else goes to the original. tests/unit/test_local_database_fastpaths.py compares
# both on random pairs of BSON values.
def same_stored_value(a: Any, b: Any) -> bool:
    kind = type(a)
    if kind is type(b) and (kind is int or kind is str):
        return bool(a == b)
    return bool(original_same_stored_value(a, b))


# Every retryable write (any write outside a transaction: ingest's accepted ids, heartbeats,
# the naive baseline's upserts) records its reply for 30 minutes, up to 10,000 records, and
# every record or lookup first prunes them: SecantusDB builds a list of the stale ones by
# scanning all of them, and once over 10,000 sorts them all to drop the oldest, on every write,
# under the lock every statement takes. The naive subscriber's rate fell from 67 to 19 events/s
# once its writes passed 10,000. Records are added under that lock with the time read there, so
# the dict's order is their time order (the wrapper of `record_retryable` below keeps it so when
# a key is recorded again): the stale records and the oldest ones are at its front. Dropping
# from the front leaves exactly the records the original leaves as long as the clock (the
# registry's: wall time, finer than a microsecond) moves on between two records; should it
# stand still or step back, the two may keep different ones of records written within that
# instant, once 10,000 are held. tests/unit/test_local_database_fastpaths.py runs both on the
# same random histories.
def prune_retryable_from_the_front(self: transactions.TransactionRegistry) -> None:
    records = self._retryable
    cutoff = self._time() - transactions._RETRYABLE_RECORD_LIFETIME_SECONDS
    while records:
        oldest = next(iter(records))
        if records[oldest][1] >= cutoff and len(records) <= transactions._RETRYABLE_RECORD_MAX:
            return
        del records[oldest]


original_prune_retryable = transactions.TransactionRegistry._prune_retryable_locked
original_record_retryable = transactions.TransactionRegistry.record_retryable


def record_retryable_in_time_order(
    self: transactions.TransactionRegistry,
    lsid_bytes: bytes,
    txn_number: int,
    identity: bytes,
    reply: dict[str, Any],
) -> None:
    if transactions._is_recordable_reply(reply):
        with self._lock:  # recorded again: it moves to the end with its new time
            self._retryable.pop((lsid_bytes, txn_number), None)
    original_record_retryable(self, lsid_bytes, txn_number, identity, reply)


# The aggregator's every write is `{$inc: {"t.<metric>": n, "d.<day>.<metric>": n, ...},
# $setOnInsert: {...}}` on a month document. For each, SecantusDB deep-copies the whole
# document before applying the increments through its general path machinery, then diffs the
# whole old and new documents for the oplog: both cost in proportion to the document, which
# fills as its month goes on (a 10M-event rebuild slowed from 3,400 to 2,700 events/s as they
# filled; py-spy: 60 % of the database's busy time in the diff, 24 % in the copy). For an
# update that is `$inc` of plain paths (no `$`, no empty part, not `_id`) by `int`s, applied
# to a stored match (not an upsert's insert), over documents and `int`s only, with every sum
# inside int32, the answer is plain: copy only the documents along the paths, add, and create
# missing sub-documents at the end of their parent as `set_path` does; the oplog diff of such
# an update differs from the old document only along those paths, so the original's walk, in
# its sorted key order, is taken along them alone. Anything else (other operators, an `Int64`
# or a `double` met, an overflow, an array on a path, a conflict) goes to the original, which
# also raises every error. tests/unit/test_local_database_fastpaths.py compares both on random
# documents and updates. Measured: the database's CPU time for a rebuild of 400,000 events of a
# 10M-dense log went from 27.2 and 27.7 s to 23.6 and 22.5 s (alternating runs).
original_apply_update = storage.apply_update
original_compute_update_description = storage.compute_update_description
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INC_OPERATORS = frozenset({"$inc", "$setOnInsert"})
_last_plain_increments: tuple[Any, dict[str, int] | None] = (None, None)


def _plain_path(path: Any) -> bool:
    return (
        type(path) is str
        and "$" not in path
        and "" not in path.split(".")
        and path.split(".", 1)[0] != "_id"
    )


def _plain_increments(update: Any) -> dict[str, int] | None:
    """The `$inc` payload of an update the fast paths can take, or None (asked twice of each
    update, by its apply and its diff: the last answer is kept, with the update it was for)."""
    global _last_plain_increments
    last_update, last_answer = _last_plain_increments  # one read: other threads replace it
    if update is last_update:
        return last_answer
    answer = _check_plain_increments(update)
    _last_plain_increments = (update, answer)
    return answer


def _check_plain_increments(update: Any) -> dict[str, int] | None:
    if type(update) is not dict or not update.keys() <= _INC_OPERATORS:
        return None
    increments = update.get("$inc")
    if type(increments) is not dict or not increments:
        return None
    on_insert = update.get("$setOnInsert", {})
    if type(on_insert) is not dict or not all(_plain_path(path) for path in on_insert):
        return None
    for path, delta in increments.items():
        if not _plain_path(path) or type(delta) is not int or not _INT32_MIN <= delta <= _INT32_MAX:
            return None
    if secantus_update._validate_update_paths(update) is not None:
        return None
    return increments


def _incremented(doc: dict[str, Any], increments: dict[str, int]) -> dict[str, Any] | None:
    result = dict(doc)
    owned = {id(result)}  # documents copied or created here, free to change
    for path, delta in increments.items():
        *parents, leaf = path.split(".")
        node = result
        for part in parents:
            child = node.get(part)
            if child is None and part not in node:
                child = {}
                owned.add(id(child))
                node[part] = child
            elif type(child) is not dict:
                return None
            elif id(child) not in owned:
                child = dict(child)
                owned.add(id(child))
                node[part] = child
            node = child
        current = node.get(leaf, 0)
        if type(current) is not int:
            return None
        total = current + delta
        if not _INT32_MIN <= total <= _INT32_MAX:
            return None
        node[leaf] = total
    return result


def apply_update(doc: dict[str, Any], update: Any, **options: Any) -> dict[str, Any]:
    if not options.get("is_upsert") and not options.get("array_filters"):
        increments = _plain_increments(update)
        if increments is not None and type(doc) is dict:
            result = _incremented(doc, increments)
            if result is not None:
                return result
    return original_apply_update(doc, update, **options)  # type: ignore[no-any-return]


def compute_update_description(
    pre: Mapping[str, Any], post: Mapping[str, Any], update: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    increments = _plain_increments(update)
    if increments is None:
        return original_compute_update_description(pre, post, update)  # type: ignore[no-any-return]
    # The paths as a tree of their parts; `$setOnInsert`'s too, though a stored match never
    # applies it: the walk then covers every path the update could have written.
    paths: dict[str, Any] = {}
    for path in [*increments, *update.get("$setOnInsert", {})]:  # type: ignore[union-attr]
        node = paths
        for part in path.split("."):
            node = node.setdefault(part, {})
    updated: dict[str, Any] = {}
    removed: list[str] = []
    truncated: list[dict[str, Any]] = []
    disambiguated: dict[str, list[Any]] = {}
    elementwise = diff._elementwise_array_paths(update)
    push_targets = diff._push_targets(update)

    def walk(
        pre: Mapping[str, Any],
        post: Mapping[str, Any],
        path: str,
        segments: list[Any],
        tree: dict[str, Any],
    ) -> None:
        # diff._walk's loop over a document's keys, over the keys on the paths only.
        for key in sorted(tree):
            child_path = f"{path}.{key}" if path else key
            child_segments = [*segments, key]
            if key not in post:
                if key in pre:
                    removed.append(child_path)
                    diff._record_ambiguous(child_path, child_segments, disambiguated)
            elif key not in pre:
                updated[child_path] = post[key]
                diff._record_ambiguous(child_path, child_segments, disambiguated)
            elif tree[key] and isinstance(pre[key], Mapping) and isinstance(post[key], Mapping):
                walk(pre[key], post[key], child_path, child_segments, tree[key])
            else:
                diff._walk(
                    pre[key],
                    post[key],
                    child_path,
                    updated,
                    removed,
                    truncated,
                    disambiguated,
                    child_segments,
                    elementwise,
                    push_targets,
                )

    walk(dict(pre), dict(post), "", [], paths)
    diff._report_whole_values(update, post, updated, removed, truncated, disambiguated)
    out: dict[str, Any] = {
        "updatedFields": updated,
        "removedFields": removed,
        "truncatedArrays": truncated,
    }
    if disambiguated:
        out["disambiguatedPaths"] = disambiguated
    return out


# Past 100,000 oplog entries SecantusDB prunes the oldest on every 1,000th emit. Each prune
# opens a cursor on each of the 17 oplog tables and steps from its first key, over every entry
# deleted before that WiredTiger still keeps, then decodes every entry it dooms to read its
# time, though most are doomed by the entry cap alone. In a 10M-event rebuild 38 % of the
# database's busy samples were in those first steps (py-spy, bench/analysis.md). Here the walk
# starts at a floor below which no entry exists or can appear, and an entry is decoded only
# once the cap no longer dooms it; the entries doomed, the archive and the deletes are the
# original's. The floor is the first entry kept by the last prune, or, if lower, the first
# sequence number of a write still in flight when that prune began (its entries commit later,
# below the kept one), or else the next to be minted. `import_oplog_segment` writes entries at
# any sequence number, so the floor falls back to 0 (the original's walk) after it.
# tests/unit/test_local_database_fastpaths.py compares both on random histories.
def prune_oplog_from_the_floor(self: storage.Storage, *, now: float | None = None) -> int:
    when = now if now is not None else self._time()
    cutoff_secs = int(when - self.oplog_retention_seconds)
    live = self._oplog_live_count
    surplus = live - self.oplog_max_entries
    with self._oplog_seq_lock:
        in_flight_floor = min(self._oplog_in_flight, default=self._next_seq)
    start = getattr(self, "_oplog_prune_floor", 0)
    doomed: list[tuple[int, str]] = []
    kept: int | None = None
    scan_session = self._conn.open_session()
    try:
        for seq, value, table in _oplog_from(scan_session, start):
            if len(doomed) >= surplus:
                blob = bytes(value())
                entry = storage.bson.decode(blob) if blob else {}
                ts = entry.get("ts")
                if not (isinstance(ts, storage.Timestamp) and ts.time < cutoff_secs):
                    kept = seq
                    break
            doomed.append((seq, table))
    finally:
        with contextlib.suppress(Exception):
            scan_session.close()
    self._oplog_prune_floor = in_flight_floor if kept is None else min(kept, in_flight_floor)
    if not doomed:
        return 0
    self._oplog_live_count = live - len(doomed)
    if self.oplog_archive_dir is not None:
        self._archive_doomed_oplog(sorted(seq for seq, _ in doomed))
    pre_del = self._cursor(storage._PREIMAGE_TABLE)
    for seq, table in doomed:
        cur = self._cursor(table)
        cur.set_key(seq)
        with contextlib.suppress(wiredtiger.WiredTigerError):
            cur.remove()
        cur.reset()
        pre_del.set_key(seq)
        with contextlib.suppress(wiredtiger.WiredTigerError):
            pre_del.remove()
        pre_del.reset()
    return len(doomed)


def _oplog_from(session: Any, start: int) -> Iterator[tuple[int, Callable[[], Any], str]]:
    """The oplog's entries from sequence number `start` on, in order, as the original's merge of
    its tables yields them, with each value read only if asked for."""
    cursors: list[Any] = []
    heads: list[int | None] = []
    try:
        for table in storage._OPLOG_ALL_TABLES:
            try:
                cursor = session.open_cursor(table, None)
            except Exception as exc:
                if storage._is_missing_table(exc):
                    cursors.append(None)
                    heads.append(None)
                    continue
                raise
            cursors.append(cursor)
            cursor.set_key(start)
            found = cursor.search_near()
            if found == wiredtiger.WT_NOTFOUND:
                heads.append(None)
            elif found < 0:
                heads.append(int(cursor.get_key()) if cursor.next() == 0 else None)
            else:
                heads.append(int(cursor.get_key()))
        while True:
            best, seq = -1, 0
            for i, head in enumerate(heads):
                if head is not None and (best < 0 or head < seq):
                    best, seq = i, head
            if best < 0:
                return
            cursor = cursors[best]
            yield seq, cursor.get_value, storage._OPLOG_ALL_TABLES[best]
            heads[best] = int(cursor.get_key()) if cursor.next() == 0 else None
    finally:
        for cursor in cursors:
            with contextlib.suppress(Exception):
                cursor.close()


original_import_oplog_segment = storage.Storage.import_oplog_segment


def import_oplog_segment_then_walk_from_the_start(
    self: storage.Storage, *args: Any, **kwargs: Any
) -> int:
    with self._lock:
        try:
            return int(original_import_oplog_segment(self, *args, **kwargs))
        finally:
            self._oplog_prune_floor = 0


# The aggregator asks, per batch (50,000 events in a rebuild), which of its events the ledger
# already holds and which it has voided: `{ids: {$in: [...]}}` and `{voided: {$in: [...]}}`, both
# on single-field multikey indexes. SecantusDB looks an indexed `$in` up one value at a time:
# encode it, seek the index-entries table to it (`search_near`), read its entries; 50,000 seeks
# per query, even on the `voided` index, which holds a handful of keys. With py-spy these probes
# were about a fifth of the database's CPU in a rebuild. Here, for a `$in` list of values none of
# which is a document, on a single-field index, each value is encoded once as the original encodes
# it, and the distinct keys are taken in the index's byte order with one cursor: it seeks only
# when its entry is below the key wanted, and a key below its entry has none, with no call into
# WiredTiger. That entry is the first at or after the key, where the original's seek lands: every
# entry before it is below the previous key's seek or is one of that key's own entries (an escaped
# key holds no `\0\0`, so an entry of a lower key sorts below any higher key's seek). Each key's
# entries are read as the original reads them, up to the first entry of another key or index; the
# answer is then made in the `$in` order, each value's entries in index order, each record once,
# where it first appears. Anything else (a compound index, a document among the values, other
# operators, a value that fails to encode) goes to the original.
# tests/unit/test_local_database_fastpaths.py compares both on random indexes and lists, and
# counts the seeks. Measured in one process, the original and this alternating five times (three
# such runs), a `$in` of 50,000 random 32-hex ids none of which is indexed: 308-322 ms against
# 233-237 ms (medians) on an index of 100,000 entries, 276-290 ms against 79-95 ms on one of ten,
# where encoding the values takes 30 ms and sorting them 20 ms. A list of one value takes about
# the same time either way (6.4 and 6.6-6.9 microseconds), of two values or more this is as fast
# or faster: no threshold.
original_lookup_id_keys_via_leading_field = storage.Storage._lookup_id_keys_via_leading_field


def lookup_id_keys_via_leading_field(
    self: storage.Storage,
    db: str,
    coll: str,
    idx_match: tuple[str, int, bool],
    value: Any,
    *,
    collation: Any = None,
) -> list[int] | None:
    name, direction, is_compound = idx_match
    values = value.get("$in") if type(value) is dict and len(value) == 1 else None
    if is_compound or type(values) is not list or any(isinstance(v, dict) for v in values):
        return original_lookup_id_keys_via_leading_field(  # type: ignore[no-any-return]
            self, db, coll, idx_match, value, collation=collation
        )
    encode, escape = storage.encode_value_directed, storage._escape_kb
    try:
        keys = [escape(encode(v, direction, collation=collation)) for v in values]
    except Exception:
        return original_lookup_id_keys_via_leading_field(  # type: ignore[no-any-return]
            self, db, coll, idx_match, value, collation=collation
        )
    entries = _entries_of_keys(self, db, coll, name, keys)
    seen: set[int] = set()
    out: list[int] = []
    for key in keys:
        for record in entries[key]:
            if record not in seen:
                seen.add(record)
                out.append(record)
    return out


def _entries_of_keys(
    store: storage.Storage, db: str, coll: str, name: str, keys: list[bytes]
) -> dict[bytes, list[int]]:
    """The record ids of index `name`'s entries under each escaped key, in index order."""
    index = (db, coll, name)
    found: dict[bytes, list[int]] = {}
    cursor = store._cursor(storage._IDX_ENTRIES_TABLE)
    # The index entry under the cursor, its key and its record id (before the first seek, one
    # below every seek key); None once the cursor has left the index's entries.
    current: tuple[bytes, bytes, int | None] | None = (b"", b"", None)
    for seed in sorted({key + storage._ENTRY_SEP for key in keys}):
        key = seed[:-2]
        records: list[int] = []
        found[key] = records
        if current is not None and current[0] < seed:
            cursor.set_key(db, coll, name, seed)
            near = cursor.search_near()
            landed = near != wiredtiger.WT_NOTFOUND and (near >= 0 or cursor.next() == 0)
            current = _entry_under(cursor, index, landed)
        while current is not None and current[1] == key:
            if current[2] is not None:
                records.append(current[2])
            current = _entry_under(cursor, index, cursor.next() == 0)
    return found


def _entry_under(
    cursor: Any, index: tuple[str, str, str], landed: bool
) -> tuple[bytes, bytes, int | None] | None:
    """The entry under a cursor that has `landed` on one, with its key and record id, if it is
    one of `index`'s."""
    if not landed:
        return None
    row = cursor.get_key()
    if (row[0], row[1], row[2]) != index:
        return None
    entry = bytes(row[3])
    return (entry, *storage._unpack_entry(entry))


# SecantusDB drops a collection (and a database) by collecting every row of each of its tables
# under the name, keys and values, into one list, then deleting the keys one by one. For a
# generation of 10M events (10M index entries, 1.8 GB of ledger documents) that list outgrew
# the machine's memory and the server was killed, twice (10.4 and 11.7 GB resident). Within a
# drop, the rows are deleted here as they are walked, a bounded chunk of keys at a time, each
# chunk resuming from the last key deleted; the original then finds nothing left to collect
# and does the rest (the registry row, the oplog entry) as before. The deletes are the
# original's own (`_delete_keys`, autocommit per row), in the same order. Measured on a
# collection of 3M index entries (/dev/shm): the drop's peak memory grew by 191 MB instead of
# 1,328 MB, in 13.3 s instead of 27.2 s (bench/drop_memory.py).
# tests/unit/test_local_database_fastpaths.py compares what both leave.
original_collect_prefix = storage.Storage._collect_prefix
original_drop_collection = storage.Storage.drop_collection
original_drop_database = storage.Storage.drop_database
DROP_CHUNK = 10_000
_dropping = threading.local()


def purge_prefix(self: storage.Storage, table: str, prefix: tuple[Any, ...]) -> None:
    """Delete every row of `table` whose key starts with `prefix`, `DROP_CHUNK` keys at a time."""
    start = prefix + self._smallest_for_kf(self._table_kf(table))[len(prefix) :]
    while True:
        cursor = self._cursor_optional(table)
        if cursor is None:
            return  # lazy shards: an absent table holds no rows
        cursor.set_key(*start)
        found = cursor.search_near()
        if found == wiredtiger.WT_NOTFOUND or (found < 0 and cursor.next() != 0):
            return
        keys: list[tuple[Any, ...]] = []
        more = True
        while len(keys) < DROP_CHUNK:
            key = tuple(cursor.get_key())
            if key[: len(prefix)] != prefix:
                more = False
                break
            keys.append(key)
            if cursor.next() != 0:
                more = False
                break
        cursor.reset()
        self._delete_keys(table, keys)
        if not more or not keys:
            return
        start = keys[-1]  # deleted: the next search lands on the key after it


def collect_prefix_purging_in_drops(
    self: storage.Storage, table: str, prefix: tuple[Any, ...]
) -> list[tuple[tuple[Any, ...], Any]]:
    if not getattr(_dropping, "active", False):
        return original_collect_prefix(self, table, prefix)  # type: ignore[no-any-return]
    # A drop only deletes the rows it collects: delete them now and leave none to delete.
    purge_prefix(self, table, prefix)
    return []


def drop_collection_in_chunks(self: storage.Storage, db: str, coll: str) -> bool:
    with _purging():
        return original_drop_collection(self, db, coll)  # type: ignore[no-any-return]


def drop_database_in_chunks(self: storage.Storage, db: str) -> None:
    with _purging():
        original_drop_database(self, db)


@contextlib.contextmanager
def _purging() -> Iterator[None]:
    _dropping.active = True
    try:
        yield
    finally:
        _dropping.active = False


# How long a transaction whose client vanished (kill -9 of an aggregator mid-batch) keeps its
# documents locked before the server aborts it. Every write of the next aggregator to those
# documents conflicts until then: with mongod's and SecantusDB's default of 60 s, one kill -9
# stalled counting for about a minute (measured: 63 s to catch up with 30,000 events instead
# of 9 s). A batch's transaction takes well under a second, so 15 s leaves ample room; the
# production stack sets mongod's transactionLifetimeLimitSeconds to the same (docker-compose).
TRANSACTION_LIFETIME_S = 15.0


def apply_patches() -> None:
    secantus_update._validate_update_paths = validate_update_paths
    # The Cursor methods call the names in their own module; the packing module too, for any
    # caller that imports them from there later.
    for module in (_wt_cursor_module, _wt_packing):
        module.pack = wt_pack  # type: ignore[attr-defined]
        module.unpack = wt_unpack  # type: ignore[attr-defined]
    # The diff's name for it, and the original's own (it recurses through it for containers).
    diff.bson_same_stored_value = same_stored_value
    ordering.bson_same_stored_value = same_stored_value
    registry = transactions.TransactionRegistry
    registry._prune_retryable_locked = prune_retryable_from_the_front
    registry.record_retryable = record_retryable_in_time_order
    # The storage layer's names for them (it imported both from their modules).
    storage.apply_update = apply_update
    storage.compute_update_description = compute_update_description
    storage.Storage._prune_oplog_locked = prune_oplog_from_the_floor
    storage.Storage.import_oplog_segment = import_oplog_segment_then_walk_from_the_start
    storage.Storage._lookup_id_keys_via_leading_field = lookup_id_keys_via_leading_field
    storage.Storage._collect_prefix = collect_prefix_purging_in_drops
    storage.Storage.drop_collection = drop_collection_in_chunks
    storage.Storage.drop_database = drop_database_in_chunks


def cache_size() -> str:
    """A quarter of the memory (at least 256 MB) for WiredTiger's cache. SecantusDB's default
    is 1 GB whatever the machine: a 10M-event rebuild's documents and indexes outgrew it, and
    once it was full every call into WiredTiger could be drafted into evicting pages (commits
    and the TTL sweep stalled for seconds inside single cursor steps; bench/analysis.md).
    mongod takes half of (memory - 1 GB), for data on disk; here the tests' and the
    benchmark's data live in memory-backed /dev/shm, so the data takes memory too, beside the
    cache: a quarter leaves room for it. The cache only takes memory as data arrives."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(256, memory // 2**20 // 4)}M"


def main() -> int:
    apply_patches()
    if not any(arg.startswith("--cache-size") for arg in sys.argv[1:]):
        sys.argv += ["--cache-size", cache_size()]
    cli.SecantusDBServer = functools.partial(
        cli.SecantusDBServer, transaction_lifetime_seconds=TRANSACTION_LIFETIME_S
    )
    return int(cli.main())


if __name__ == "__main__":
    sys.exit(main())
