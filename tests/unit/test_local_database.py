"""The local database's linear update-path check (deploy/local/secantusd.py) must answer
exactly as SecantusDB's own: same conflict or none, same error, for any update, and the
same again when asked twice in a row (it keeps its last answer)."""

from __future__ import annotations

import textwrap

from tests.unit.database_interpreter import counts_printed_by

COMPARE = textwrap.dedent(
    """
    import random, sys
    sys.path.insert(0, sys.argv[1])
    from secantus import update
    from secantusd import validate_update_paths

    rng = random.Random(7)
    segments = ["a", "b", "c", "d", "e", "t", "0", "12"]
    operators = ["$set", "$inc", "$unset", "$rename", "$max"] * 20 + ["$nope", "set"]

    def path():
        if rng.random() < 0.01:
            return rng.choice(["", "a..b", ".a"])
        return ".".join(rng.choice(segments) for _ in range(rng.randint(1, 3)))

    def outcome(check, doc):
        try:
            return ("ok", check(doc))
        except Exception as exc:  # the error's type, message and code must match too
            return ("error", type(exc).__name__, str(exc), getattr(exc, "code", None))

    conflicts = errors = clean = 0
    previous = None
    for _ in range(20000):
        doc = {}
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(operators)
            doc[op] = {path(): (path() if op == "$rename" else 1) for _ in range(rng.randint(1, 6))}
        expected = outcome(update._validate_update_paths, doc)
        got = outcome(validate_update_paths, doc)
        assert got == expected, (doc, expected, got)
        # Asked again (the answer it keeps for the last update), and after another update.
        assert outcome(validate_update_paths, doc) == expected, doc
        if previous is not None:
            assert outcome(validate_update_paths, previous[0]) == previous[1], previous
        previous = (doc, expected)
        conflicts += expected[0] == "ok" and expected[1] is not None
        errors += expected[0] == "error"
        clean += expected == ("ok", None)
    print(conflicts, errors, clean)
    """
)


def test_linear_update_path_check_answers_as_secantus_does() -> None:
    conflicts, errors, clean = counts_printed_by(COMPARE, timeout_s=120)
    # The random updates exercise all three answers, many times each.
    assert conflicts > 1000 and errors > 1000 and clean > 1000
