"""Every count of settled runs that `scale sweep` prints is at least the number of settled-run lines printed
before it: on a terminal (the live table's header, redrawn below each printed line) and in a piped log (the
`| sweep N/M runs` part of progress lines)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time

from conftest import SCALE, TINY

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SETTLED_LINE = re.compile(r"^(done|diverged|failed)\s+[0-9a-f]{12} ")


def counts_against_lines(text: str, count_pattern: str) -> list[tuple[int, int]]:
    """(printed count, settled-run lines before it) for every count in the output, in order."""
    pairs, lines_seen = [], 0
    for line in ESCAPE.sub("", text).replace("\r", "\n").split("\n"):
        line = line.strip()
        if SETTLED_LINE.match(line):
            lines_seen += 1
        for found in re.finditer(count_pattern, line):
            pairs.append((int(found.group(1)), lines_seen))
    return pairs


def sweep_on_a_terminal(out) -> str:
    """The raw bytes a real `scale sweep --workers 2` of markov-tiny writes to a pseudo-terminal."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [SCALE, "sweep", str(TINY), "--out", str(out), "--workers", "2"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    chunks, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the sweep exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_the_live_header_never_lags_the_settled_lines(tmp_path, isolated_cache):
    text = sweep_on_a_terminal(tmp_path / "out")
    pairs = counts_against_lines(text, r"runs (\d+)/6 ")
    assert len(re.findall(r"^done ", ESCAPE.sub("", text).replace("\r", "\n"), re.M)) == 6, text
    assert len(pairs) >= 6, text  # the header was drawn while runs settled
    lagging = [(count, lines) for count, lines in pairs if count < lines]
    assert not lagging, f"header counts below the done lines printed before them: {lagging}"
    assert pairs[-1][0] == 6


def test_progress_lines_in_a_log_never_lag_the_settled_lines(tiny_sweep):
    _, ran = tiny_sweep
    pairs = counts_against_lines(ran.stdout, r"\| sweep (\d+)/6 runs")
    assert all(count >= lines for count, lines in pairs), ran.stdout
    assert sum(1 for line in ran.stdout.splitlines() if SETTLED_LINE.match(line)) == 6
