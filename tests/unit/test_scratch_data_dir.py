"""Where throwaway servers keep their data: memory-backed files when there is room, else the
fallback on disk (deploy/local/stack.py: scratch_data_dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploy.local.stack import scratch_data_dir


def test_a_fresh_directory_on_the_memory_filesystem_when_it_has_room(tmp_path: Path) -> None:
    memory = tmp_path / "shm"
    memory.mkdir()
    first = scratch_data_dir(tmp_path / "disk", memory_fs=memory, min_free=1)
    second = scratch_data_dir(tmp_path / "disk", memory_fs=memory, min_free=1)
    assert first.parent == memory and second.parent == memory
    assert first != second and first.is_dir() and second.is_dir()
    assert not (tmp_path / "disk").exists()


def test_the_fallback_when_the_memory_filesystem_lacks_room(tmp_path: Path) -> None:
    memory = tmp_path / "shm"
    memory.mkdir()
    chosen = scratch_data_dir(tmp_path / "disk", memory_fs=memory, min_free=1 << 62)
    assert chosen == tmp_path / "disk" and chosen.is_dir()
    assert list(memory.iterdir()) == []


def test_the_fallback_when_there_is_no_memory_filesystem(tmp_path: Path) -> None:
    chosen = scratch_data_dir(tmp_path / "disk", memory_fs=tmp_path / "missing")
    assert chosen == tmp_path / "disk" and chosen.is_dir()


def test_directories_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    memory = tmp_path / "shm"
    memory.mkdir()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = memory / f"stack-data-{int(finished.stdout)}-abc"
    living = memory / f"stack-data-{os.getpid()}-def"
    unrelated = memory / "something-else"
    for directory in (orphan, living, unrelated):
        (directory / "mongo").mkdir(parents=True)
    fresh = scratch_data_dir(tmp_path / "disk", memory_fs=memory, min_free=1)
    assert not orphan.exists()
    assert living.is_dir() and unrelated.is_dir() and fresh.is_dir()
    assert fresh.name.startswith(f"stack-data-{os.getpid()}-")
