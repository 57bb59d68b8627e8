"""The one atomic writer: concurrent writers, readers never see a partial file, modes, cleanup on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from scaling_cli import atomic

WRITER = """
import sys, time
from scaling_cli import atomic
path, fill, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = fill.encode() * 500_000
while time.time() < start:
    time.sleep(0.001)
for _ in range(40):
    atomic.write_bytes(path, data)
"""


def test_two_processes_writing_one_target_leave_one_whole_content(tmp_path):
    target = tmp_path / "table.bin"
    start = time.time() + 1.0  # both processes begin writing at the same moment
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(target), fill, str(start)], stderr=subprocess.PIPE)
        for fill in ("a", "b")
    ]
    contents = {b"a" * 500_000, b"b" * 500_000}
    seen = 0
    while any(w.poll() is None for w in writers):
        if target.exists():
            assert target.read_bytes() in contents  # never a mix, never cut short
            seen += 1
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read().decode()
    assert target.read_bytes() in contents
    assert seen > 0
    assert [p.name for p in tmp_path.iterdir()] == ["table.bin"]


def test_new_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
        os.umask(0o002)
        atomic.write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o664


def test_a_failing_writer_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "fit.json"
    atomic.write_json(target, {"version": 1})

    def broken_stream(handle):
        handle.write(b'{"version": 2, "half')
        raise RuntimeError("disk on fire")

    def broken_path(tmp):
        tmp.write_text('{"version": 3')
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic.write_stream(target, broken_stream)
    with pytest.raises(RuntimeError):
        atomic.write_via_path(target, broken_path)
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["fit.json"]


def test_path_writers_see_the_target_suffix_and_parents_are_created(tmp_path):
    target = tmp_path / "figures" / "isoflop.png"
    seen = []
    atomic.write_via_path(target, lambda tmp: (seen.append(tmp.suffix), tmp.write_bytes(b"png")))
    assert seen == [".png"]
    assert target.read_bytes() == b"png"


def test_json_writes_numpy_scalars_as_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    atomic.write_json(tmp_path / "row.json", {"loss": np.float64(1.5), "steps": np.int64(3)})
    assert json.loads((tmp_path / "row.json").read_text()) == {"loss": 1.5, "steps": 3}
