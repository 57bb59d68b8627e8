"""Benchmark: streaming prepare of a generated 1 GB corpus, as text and as JSON lines in zstd, and the
memory of a training worker on a small and a large data set.

Every measured step runs in a child process, so its peak RSS is the child's own (`os.wait4` returns the
child's rusage) and its time includes imports, as a user's `scale data prepare` does. Reported per step:
wall seconds, MB/s of raw input text, CPU seconds (user + system, all threads) and peak RSS. On a shared
machine the wall rate moves with the neighbours; the CPU seconds say what the work itself costs.

The corpus is this Python's standard library sources (paragraphs of code and prose, some non-ASCII),
copied until it reaches the size, each copy headed by a line naming it so copies differ. Everything is
written into a temporary directory on disk and deleted at the end.

Goals (issue 15, 2 cores): >= 30 MB/s with the bytes tokenizer, peak RSS <= 1 GB, and a worker's RSS
that does not grow with the data set (3 MB vs 300 MB).

Usage: python bench/bench_data.py [--gb 1.0] [--skip-jsonl] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

GOAL_MB_S = 30.0
GOAL_RSS_MB = 1024.0

PREPARE = """
import sys
from pathlib import Path
from scaling_cli.data import DataOptions, prepare
data = prepare(sys.argv[1], DataOptions(), cache_dir=Path(sys.argv[2]))
print(data.path)
"""

WORKER = """
import sys, tempfile
from scaling_cli.data import open_prepared
from scaling_cli.model import ModelConfig
from scaling_cli.train import TrainConfig, train_run
data = open_prepared(sys.argv[1])
model = ModelConfig(d_model=32, n_layer=2, n_head=2, seq_len=128)
train = TrainConfig(tokens=128 * 16 * 60, eval_every=0, eval_batches=2, checkpoint_every=0, device="cpu", threads=1)
with tempfile.TemporaryDirectory() as run_dir:
    result = train_run(model, train, data, run_dir)
print(result.status, result.val_loss)
"""


def stdlib_texts() -> list[bytes]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not {"site-packages", "test", "tests"} & set(p.parts))
    return [p.read_bytes() for p in files]


def copies(target_bytes: int):
    """(copy, file index, text) until target_bytes of text were given."""
    texts, given, copy = stdlib_texts(), 0, 0
    while True:
        for i, text in enumerate(texts):
            header = f"# copy {copy} of file {i}\n\n".encode()
            yield copy, i, header + text + b"\n\n"
            given += len(header) + len(text) + 2
            if given >= target_bytes:
                return
        copy += 1


def write_text_corpus(path: Path, target_bytes: int) -> int:
    with open(path, "wb") as out:
        for _, _, text in copies(target_bytes):
            out.write(text)
    return path.stat().st_size


def write_jsonl_zst(path: Path, target_bytes: int) -> int:
    """JSON lines {"id", "text"} compressed with zstd level 3; returns the bytes of text inside."""
    import zstandard

    text_bytes = 0
    with open(path, "wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as out:
        for copy, i, text in copies(target_bytes):
            decoded = text.decode("utf-8", errors="replace")
            out.write((json.dumps({"id": f"{copy}-{i}", "text": decoded}) + "\n").encode())
            text_bytes += len(decoded.encode())
    return text_bytes


def run_child(code: str, *args: str, env: dict | None = None) -> dict:
    """Run python -c code in a child; its wall time, CPU time, peak RSS and last output line."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}): {stderr.strip().splitlines()[-1:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "out": stdout.strip().splitlines()[-1] if stdout.strip() else "",
    }


def prepare_step(name: str, source: Path, text_bytes: int, cache: Path) -> dict:
    result = run_child(PREPARE, str(source), str(cache))
    result.update(name=name, mb=text_bytes / 1e6, mb_s=text_bytes / 1e6 / result["wall_s"])
    print(
        f"{name:<28} {result['mb']:8.0f} MB  {result['wall_s']:7.1f} s  {result['mb_s']:6.1f} MB/s  "
        f"cpu {result['cpu_s']:7.1f} s  peak RSS {result['peak_rss_mb']:6.0f} MB",
        flush=True,
    )
    return result


def worker_step(name: str, prepared: str) -> dict:
    tokens = json.loads((Path(prepared) / "manifest.json").read_text())["tokens"]["train"]
    result = run_child(WORKER, prepared)
    result.update(name=name, train_tokens=tokens)
    print(
        f"{name:<28} {tokens / 1e6:8.1f} M train tokens  {result['wall_s']:6.1f} s  "
        f"peak RSS {result['peak_rss_mb']:6.0f} MB  ({result['out']})",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the generated corpora in GB (1e9 bytes)")
    parser.add_argument("--skip-jsonl", action="store_true", help="skip the jsonl.zst corpus")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args()
    # torch is asked in a child: importing it here would make every child's peak RSS start at ours
    capability = run_child("import torch; print(torch.backends.cpu.get_cpu_capability())")["out"]
    print(f"cpu: {os.cpu_count()} cores, torch capability {capability}; load average {os.getloadavg()[0]:.1f}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-data-", dir=os.environ.get("BENCH_TMP", "/var/tmp")))
    work.mkdir(parents=True, exist_ok=True)
    target = int(args.gb * 1e9)
    results = []
    try:
        began = time.perf_counter()
        text_bytes = write_text_corpus(work / "corpus.txt", target)
        print(f"generated {text_bytes / 1e6:.0f} MB of text in {time.perf_counter() - began:.1f} s in {work}")
        results.append(prepare_step("prepare text (bytes)", work / "corpus.txt", text_bytes, work / "cache-text"))
        if not args.skip_jsonl:
            began = time.perf_counter()
            inside = write_jsonl_zst(work / "corpus.jsonl.zst", target)
            size = (work / "corpus.jsonl.zst").stat().st_size
            print(
                f"generated jsonl.zst: {inside / 1e6:.0f} MB of text, {size / 1e6:.0f} MB on disk, "
                f"in {time.perf_counter() - began:.1f} s"
            )
            results.append(
                prepare_step("prepare jsonl.zst (bytes)", work / "corpus.jsonl.zst", inside, work / "cache-jsonl")
            )
        workers = []
        for label, size in (("3 MB", 3_000_000), ("300 MB", 300_000_000)):
            folder = work / f"slice-{label.replace(' ', '')}"
            folder.mkdir()
            with open(work / "corpus.txt", "rb") as src, open(folder / "corpus.txt", "wb") as dst:
                size = dst.write(src.read(size))
            step = prepare_step(f"prepare {label} slice", folder / "corpus.txt", size, work / "cache-slices")
            workers.append(worker_step(f"train worker on {label}", step["out"]))
        print()
        text = results[0]
        print(
            f"goal >= {GOAL_MB_S:.0f} MB/s: {'met' if text['mb_s'] >= GOAL_MB_S else 'NOT met'} "
            f"({text['mb_s']:.1f} MB/s; {text['mb'] / text['cpu_s']:.1f} MB per CPU second)"
        )
        worst = max(r["peak_rss_mb"] for r in results)
        print(f"goal peak RSS <= {GOAL_RSS_MB:.0f} MB: {'met' if worst <= GOAL_RSS_MB else 'NOT met'} ({worst:.0f} MB)")
        print(f"10 GB at this rate: {10_000 / text['mb_s'] / 60:.1f} min")
        print(
            f"worker RSS, 3 MB vs 300 MB data set: {workers[0]['peak_rss_mb']:.0f} vs "
            f"{workers[1]['peak_rss_mb']:.0f} MB"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
