"""Spill files (hub/spill.py): a record is a whole line or nothing, a failed append leaves no
half line, damaged lines are skipped and counted, and reads never follow a link or open
anything but this user's regular file. Real files; a real full file system for the failed
append (RLIMIT_FSIZE makes a write fail part way, as a full disk does)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from hpckernel.hub.spill import SpillError, SpillReader, SpillWriter, encode

OUT = {"output_type": "stream", "name": "stdout", "text": "x\ud800\x00y\n"}


def _records(path: Path, ranks: set[int]) -> tuple[list[tuple[int, int, dict]], int]:
    reader = SpillReader(path)
    return list(reader.records(ranks)), reader.damaged


def test_records_read_back_by_rank(tmp_path: Path) -> None:
    writer = SpillWriter(tmp_path / "outputs")
    for i in range(4):
        writer.append("c.jsonl", encode(i % 2, i, {**OUT, "text": str(i)}))
    writer.shutdown()
    found, damaged = _records(tmp_path / "outputs" / "c.jsonl", {1})
    assert [(r, o, out["text"]) for r, o, out in found] == [(1, 1, "1"), (1, 3, "3")]
    assert damaged == 0
    assert encode(0, 0, OUT).isascii()  # a lone surrogate or a NUL is escaped, not raw


def test_damaged_and_half_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    writer = SpillWriter(tmp_path / "outputs")
    writer.append("c.jsonl", encode(0, 0, OUT))
    writer.shutdown()
    path = tmp_path / "outputs" / "c.jsonl"
    whole = encode(0, 5, OUT)
    with open(path, "ab") as f:  # a half line, then a record appended after it
        f.write(whole[:20] + whole + b"0\t9\tnot json\n" + whole[:-1])
    found, damaged = _records(path, {0})
    assert [o for _, o, _ in found] == [0] and damaged == 3


def test_a_failed_append_leaves_no_half_line(tmp_path: Path) -> None:
    writer = SpillWriter(tmp_path / "outputs")
    writer.append("c.jsonl", encode(0, 0, OUT))
    path = tmp_path / "outputs" / "c.jsonl"
    size = path.stat().st_size
    big = encode(0, 1, {**OUT, "text": "y" * 100_000})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1000, hard))
    try:
        with pytest.raises(OSError):
            writer.append("c.jsonl", big)  # 1,000 bytes fit, then the write fails
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert path.stat().st_size == size
    writer.append("c.jsonl", encode(0, 2, OUT))  # space again: the next record is whole
    writer.shutdown()
    found, damaged = _records(path, {0})
    assert [o for _, o, _ in found] == [0, 2] and damaged == 0


def test_reads_never_follow_a_link_or_open_a_fifo(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    writer = SpillWriter(outputs)
    writer.append("c.jsonl", encode(0, 0, OUT))
    writer.shutdown()
    planted = tmp_path / "planted"
    planted.write_bytes(encode(0, 0, {**OUT, "text": "planted"}))
    os.symlink(planted, outputs / "link.jsonl")
    with pytest.raises(SpillError, match="is a link: not followed"):
        _records(outputs / "link.jsonl", {0})
    os.mkfifo(outputs / "fifo.jsonl")
    with pytest.raises(SpillError, match="not this user's regular file"):
        _records(outputs / "fifo.jsonl", {0})  # (a blocking open would hang here)
    # nor a link in place of the outputs directory
    moved = tmp_path / "elsewhere"
    outputs.rename(moved)
    os.symlink(moved, outputs)
    with pytest.raises(OSError):
        _records(outputs / "c.jsonl", {0})
