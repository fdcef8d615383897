"""Where throwaway servers keep their data: memory-backed files when there is room, else the
fallback on disk (deploy/local/stack.py: scratch_data_dir)."""

from __future__ import annotations

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
