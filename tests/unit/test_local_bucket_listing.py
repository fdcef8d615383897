"""The local broker's S3 store lists a prefix by walking only its folder
(deploy/local/s3store.py); it must answer exactly as localbucket's own listing, which walks the
whole bucket, for any tree, prefix, delimiter, marker and page size."""

from __future__ import annotations

import os
import random
from pathlib import Path

import localbucket

from deploy.local.s3store import list_entries_under_the_prefix, original_list_entries


def random_bucket(root: Path, rng: random.Random) -> list[str]:
    names = ["a", "b", "ab", "a.b", "0", "00000000000000000123", "é", "x-y", "Z"]
    keys = []
    for _ in range(rng.randint(0, 40)):
        depth = rng.randint(1, 5)
        key = "/".join(rng.choice(names) for _ in range(depth))
        path = root / key
        if any(p.is_file() for p in [*path.parents, path]) or path.is_dir():
            continue  # a file where a folder must be, or the other way round
        path.parent.mkdir(parents=True, exist_ok=True)
        if rng.random() < 0.1:
            path = path.with_name(localbucket.TEMP_PREFIX + path.name)  # a write in progress
        path.write_bytes(b"x")
        keys.append(key)
    if keys and rng.random() < 0.2:  # a linked folder: the whole-bucket walk does not enter it
        target = (root / rng.choice(keys)).parent
        link = root / "linked"
        if not link.exists():
            os.symlink(target, link)
    return keys


def random_prefix(keys: list[str], rng: random.Random) -> str:
    if not keys or rng.random() < 0.15:
        return rng.choice(["", "a", "a/", "nothing/", "a/../b/", "./a/", "a//b", "linked/", "/"])
    key = rng.choice(keys)
    return key[: rng.randint(0, len(key))]


def test_listing_a_prefix_from_its_folder_answers_as_localbucket_does(tmp_path: Path) -> None:
    rng = random.Random(5)
    cases = from_folder = 0
    for bucket in range(150):
        root = tmp_path / f"bucket{bucket}"
        root.mkdir()
        keys = random_bucket(root, rng)
        for _ in range(40):
            prefix = random_prefix(keys, rng)
            delimiter = rng.choice(["", "", "/", "b"])
            marker, marker_is_prefix = "", False
            if keys and rng.random() < 0.4:
                marker = rng.choice(keys)[: rng.randint(1, 12)]
                marker_is_prefix = rng.random() < 0.5
            max_keys = rng.choice([0, 1, 2, 3, 1000])
            arguments = (root, prefix, delimiter, marker, marker_is_prefix, max_keys)
            expected = original_list_entries(None, *arguments)
            assert list_entries_under_the_prefix(None, *arguments) == expected, arguments
            cases += 1
            from_folder += "/" in prefix and bool(expected[0] or expected[1])
    # Many listings, and many of them found something under a folder (the walk that changed).
    assert cases == 6000 and from_folder > 1000
