"""The local broker's S3 folder store: localbucket, with conditional writes made atomic.

tansu keeps each partition's high watermark in an S3 object and updates it with a
conditional PUT (compare-and-swap on the object's ETag). localbucket 1.2.1 honours only
`If-None-Match: *`, and checks it apart from the write: with two producers writing one
partition, both swaps succeed, two batches get the same offsets and an acknowledged batch
vanishes from the log (measured: 370 of 21,367 acknowledged records lost with two producers;
none with this store). Here every conditional PUT checks its precondition and writes under
one lock, as S3 itself does. Apache Kafka has no such store: this only makes the local stand-in
as safe as the real thing.

A GET answers the ETag of the content it serves. localbucket opens the object and then takes
the ETag of whatever the path names by then: a swap landing in between served the old
watermark with the new ETag, tansu's next swap on that ETag succeeded on stale content, moved
the watermark back over an acknowledged batch, and those records left the log (4 of 120 runs
of tests/e2e/test_local_broker.py's three producers; the failing run traced had such a GET
right before the lost batch; none lost in 60 runs since, with 5 such GETs answered right).

It also lists a prefix by walking only the folder the prefix names. localbucket walks, makes
relative and sorts every object of the bucket for every page of every listing, and tansu lists
a partition's objects when it fetches. Objects accumulate as logs grow (each produced batch is
one), so fetches of every topic slowed with the number of all of them: in a benchmark run,
past 24,000 objects (12,900 of them faust's changelog), the store sat at a full core listing
and the aggregator waited on its fetches for minutes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import localbucket

_WRITE_LOCK = threading.Lock()
_TRACE = os.environ.get("LOCAL_S3_TRACE")
_TRACE_LOCK = threading.Lock()  # one line per event: handler threads' prints interleaved


def trace(line: str) -> None:
    with _TRACE_LOCK:
        print(line, flush=True)


def signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    """localbucket's `stat_signature`: a write replaces the file (a new inode), never edits it."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def file_md5(file: IO[bytes]) -> str:
    """The MD5 ETag of an open file's content; `_send_file` seeks before it sends."""
    file.seek(0)
    digest = hashlib.md5()
    while block := file.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


original_list_entries = localbucket.S3Handler._list_entries
Listing = tuple[list[tuple[str, Path]], list[str], bool, str]


def list_entries_under_the_prefix(
    handler: Any,
    bucket_dir: Path,
    prefix: str,
    delimiter: str,
    marker: str,
    marker_is_prefix: bool,
    max_keys: int,
) -> Listing:
    """localbucket's `_list_entries`, walking only the folder every key with `prefix` lies in:
    a key is an object's path in the bucket, so a key that starts with `a/b/c` names a file
    under `a/b`. The rest (sorting, markers, delimiters, paging) is the original's, line for
    line. A prefix with no folder, an odd part, or a link on the way goes to the original."""
    folder = prefix.rpartition("/")[0]
    parts = folder.split("/")
    plain = bool(folder) and all(part not in ("", ".", "..") for part in parts)
    # The original's walk does not follow links.
    if not plain or any(
        (bucket_dir / "/".join(parts[: n + 1])).is_symlink() for n in range(len(parts))
    ):
        return original_list_entries(  # type: ignore[no-any-return]
            handler, bucket_dir, prefix, delimiter, marker, marker_is_prefix, max_keys
        )
    keys = []
    for directory, _, files in os.walk(bucket_dir / folder):
        for name in files:
            if name.startswith(localbucket.TEMP_PREFIX):
                continue
            path = Path(directory, name)
            keys.append((path.relative_to(bucket_dir).as_posix(), path))
    keys.sort(key=lambda item: item[0].encode())
    contents: list[tuple[str, Path]] = []
    common_prefixes: list[str] = []
    last_entry = ""
    truncated = False
    for key, path in keys:
        if not key.startswith(prefix):
            continue
        if marker and (
            key.encode() <= marker.encode() or (marker_is_prefix and key.startswith(marker))
        ):
            continue
        common = ""
        if delimiter:
            index = key.find(delimiter, len(prefix))
            if index >= 0:
                common = key[: index + len(delimiter)]
        if common and common_prefixes and common_prefixes[-1] == common:
            continue
        if len(contents) + len(common_prefixes) >= max_keys:
            truncated = max_keys > 0
            break
        if common:
            common_prefixes.append(common)
            last_entry = "P:" + common
        else:
            contents.append((key, path))
            last_entry = "K:" + key
    return contents, common_prefixes, truncated, last_entry


class ConditionalS3Handler(localbucket.S3Handler):  # type: ignore[misc]  # untyped
    disable_nagle_algorithm = True  # else every S3 read stalls ~40 ms

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _write_object(self, bucket: str, key: str, write: Callable[[IO[bytes]], str]) -> str:
        if_match = self.headers.get("If-Match")
        if_none_match = self.headers.get("If-None-Match")
        if _TRACE:
            trace(f"PUT {key} If-Match={if_match} If-None-Match={if_none_match}")
        if if_match is None and if_none_match is None:
            return super()._write_object(bucket, key, write)  # type: ignore[no-any-return]
        with _WRITE_LOCK:
            target = self._object_path(bucket, key)
            current = localbucket.object_etag(target) if target.is_file() else None
            if if_match is not None and (
                current is None or not localbucket.etag_matches(if_match, current)
            ):
                raise self._precondition_failed_error()
            if (
                if_none_match is not None
                and if_none_match.strip() != "*"
                and current is not None
                and localbucket.etag_matches(if_none_match, current)
            ):
                raise self._precondition_failed_error()
            return super()._write_object(bucket, key, write)  # type: ignore[no-any-return]

    def _send_file(
        self,
        status: Any,
        file: IO[bytes],
        start: int,
        length: int,
        headers: dict[str, str],
        include_body: bool,
    ) -> None:
        """GetObject and HeadObject, with the ETag of the file opened (`_get` opens it by its
        path, so `file.name` is the path). `_get` took the ETag from the path after opening:
        if the path still names the opened file it is right; if a write replaced the object
        in between, it is the new content's, so the opened file is hashed instead."""
        try:
            current: tuple[int, int, int, int] | None = signature(os.stat(file.name))
        except FileNotFoundError:
            current = None  # deleted since: still the opened content that is served
        if current != signature(os.fstat(file.fileno())):
            etag = file_md5(file)
            if _TRACE:
                trace(
                    f"GET {file.name} replaced while served: ETag {headers.get('ETag')} -> {etag}"
                )
            headers = {**headers, "ETag": f'"{etag}"'}
        super()._send_file(status, file, start, length, headers, include_body)

    # The handler is the listing's first argument, as `self`.
    _list_entries = list_entries_under_the_prefix


def main() -> int:
    localbucket.S3Handler = ConditionalS3Handler  # main() builds its server from this name
    return int(localbucket.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
