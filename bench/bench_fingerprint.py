"""Benchmark: the content fingerprint of a generated local directory, read in full on the first plan and taken from
the per-file hash cache on a re-plan.

A directory of `--files` files totalling `--gb` GB of generated text is written to a temporary folder. Then,
each in a child process with its own fresh `SCALE_CACHE`: `fingerprint_files` with an empty cache (every byte
hashed: MB/s) and again with the cache it left (nothing read), then `scale sweep --dry-run` on a spec naming the
directory, first and again, beside the same dry run on the synthetic markov data (the plan's fixed cost).
The files were just written, so the first read comes from the page cache: a cold disk adds its read time.

Usage: python bench/bench_fingerprint.py [--gb 1.0] [--files 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCALE = str(Path(sys.executable).with_name("scale"))

FINGERPRINT = """
import json, sys, time
from pathlib import Path
from scaling_cli.data.fingerprint import fingerprint_files
from scaling_cli.data.sources import local_files
root = Path(sys.argv[1])
files = local_files(str(root))
started = time.perf_counter()
result = fingerprint_files(files, root, Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - started, "hashed": result.hashed, "cached": result.cached,
                  "bytes_hashed": result.bytes_hashed}))
"""


def write_corpus(folder: Path, total_bytes: int, n_files: int) -> None:
    """Lines of lowercase pseudo-words, the same for a given size (seeded)."""
    rng = np.random.default_rng(0)
    per_file = total_bytes // n_files
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz   \n", dtype=np.uint8)
    for i in range(n_files):
        block = letters[rng.integers(0, len(letters), per_file)]
        (folder / f"part-{i:04d}.txt").write_bytes(block.tobytes())


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return time.perf_counter() - started, proc.stdout


def spec_for(dataset: str, folder: Path) -> Path:
    spec = folder / f"{Path(dataset).name}.toml"
    template = (REPO / "sweeps" / "markov-tiny.toml").read_text()
    spec.write_text(template.replace('dataset = "markov"', f'dataset = "{dataset}"', 1))
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fingerprint-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        corpus.mkdir()
        total = int(args.gb * 1e9)
        write_corpus(corpus, total, args.files)
        time.sleep(0.5)  # let the files settle, so that the first read may be cached
        print(f"{args.files} files, {total / 1e9:.2f} GB in {corpus}; load average {os.getloadavg()[0]:.2f}")
        hash_cache = work / "hash-cache"
        for label in ("fingerprint, empty cache", "fingerprint, cached"):
            _, out = timed([sys.executable, "-c", FINGERPRINT, str(corpus), str(hash_cache)], {})
            facts = json.loads(out)
            rate = facts["bytes_hashed"] / 1e6 / facts["seconds"]
            print(f"{label:28s} {facts['seconds']:7.3f} s  read {facts['hashed']:4d} files ({rate:6.0f} MB/s),"
                  f" {facts['cached']} from the cache")  # fmt: skip
        plan_cache = {"SCALE_CACHE": str(work / "plan-cache")}
        for label, dataset in [
            ("dry run, markov", "markov"),
            ("dry run, first plan", str(corpus)),
            ("dry run, re-plan", str(corpus)),
        ]:
            spec = spec_for(dataset, work)
            seconds, _ = timed([SCALE, "sweep", str(spec), "--dry-run", "--out", str(work / "out")], plan_cache)
            print(f"{label:28s} {seconds:7.3f} s wall")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
