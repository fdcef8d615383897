"""The local database's fast paths (deploy/local/secantusd.py) must answer exactly as the code
they stand in for: WiredTiger's key/value packing (the same bytes, the same values, the same
error, for any format and any values; the patched cursors read back what they wrote), and
SecantusDB's stored-value comparison (the same answer for any pair of values, and the same
oplog diff of any update), and its lookup of an indexed `$in` (the same record ids, in the same
order, for any list), and its drops (the same rows left, deleted a bounded chunk at a time)."""

from __future__ import annotations

import textwrap

from tests.unit.database_interpreter import counts_printed_by

COMPARE_PACKING = textwrap.dedent(
    """
    import random, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    import wiredtiger
    import secantusd
    from secantusd import original_wt_pack, original_wt_unpack, wt_pack, wt_unpack

    rng = random.Random(11)
    # SecantusDB's own formats first, then others the fast path must hand to the original.
    formats = ["SSSu", "SSu", "SSq", "SS", "S", "q", "u", "SSS"] * 6 + [
        "", "Su", "uS", "uu", "Sq", "qS", "qq", "qu", "Qq", "iS", "3s", "2S", "Sx", "SU",
        "@S", ".S", ">q", "r", "t", "B", "s", "sS",
    ]
    ints = [0, 1, -1, 63, 64, -64, -65, 8255, 8256, 8257, -8256, -8257, 2**31, -2**31,
            2**63 - 1, -2**63, 2**63, 2**64 - 1, 2**64, -2**64 - 1, 2**70]

    class Str(str):
        pass

    class Bytes(bytes):
        pass

    def text():
        pick = rng.random()
        alphabet = "ab.$_0é中\\x00\\x01"
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        if pick < 0.03:
            s += "\\ud800"  # a lone surrogate: not encodable
        return s

    def value(char):
        pick = rng.random()
        if pick < 0.9:  # the type the format expects
            if char in "Ss":
                return text()
            if char in "uU":
                return bytes(rng.randrange(256) for _ in range(rng.randint(0, 10)))
            if rng.random() < 0.5:
                return rng.choice(ints)
            return rng.randint(-2**65, 2**65) >> rng.randint(0, 64)
        return rng.choice([
            True, False, None, 1.5, Str("ab"), Bytes(b"ab"), bytearray(b"ab"), b"a\\x00b",
            "abc", 7, -3, memoryview(b"xy"),
        ])

    def outcome(function, *args):
        try:
            result = function(*args)
        except Exception as exc:  # the error's type and message must match too
            return ("error", type(exc).__name__, str(exc))
        return ("ok", type(result).__name__, result)

    packed_ok = unpacked_ok = errors = 0
    samples = []
    for _ in range(40000):
        fmt = rng.choice(formats)
        values = [value(char) for char in fmt if char.isalpha() and char != "x"]
        if rng.random() < 0.05:
            values = values[:-1] if values and rng.random() < 0.5 else values + [1]
        expected = outcome(original_wt_pack, fmt, *values)
        got = outcome(wt_pack, fmt, *values)
        assert got == expected, (fmt, values, expected, got)
        if expected[0] == "ok":
            packed_ok += 1
            samples.append((fmt, expected[2]))
        else:
            errors += 1

    def damaged(packed):
        pick = rng.random()
        if pick < 0.5 or not isinstance(packed, bytes):
            return packed
        data = bytearray(packed)
        if pick < 0.65 and data:
            del data[rng.randrange(len(data)):]
        elif pick < 0.8 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif pick < 0.9:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        else:
            return rng.choice([bytearray(data), None, b"", memoryview(bytes(data))])
        return bytes(data)

    for _ in range(60000):
        if rng.random() < 0.8 and samples:
            fmt, packed = rng.choice(samples)
            if rng.random() < 0.1:
                fmt = rng.choice(formats)
        else:
            fmt = rng.choice(formats)
            packed = bytes(rng.randrange(256) for _ in range(rng.randint(0, 12)))
        packed = damaged(packed)
        expected = outcome(original_wt_unpack, fmt, packed)
        got = outcome(wt_unpack, fmt, packed)
        assert got == expected, (fmt, packed, expected, got)
        if expected[0] == "ok":
            unpacked_ok += 1
        else:
            errors += 1

    # Installed where the cursors look them up, and a real table reads back what was written.
    secantusd.apply_patches()
    assert wiredtiger.Cursor.set_key.__globals__["pack"] is wt_pack
    assert wiredtiger.Cursor.get_keys.__globals__["unpack"] is wt_unpack
    connection = wiredtiger.wiredtiger_open(tempfile.mkdtemp(), "create")
    session = connection.open_session()
    session.create("table:t", "key_format=SSSu,value_format=q")
    cursor = session.open_cursor("table:t")
    rows = {}
    for _ in range(500):
        key = ("db", rng.choice(["c", "é"]), text().replace("\\x00", "").replace("\\ud800", ""),
               bytes(rng.randrange(256) for _ in range(rng.randint(0, 6))))
        rows[key] = rng.choice(ints[:-4])
        cursor.set_key(*key)
        cursor.set_value(rows[key])
        cursor.insert()
    cursor.reset()
    read = {}
    while cursor.next() == 0:
        read[tuple(cursor.get_keys())] = cursor.get_value()
    assert read == rows
    connection.close()
    print(packed_ok, unpacked_ok, errors)
    """
)


def test_fast_packing_answers_as_wiredtiger_does() -> None:
    packed, unpacked, errors = counts_printed_by(COMPARE_PACKING, timeout_s=300)
    # The random inputs exercise both answers, many times each.
    assert packed > 10000 and unpacked > 10000 and errors > 10000


COMPARE_SAME_VALUE = textwrap.dedent(
    """
    import copy, math, random, sys
    sys.path.insert(0, sys.argv[1])
    import bson
    from bson import Decimal128, Int64
    from secantus import diff, ordering
    import secantusd

    rng = random.Random(5)
    ints = [0, 1, -1, 2, 2**31 - 1, 2**31, -2**31 - 1, 2**63 - 1, 2**63, -2**63, 2**64, -2**70]

    def scalar():
        return rng.choice([
            rng.choice(ints), rng.randint(-3, 3), True, False, 0.0, -0.0, 1.0, 2.5, math.nan,
            math.inf, "", "a", "b", "1", "\\ud800", "é", None, Int64(1), Int64(2**40),
            Decimal128("1"), Decimal128("1.0"), Decimal128("NaN"), bson.MinKey(), b"a",
        ])

    def value(depth=0):
        pick = rng.random()
        if depth < 2 and pick < 0.15:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        if depth < 2 and pick < 0.3:
            return {rng.choice("ab1"): value(depth + 1) for _ in range(rng.randint(0, 3))}
        return scalar()

    def twin(a):
        # Equal by Python's `==`, different as stored: 1 / 1.0 / Int64(1) / True, 0.0 / -0.0.
        if isinstance(a, list):
            return [twin(x) for x in a]
        if isinstance(a, dict):
            return {k: twin(x) for k, x in a.items()}
        if type(a) in (int, bool) and -2**63 <= a < 2**63:
            return rng.choice([a, int(a), float(a), Int64(a)] + ([bool(a)] if a in (0, 1) else []))
        if type(a) is float and a == 0:
            return rng.choice([0.0, -0.0, 0])
        return a

    def like(a):
        # Often the same value, a twin of it or a near one, so equal pairs are common.
        pick = rng.random()
        if pick < 0.3:
            return copy.deepcopy(a)
        if pick < 0.45:
            return twin(a)
        if pick < 0.5 and isinstance(a, int) and not isinstance(a, bool):
            return a + rng.choice([0, 1, -1])
        return value()

    def outcome(function, *args):
        try:
            return ("ok", function(*args))
        except Exception as exc:
            return ("error", type(exc).__name__, str(exc))

    def comparable(result):
        # NaN != NaN, and True == 1 == 1.0 == Int64(1): compare the answers' reprs, which tell
        # all of these apart (and keep the order of a dict's keys).
        return repr(result)

    pairs = []
    for _ in range(10000):
        a = value()
        pairs.append((a, like(a)))

    # Month documents like the aggregator's, and $inc / $set updates of them.
    def month():
        doc = {"_id": "u|2026-05", "u": "u", "m": "2026-05", "t": {}, "d": {}}
        for _ in range(rng.randint(0, 30)):
            day, metric = f"{rng.randint(1, 31):02d}", rng.choice(["x:a", "x:b", "y", "1"])
            doc["d"].setdefault(day, {})[metric] = rng.choice([rng.randint(0, 99), value()])
            doc["t"][metric] = rng.randint(0, 999)
        return doc

    updates = []
    for _ in range(1200):
        pre = month()
        post = copy.deepcopy(pre)
        update = {"$inc": {}}
        for _ in range(rng.randint(0, 20)):
            day, metric = f"{rng.randint(1, 31):02d}", rng.choice(["x:a", "x:b", "y", "1"])
            old = post["d"].setdefault(day, {}).get(metric, 0)
            step = rng.choice([0, 1, 5, 1.0, -0.0, True])
            try:
                post["d"][day][metric] = old + step
            except TypeError:
                post["d"][day][metric] = step
            update["$inc"][f"d.{day}.{metric}"] = step
        if rng.random() < 0.2:
            post["t"] = {"x:a": rng.choice([1, 1.0, "1", [1]])}
            update["$set"] = {"t": post["t"]}
        updates.append((pre, post, update))

    expected = [comparable(outcome(ordering.bson_same_stored_value, a, b)) for a, b in pairs]
    expected_diffs = [comparable(outcome(diff.compute_update_description, *u)) for u in updates]
    secantusd.apply_patches()
    assert diff.bson_same_stored_value is secantusd.same_stored_value
    got = [comparable(outcome(diff.bson_same_stored_value, a, b)) for a, b in pairs]
    got_diffs = [comparable(outcome(diff.compute_update_description, *u)) for u in updates]
    for pair, want, have in zip(pairs, expected, got, strict=True):
        assert want == have, (pair, want, have)
    for update, want, have in zip(updates, expected_diffs, got_diffs, strict=True):
        assert want == have, (update, want, have)
    same = expected.count(repr(("ok", True)))
    print(same, len(pairs) - same, sum(len(u[2]["$inc"]) for u in updates))
    """
)


def test_fast_same_stored_value_answers_as_secantus_does() -> None:
    same, different, increments = counts_printed_by(COMPARE_SAME_VALUE, timeout_s=300)
    # Both answers, many times each, and many updated leaves in month documents.
    assert same > 3000 and different > 4000 and increments > 8000


COMPARE_RETRYABLE_RECORDS = textwrap.dedent(
    """
    import random, sys
    sys.path.insert(0, sys.argv[1])
    from secantus import transactions
    import secantusd

    rng = random.Random(17)
    # Small bounds, so that both the lifetime and the cap are hit all the time.
    transactions._RETRYABLE_RECORD_LIFETIME_SECONDS = 50.0
    transactions._RETRYABLE_RECORD_MAX = 20

    class Clock:
        now = 1000.0

        def __call__(self):
            return self.now

    def registry(clock):
        return transactions.TransactionRegistry(time_func=clock)

    class Original(transactions.TransactionRegistry):
        _prune_retryable_locked = secantusd.original_prune_retryable
        record_retryable = secantusd.original_record_retryable

    class Patched(transactions.TransactionRegistry):
        _prune_retryable_locked = secantusd.prune_retryable_from_the_front
        record_retryable = secantusd.record_retryable_in_time_order

    replayed = at_cap = below_cap = 0
    for history in range(60):
        clock = Clock()
        original, patched = Original(time_func=clock), Patched(time_func=clock)
        for step in range(400):
            # The clock moves on (as wall time does between two writes under one lock: its
            # resolution is well under a microsecond), by small steps or past the lifetime.
            clock.now += 60 if rng.random() < 0.005 else rng.choice([0.001, 0.2, 0.5, 1])
            lsid = bytes([rng.randrange(6)])
            number = rng.randrange(8)
            identity = bytes([rng.randrange(2)])
            if rng.random() < 0.6:
                reply = rng.choice([{"ok": 1.0, "n": step}, {"ok": 0.0}, {"ok": 1.0, "n": 1,
                                    "writeErrors": [{"index": 0}]}])
                original.record_retryable(lsid, number, identity, reply)
                patched.record_retryable(lsid, number, identity, reply)
            else:
                expected = original.retryable_reply(lsid, number, identity)
                got = patched.retryable_reply(lsid, number, identity)
                assert got == expected, (history, step, expected, got)
                replayed += expected is not None
            assert original._retryable == patched._retryable, (history, step)
            at_cap += len(original._retryable) == 20
            below_cap += len(original._retryable) < 20
    # The production module installs it where the server's registry finds it.
    secantusd.apply_patches()
    assert transactions.TransactionRegistry._prune_retryable_locked is (
        secantusd.prune_retryable_from_the_front)
    print(replayed, at_cap, below_cap)
    """
)


def test_retryable_records_are_pruned_as_secantusdb_prunes_them() -> None:
    replayed, at_cap, below_cap = counts_printed_by(COMPARE_RETRYABLE_RECORDS, timeout_s=120)
    # Replies were found and replayed; the records were often held at the cap (the oldest
    # dropped) and often below it (the stale ones dropped).
    assert replayed > 500 and at_cap > 1000 and below_cap > 1000


COMPARE_INCREMENTS = textwrap.dedent(
    """
    import copy, random, sys
    sys.path.insert(0, sys.argv[1])
    import bson
    from bson import Decimal128, Int64
    import secantusd
    from secantusd import (
        apply_update, compute_update_description, original_apply_update,
        original_compute_update_description,
    )

    rng = random.Random(23)
    METRICS = ["cccd:issued", "eid:activated", "payment:vnd", "1", "01", "a.b"[:1]]
    DAYS = ["01", "02", "05", "10", "17", "28", "31", "1", "x"]

    def leaf():
        pick = rng.random()
        if pick < 0.8:
            return rng.choice([0, 1, 7, 123456, -5, 2**31 - 1, -2**31, 2**31 - 3])
        return rng.choice([Int64(4), 2.5, -0.0, float("nan"), True, None, "7", [1, 2], {"q": 1},
                           Decimal128("1.5"), 2**40])

    def month_document():
        doc = {"_id": "u|2025-03", "u": "dong-xoai", "y": 2025, "m": "2025-03",
               "t": {m: leaf() for m in rng.sample(METRICS, rng.randint(0, len(METRICS)))},
               "d": {day: {m: leaf() for m in rng.sample(METRICS, rng.randint(1, 3))}
                     for day in rng.sample(DAYS, rng.randint(0, len(DAYS)))}}
        if rng.random() < 0.3:
            doc["arr"] = [{"n": 1}, 2]
        if rng.random() < 0.3:
            doc["d"]["05"] = rng.choice([3, [1], None, {"z": {"y": 1}}])
        keys = list(doc)
        if rng.random() < 0.3:  # stored field order is not always the insertion order
            rng.shuffle(keys)
        return {k: doc[k] for k in keys}

    def path():
        pick = rng.random()
        if pick < 0.45:
            return f"t.{rng.choice(METRICS)}"
        if pick < 0.85:
            return f"d.{rng.choice(DAYS)}.{rng.choice(METRICS)}"
        return rng.choice([
            "new.deep.er", "d.05.z.y", "u.x", "arr.0.n", "arr.x", "arr", "t", "d", "_id",
            "_id.x", "t.$", "t..x", "", "d.$[].x", "y", "m", "d.05", "t.a", "n",
        ])

    def delta():
        if rng.random() < 0.85:
            return rng.choice([1, 2, 500, -1, 0, 2**31 - 1, -2**31, 7])
        return rng.choice([True, 1.5, Int64(3), Decimal128("2"), 2**31, -2**31 - 1, 2**63,
                           None, "1"])

    def update():
        increments = {}
        for _ in range(rng.randint(1, 12)):
            increments[path()] = delta()
        spec = {"$inc": increments}
        pick = rng.random()
        if pick < 0.5:
            spec["$setOnInsert"] = {"u": "dong-xoai", "y": 2025, "m": "2025-03"}
        elif pick < 0.55:
            spec["$setOnInsert"] = rng.choice([{"t.cccd:issued": 1}, 5, {"$x": 1}])
        elif pick < 0.6:
            spec["$set"] = {"m": "x"}
        elif pick < 0.62:
            spec = {"$inc": rng.choice([{}, 5, [("t.x", 1)]])}
        return spec

    def outcome(function, *args, **options):
        try:
            return ("ok", bson.encode({"": function(*args, **options)}))
        except Exception as error:
            return ("error", type(error).__name__, str(error), getattr(error, "code", None))

    fast_applied = fast_described = errors = other = 0
    for case in range(8000):
        doc, spec = month_document(), update()
        options = {}
        if rng.random() < 0.05:
            options["is_upsert"] = True
        if rng.random() < 0.03:
            options["array_filters"] = [{"e.n": 1}]
        stored = bson.encode(doc)
        expected = outcome(original_apply_update, copy.deepcopy(doc), spec, **options)
        got = outcome(apply_update, doc, spec, **options)
        assert got == expected, (case, doc, spec, options, expected, got)
        assert bson.encode(doc) == stored, (case, "the stored document was changed")
        if expected[0] != "ok":
            errors += 1
            continue
        increments = secantusd._plain_increments(spec)
        if increments is not None and not options and secantusd._incremented(
            copy.deepcopy(doc), increments
        ) is not None:
            fast_applied += 1
        post = bson.decode(expected[1])[""]
        before = bson.encode({"": original_compute_update_description(doc, post, spec)})
        after = bson.encode({"": compute_update_description(doc, post, spec)})
        assert after == before, (case, doc, spec, before, after)
        if increments is not None:
            fast_described += 1
        else:
            other += 1
    secantusd.apply_patches()
    from secantus import storage
    assert storage.apply_update is apply_update
    assert storage.compute_update_description is compute_update_description
    print(fast_applied, fast_described, errors, other)
    """
)


def test_fast_increments_answer_as_secantus_does() -> None:
    fast_applied, fast_described, errors, other = counts_printed_by(
        COMPARE_INCREMENTS, timeout_s=300
    )
    # The fast paths took many updates, and many went to the original: errors raised by it,
    # and updates outside what the fast paths take.
    assert fast_applied > 800 and fast_described > 1200 and errors > 3000 and other > 800


COMPARE_OPLOG_PRUNING = textwrap.dedent(
    """
    import random, sys, tempfile, types
    sys.path.insert(0, sys.argv[1])
    import bson
    from bson.timestamp import Timestamp
    from secantus import storage
    import secantusd

    storage._OPLOG_PRUNE_INTERVAL = 7  # prune often: the real one is every 1,000th entry
    rng = random.Random(23)
    clock = [1_000_000.0]

    def open_store(directory, fast):
        store = storage.Storage(
            directory, oplog_max_entries=40, oplog_retention_seconds=30,
            time_func=lambda: clock[0], ttl_sweep_seconds=0, durable=False,
        )
        if fast:
            store._prune_oplog_locked = types.MethodType(
                secantusd.prune_oplog_from_the_floor, store)
            store.import_oplog_segment = types.MethodType(
                secantusd.import_oplog_segment_then_walk_from_the_start, store)
        return store

    def contents(store):
        session = store._conn.open_session()
        try:
            rows = []
            for table in storage._OPLOG_ALL_TABLES + [storage._PREIMAGE_TABLE]:
                try:
                    cursor = session.open_cursor(table, None)
                except Exception as exc:
                    if storage._is_missing_table(exc):
                        continue
                    raise
                while cursor.next() == 0:
                    value = bson.decode(bytes(cursor.get_value()))
                    value.pop("wall", None)  # the wall clock's time of the emit
                    rows.append((table, cursor.get_key(), value))
                cursor.close()
            return rows
        finally:
            session.close()

    def entries(n):
        return [{"op": "i", "ns": "db.c", "o": {"_id": rng.randrange(10**6)}} for _ in range(n)]

    pruned = kept_in_flight = imported = 0
    for history in range(8):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            original, fast = open_store(a, False), open_store(b, True)
            stores = (original, fast)
            in_flight = []  # ranges minted, written later: a transaction committing late
            for step in range(300):
                pick = rng.random()
                if pick < 0.45:
                    batch = entries(rng.randint(1, 30))
                    pre = [bson.encode({"x": 1}) if rng.random() < 0.3 else None for _ in batch]
                    for store in stores:
                        store._emit_oplog([dict(e) for e in batch], list(pre))
                elif pick < 0.6:
                    clock[0] += rng.choice([0.5, 3, 11, 40])
                elif pick < 0.7:
                    n = rng.randint(1, 5)
                    starts = {store._mint_oplog_seq_and_ts(n)[0] for store in stores}
                    assert len(starts) == 1, starts
                    in_flight.append((starts.pop(), n, clock[0]))
                elif pick < 0.8 and in_flight:
                    start, n, minted = in_flight.pop(rng.randrange(len(in_flight)))
                    for store in stores:
                        cursor = store._cursor(storage._OPLOG_TABLE)
                        for seq in range(start, start + n):
                            cursor[seq] = bson.encode(
                                {"op": "n", "ts": Timestamp(int(minted), seq), "o": {}})
                        cursor.reset()
                        store._oplog_live_count += n
                        store._deregister_minted([(start, start + n)])
                    kept_in_flight += 1
                elif pick < 0.85:
                    done = [store.prune_oplog() for store in stores]
                    assert done[0] == done[1], (history, step, done)
                    pruned += done[0]
                elif pick < 0.88:
                    # Rows written back at old sequence numbers (a restore carrying its oplog).
                    low = rng.randrange(1, max(2, original._next_seq))
                    rows = [(seq, {"op": "n", "ts": Timestamp(int(clock[0]), 1), "o": {}})
                            for seq in range(low, low + rng.randint(1, 4))]
                    for store in stores:
                        store.import_oplog_segment(list(rows))
                    imported += 1
                assert contents(original) == contents(fast), (history, step)
                assert original._oplog_live_count == fast._oplog_live_count, (history, step)
            for store in stores:
                store.close()
    secantusd.apply_patches()
    assert storage.Storage._prune_oplog_locked is secantusd.prune_oplog_from_the_floor
    print(pruned, kept_in_flight, imported)
    """
)


def test_oplog_pruning_from_the_floor_drops_what_secantus_drops() -> None:
    pruned, committed_late, imported = counts_printed_by(COMPARE_OPLOG_PRUNING, timeout_s=300)
    # Many entries were pruned, many writes committed after prunes that ran while they were
    # in flight, and rows were written back below the floor.
    assert pruned > 500 and committed_late > 120 and imported > 50


COMPARE_IN_LOOKUP = textwrap.dedent(
    """
    import random, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    import bson
    from bson import Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex
    from secantus import collation as secantus_collation, storage
    import secantusd
    from secantusd import (
        lookup_id_keys_via_leading_field, original_lookup_id_keys_via_leading_field,
    )

    rng = random.Random(29)
    CASELESS = {"locale": "en", "strength": 2}
    # Values stored in the documents (and asked for), including those whose encoding holds a
    # NUL (escaped in the index) and ones that encode alike (1, 1.0, Int64(1)).
    STORED = [
        0, 1, -1, 2, 7, 10**6, 2**40, -2**31, 1.0, 2.5, -0.0, 1e300, Int64(1), Int64(3),
        Decimal128("2.5"), "", "a", "A", "ab", "b", "a\\x00b", "\\x00", "é", "中", "ff" * 16,
        None, True, False, b"\\x00", b"x", ObjectId("0123456789abcdef01234567"),
        [1, 2], [[]], [[1], 2], {"x": 1}, {"x": [1, None]}, MinKey(), MaxKey(),
    ]
    # Asked for, never stored: between stored keys, below the first, above the last.
    ABSENT = [
        3, -2, 1.5, 2**41, "aa", "a\\x00", "c", "zz", "ée", b"\\x00\\x00", b"y", 1e-300,
        Decimal128("-1"), Regex("a"), [3], [[2]], ObjectId("ffffffffffffffffffffffff"),
        float("nan"), False,
    ]
    FIELDS = ["m", "d", "s", "c", "k", "e", "g", "h"]


    def element():
        return rng.choice(STORED) if rng.random() < 0.9 else rng.choice(ABSENT)


    def field_value():
        pick = rng.random()
        if pick < 0.3:  # multikey: repeated elements, empty arrays, nested arrays
            n = rng.choice([0, 0, 1, 2, 3, 5])
            elements = [element() for _ in range(n)]
            if elements and rng.random() < 0.4:
                elements += rng.sample(elements, rng.randint(1, len(elements)))
            return elements
        return element()


    def document(i, db, coll):
        if (db, coll) == ("db", "b"):
            # Indexes side by side whose keys meet: `g_1`'s last key is often `h_1`'s first, and
            # `m_1`'s first key is above all of `h_1`'s, so that a walk that does not stop at the
            # end of an index reads the next one's entries (an array has an entry of its own too,
            # after the scalars: none in `g` and `h`).
            return {"_id": i, "g": rng.choice([4, 5]), "h": rng.choice([5, 6]),
                    "m": rng.choice([7, 8, [8, 8], [7]])}
        doc = {"_id": i}
        for field in FIELDS:
            if rng.random() < 0.75:  # otherwise the field is missing
                doc[field] = field_value()
        return doc


    def in_list(db, coll):
        n = rng.choice([0, 1, 2, 3, 5, 10, 30, 80])
        pool = STORED + ABSENT
        if (db, coll) == ("db", "b") and rng.random() < 0.7:
            pool = [3, 4, 5, 6, 7, 8, 9]
        values = [rng.choice(pool) for _ in range(n)]
        if values and rng.random() < 0.5:  # some asked twice (or as 1 and 1.0)
            values += rng.sample(values, rng.randint(1, len(values)))
            rng.shuffle(values)
        return [v for v in values if not isinstance(v, dict)] if rng.random() < 0.9 else values


    def clause(db, coll):
        pick = rng.random()
        if pick < 0.85:
            return {"$in": in_list(db, coll)}
        return rng.choice([
            {"$in": in_list(db, coll) + [{"x": 1}]}, {"$in": (1, 2)}, {"$in": "a"}, 5, "a", [1, 2],
            {"$gt": 1}, {"$in": [1], "$gte": 0}, {"$eq": 2}, {"$lte": "b", "$gt": 0}, {},
            {"$in": [object()]}, {"$in": [1, {2}]},
        ])


    class CountingCursor:  # a cursor that counts its seeks

        def __init__(self, cursor):
            self.cursor, self.seeks = cursor, 0

        def search_near(self):
            self.seeks += 1
            return self.cursor.search_near()

        def __getattr__(self, name):
            return getattr(self.cursor, name)


    def index_keys(store):  # each index's distinct keys: (db, coll, name) -> escaped keys
        keys = {}
        cursor = store._cursor(storage._IDX_ENTRIES_TABLE)
        while cursor.next() == 0:
            db, coll, name, packed = cursor.get_key()
            keys.setdefault((db, coll, name), set()).add(storage._unpack_entry(bytes(packed))[0])
        cursor.reset()
        return keys


    def outcome(function, *args, **options):
        try:
            return ("ok", function(*args, **options))
        except Exception as exc:
            return ("error", type(exc).__name__, str(exc))


    fast = with_entries = fell_back = finds = seeks = 0
    with tempfile.TemporaryDirectory() as directory:
        store = storage.Storage(directory, ttl_sweep_seconds=0, durable=False, enable_oplog=False)
        # Several indexes side by side in the one entries table, so that a walk runs into the
        # next index's entries: ascending, descending, sparse, with a collation, compound.
        specs = {
            ("db", "a"): [
                ("m_1", {"m": 1}, {}), ("d_-1", {"d": -1}, {}), ("s_1", {"s": 1}, {"sparse": True}),
                ("c_1", {"c": 1}, {"collation": CASELESS}), ("k_1_m_1", {"k": 1, "m": 1}, {}),
                ("e_1", {"e": 1}, {"sparse": True}),
            ],
            ("db", "b"): [("g_1", {"g": 1}, {}), ("h_1", {"h": 1}, {}), ("m_1", {"m": 1}, {})],
            ("dc", "a"): [("m_1", {"m": 1}, {})],
        }
        for (db, coll), indexes in specs.items():
            store.create_collection(db, coll)
            for name, key, options in indexes:
                store.create_index(db, coll, name, key, options)
        next_id = 0
        for _ in range(12):
            for (db, coll) in specs:
                docs = [document(next_id + i, db, coll) for i in range(rng.randint(0, 60))]
                next_id += len(docs)
                for doc in docs:  # few documents have `e`: its sparse index is nearly empty
                    if rng.random() < 0.97:
                        doc.pop("e", None)
                store.insert(db, coll, docs, ordered=False)
                if rng.random() < 0.5 and next_id:
                    low = rng.randrange(next_id)
                    store.delete_matching(db, coll, {"_id": {"$gte": low, "$lt": low + 20}})
            keys_of = index_keys(store)
            for _ in range(150):
                db, coll = rng.choice(list(specs))
                field = rng.choice(FIELDS)
                value = clause(db, coll)
                caseless = field == "c" and rng.random() < 0.7
                collation = secantus_collation.parse(CASELESS) if caseless else None
                query = {field: value}
                match = store._find_leading_field_index(db, coll, field, query, collation=collation)
                if match is None:
                    continue
                args = (store, db, coll, match, value)
                expected = outcome(original_lookup_id_keys_via_leading_field, *args,
                                   collation=collation)
                counting = []

                def cursor(table, **options):
                    real = storage.Storage._cursor(store, table, **options)
                    counting.append(CountingCursor(real))
                    return counting[-1]
                store._cursor = cursor  # this store's cursors count their seeks, for this call
                got = outcome(lookup_id_keys_via_leading_field, *args, collation=collation)
                del store._cursor
                assert got == expected, (db, coll, match, value, expected, got)
                in_values = value.get("$in") if type(value) is dict and len(value) == 1 else None
                if (not match[2] and type(in_values) is list
                        and not any(isinstance(v, dict) for v in in_values)
                        and expected[0] == "ok"):
                    fast += 1
                    with_entries += bool(expected[1])
                    # One seek at most per key asked, and per key of the index (plus one that goes
                    # past its last): a key below the cursor's entry costs none.
                    done = sum(c.seeks for c in counting)
                    asked = len({storage.encode_value_directed(v, match[1], collation=collation)
                                 for v in in_values})
                    assert done <= min(asked, len(keys_of.get((db, coll, match[0]), ())) + 1), (
                        db, coll, match, value, done)
                    seeks += done
                else:
                    fell_back += 1
                # The whole query through the server's path, both ways.
                if rng.random() < 0.2:
                    options = {"collation": CASELESS} if caseless else {}
                    answers = []
                    for lookup in (original_lookup_id_keys_via_leading_field,
                                   lookup_id_keys_via_leading_field):
                        storage.Storage._lookup_id_keys_via_leading_field = lookup
                        found = outcome(store.find_matching, db, coll, query, **options)
                        answers.append(repr(found))
                    storage.Storage._lookup_id_keys_via_leading_field = (
                        original_lookup_id_keys_via_leading_field)
                    assert answers[0] == answers[1], (db, coll, query, answers)
                    finds += 1
        store.close()
    secantusd.apply_patches()
    assert storage.Storage._lookup_id_keys_via_leading_field is lookup_id_keys_via_leading_field
    print(fast, with_entries, fell_back, finds, seeks)
    """
)


def test_indexed_in_lookup_answers_as_secantus_does() -> None:
    fast, with_entries, fell_back, finds, seeks = counts_printed_by(
        COMPARE_IN_LOOKUP, timeout_s=300
    )
    # Many `$in` lists went through the walk, most of them finding entries; many lookups went
    # to the original (other shapes, compound indexes, errors); whole queries were compared.
    assert fast > 300 and with_entries > 200 and fell_back > 100 and finds > 100
    assert seeks > 800


COMPARE_DROPS = textwrap.dedent(
    """
    import random, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    import secantusd
    from secantus import storage

    rng = random.Random(17)
    Storage = storage.Storage
    TABLES = [*storage._DOC_ALL_TABLES, storage._NAT_TABLE, storage._NAT_SEQ_TABLE,
              storage._IDX_TABLE, storage._IDX_ENTRIES_TABLE, storage._UNIQ_TABLE,
              storage._COLL_TABLE]
    # Neighbours whose names share a prefix with the dropped ones, in other databases too.
    NAMES = [("db", "a"), ("db", "ab"), ("db", "a.b"), ("db", "b"), ("db2", "a"), ("d", "a"),
             ("dbz", "a")]

    def rows(store):
        out = {}
        for table in TABLES:
            cursor = store._cursor_optional(table)
            if cursor is None:
                continue
            while cursor.next() == 0:
                key = tuple(cursor.get_key())
                value = cursor.get_value()
                # The registry's rows hold each collection's random uuid: keys only there.
                out[(table, key)] = None if table == storage._COLL_TABLE else bytes(value)
            cursor.reset()
        return out

    def fill(store, seed):
        local = random.Random(seed)
        for db, coll in NAMES:
            store.create_collection(db, coll)
            store.create_index(db, coll, "m_1", {"m": 1}, {})
            store.create_index(db, coll, "ids_1", {"ids": 1}, {})
            store.create_index(db, coll, "u_1", {"u": 1}, {"unique": True, "sparse": True})
            docs = [{"_id": f"{coll}-{n}", "m": local.randrange(50),
                     "ids": [f"e{n}-{k}" for k in range(local.randrange(4))],
                     **({"u": n} if local.random() < 0.5 else {})}
                    for n in range(local.randrange(60, 400))]
            store.insert(db, coll, docs, ordered=False)

    deleted_at_once = []
    original_delete_keys = Storage._delete_keys

    def counting_delete_keys(self, table, keys):
        deleted_at_once.append(len(keys))
        return original_delete_keys(self, table, keys)

    collected_in_drops = []
    REAL_COLLECT_PREFIX = Storage._collect_prefix

    def counting_collect_prefix(self, table, prefix):
        collected_in_drops.append(table)
        return REAL_COLLECT_PREFIX(self, table, prefix)

    secantusd.DROP_CHUNK = 7
    compared = 0
    for round_ in range(3):
        with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
            stores = [Storage(d, ttl_sweep_seconds=0, durable=False) for d in (one, two)]
            seed = rng.randrange(10**9)
            for store in stores:
                fill(store, seed)
            assert rows(stores[0]) == rows(stores[1])
            steps = [("coll", rng.choice(NAMES)) for _ in range(3)] + [("db", ("db", None))]
            steps.append(("coll", ("db", "missing")))
            rng.shuffle(steps)
            for kind, (db, coll) in steps:
                answers = []
                for chunked, store in enumerate(stores):
                    Storage._collect_prefix = (
                        secantusd.collect_prefix_purging_in_drops if chunked
                        else REAL_COLLECT_PREFIX)
                    # The chunked drop's way to the original, counted: it must not be taken.
                    secantusd.original_collect_prefix = (
                        counting_collect_prefix if chunked else REAL_COLLECT_PREFIX)
                    Storage._delete_keys = counting_delete_keys if chunked else original_delete_keys
                    collected_in_drops.clear()
                    if kind == "coll":
                        drop = secantusd.drop_collection_in_chunks if chunked else (
                            secantusd.original_drop_collection)
                        answers.append(drop(store, db, coll))
                    else:
                        drop = secantusd.drop_database_in_chunks if chunked else (
                            secantusd.original_drop_database)
                        answers.append(drop(store, db))
                    if chunked:
                        # Nothing was collected whole; no chunk passed the bound.
                        assert collected_in_drops == [], collected_in_drops
                Storage._collect_prefix = secantusd.original_collect_prefix = REAL_COLLECT_PREFIX
                Storage._delete_keys = original_delete_keys
                assert answers[0] == answers[1], (kind, db, coll, answers)
                assert rows(stores[0]) == rows(stores[1]), (kind, db, coll)
                compared += 1
            # A collection made again under a dropped name holds only what it is given.
            for store in stores:
                store.create_collection("db", "a")
                store.insert("db", "a", [{"_id": "new", "m": 1}], ordered=False)
                assert [d["_id"] for d in store.find_matching("db", "a", {})] == ["new"]
            assert rows(stores[0]) == rows(stores[1])
            for store in stores:
                store.close()
    assert max(deleted_at_once) == secantusd.DROP_CHUNK
    print(compared, len(deleted_at_once), max(deleted_at_once))
    """
)


def test_drops_delete_what_secantus_deletes_a_chunk_at_a_time() -> None:
    compared, chunks, largest = counts_printed_by(COMPARE_DROPS, timeout_s=300)
    # Every drop compared; each was deleted in many chunks, none above the bound of 7 keys.
    assert compared == 15 and chunks > 1000 and largest == 7
