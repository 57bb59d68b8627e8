"""Ray across machines: a real two-node Ray cluster on this machine whose nodes have their own data caches
(`SCALE_CACHE`), as two machines with their own disks would. Workers get the prepared data by its identity
(shipped through the object store, checksums verified), never through the driver's path, and the results are
bit-identical to the local executor's."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from conftest import REPO, run_scale

from scaling_cli.store import Store

TINY = REPO / "sweeps" / "markov-tiny.toml"
RESULT_COLUMNS = ["run_id", "status", "steps", "tokens", "train_loss", "val_loss", "val_bpb"]

pytestmark = pytest.mark.slow


def sorted_table(path, columns=None) -> pd.DataFrame:
    table = pd.read_parquet(path)
    table = table[columns] if columns else table.drop(columns=["wall_s"])
    keys = ["run_id", "step"] if "step" in table.columns else ["run_id"]
    return table.sort_values(keys, ignore_index=True)


def prepared_dirs(cache) -> list[str]:
    root = cache / "prepared"
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []


def test_two_node_cluster_with_separate_caches_matches_the_local_executor(tmp_path, one_ray_cluster_at_a_time):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    driver_cache, node_caches = tmp_path / "driver-cache", [tmp_path / "node-a", tmp_path / "node-b"]
    env = {"SCALE_CACHE": str(driver_cache)}
    local = run_scale("sweep", TINY, "--out", tmp_path / "local", "--workers", "2", env=env)
    assert local.returncode == 0, local.stderr

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "env_vars": {"SCALE_CACHE": str(node_caches[0])}, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, env_vars={"SCALE_CACHE": str(node_caches[1])})
        cluster.wait_for_nodes()
        remote = run_scale(
            "sweep", TINY, "--out", tmp_path / "ray", "--executor", "ray", "--address", cluster.address,
            "--workers", "2", env=env,
        )  # fmt: skip
        nodes_used = {line["host"] for line in _attempt_lines(tmp_path / "ray")}
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert remote.returncode == 0, remote.stderr

    # Each node prepared nothing itself and read nothing of the driver's cache: it holds the shipped copy.
    assert prepared_dirs(driver_cache) and prepared_dirs(node_caches[0]) == prepared_dirs(driver_cache)
    assert prepared_dirs(node_caches[1]) == prepared_dirs(driver_cache)
    assert not (node_caches[0] / "downloads").exists() and nodes_used  # the data came from the object store
    for name in ("runs.parquet", "curves.parquet"):
        columns = RESULT_COLUMNS if name == "runs.parquet" else None
        pd.testing.assert_frame_equal(
            sorted_table(tmp_path / "local" / name, columns), sorted_table(tmp_path / "ray" / name, columns),
            check_exact=True,
        )  # fmt: skip


def _attempt_lines(out):
    store = Store(out)
    return [line for run_dir in store.runs_dir.iterdir() for line in store.attempts(run_dir.name)]


def test_a_node_whose_data_differs_is_refused(tmp_path):
    """A worker that prepares the data set itself and gets other content stops with a DataError."""
    import dataclasses

    from scaling_cli.data import DataOptions, prepare
    from scaling_cli.dataref import ref_for, resolve
    from scaling_cli.errors import DataError

    options = DataOptions(markov_bytes=50_000, val_min_bytes=8_192)
    prepared = prepare("markov", options, cache_dir=tmp_path / "driver")
    ref = ref_for("markov", prepared, options, "bytes", None)
    assert resolve(ref, cache=tmp_path / "worker").path.name == ref.dirname  # prepared there, same checksums
    shard = tmp_path / "worker" / "prepared" / ref.dirname / prepared.manifest["shards"][0]["file"]
    shard.write_bytes(b"\0" + shard.read_bytes()[1:])
    with pytest.raises(DataError, match="sha256"):
        resolve(ref, cache=tmp_path / "worker")
    other = dataclasses.replace(ref, text_sha256="0" * 64)
    with pytest.raises(DataError, match="differs from the driver"):
        resolve(other, cache=tmp_path / "elsewhere")
    assert json.loads((prepared.path / "manifest.json").read_text())["text_sha256"] == ref.text_sha256
    assert os.path.isdir(prepared.path)
