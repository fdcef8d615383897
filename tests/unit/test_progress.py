"""The progress reporter: plain periodic lines off a terminal, tqdm's bar on one."""

from __future__ import annotations

import io

from shared.progress import Progress, _duration


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_it_prints_plain_lines_with_rate_and_time_left() -> None:
    out = io.StringIO()
    progress = Progress("import: rows", total=1_000, unit="rows", every_s=0.0, stream=out)
    progress.advance(250)
    progress.set(500)
    progress.close("3 refused")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("import: rows: 250 of 1,000 rows (25.0%), ")
    assert "rows/s, about " in lines[0] and lines[0].endswith(" left")
    assert lines[1].startswith("import: rows: 500 of 1,000 rows (50.0%)")
    assert "done in" in lines[2] and lines[2].endswith("; 3 refused")
    assert "\r" not in out.getvalue()


def test_lines_are_periodic_not_one_per_update() -> None:
    out = io.StringIO()
    progress = Progress("rebuild", every_s=3600, stream=out)  # an unknown total
    for _ in range(1000):
        progress.advance()
    assert out.getvalue() == ""
    progress.close()
    (line,) = out.getvalue().splitlines()
    assert line.startswith("rebuild: 1,000 records, ") and "left" not in line


def test_a_total_learnt_late_and_grown() -> None:
    out = io.StringIO()
    progress = Progress("rebuild", every_s=0.0, stream=out)
    progress.set_total(100)
    progress.set(50)
    progress.set_total(200)
    progress.set(100)
    assert "50 of 100 records (50.0%)" in out.getvalue()
    assert "100 of 200 records (50.0%)" in out.getvalue()


def test_on_a_terminal_it_draws_a_bar() -> None:
    out = Terminal()
    with Progress("reconcile", total=10, stream=out) as progress:
        progress.advance(10)
    drawn = out.getvalue()
    assert "reconcile: 100%" in drawn and "records/s" in drawn and "\r" in drawn


def test_durations() -> None:
    assert _duration(5.4) == "5 s"
    assert _duration(125) == "2 min 05 s"
    assert _duration(3 * 3600 + 60) == "3 h 01 min"
