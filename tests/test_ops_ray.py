"""Ray across machines: a real two-node Ray cluster on this machine whose nodes have their own data caches
(`SCALE_CACHE`), as two machines with their own disks would. Workers get the prepared data by its identity
(shipped through the object store, checksums verified), never through the driver's path, and the results are
bit-identical to the local executor's. A data-parallel run's two ranks train as one gang across the two nodes
and write the curve the local executor's two ranks write. One cluster serves the module's tests, and one Ray
sweep of markov-tiny on it serves the two tests that compare it with the session's local sweep of the same
spec (`tiny_sweep`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, run_scale, scale_in_process
from filelock import FileLock

from scaling_cli.store import Store

TINY = REPO / "sweeps" / "markov-tiny.toml"
RESULT_COLUMNS = ["run_id", "status", "steps", "tokens", "train_loss", "val_loss", "val_bpb"]

pytestmark = pytest.mark.slow


def sorted_table(path, columns=None) -> pd.DataFrame:
    table = pd.read_parquet(path)
    table = table[columns] if columns else table.drop(columns=["wall_s"])
    keys = ["run_id", "step"] if "step" in table.columns else ["run_id"]
    return table.sort_values(keys, ignore_index=True)


def assert_same_results(local, remote) -> None:
    """runs.parquet's result columns and every curve point, bit for bit."""
    for name in ("runs.parquet", "curves.parquet"):
        columns = RESULT_COLUMNS if name == "runs.parquet" else None
        pd.testing.assert_frame_equal(
            sorted_table(local / name, columns), sorted_table(remote / name, columns), check_exact=True
        )


def prepared_dirs(cache) -> list[str]:
    root = cache / "prepared"
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A two-node Ray cluster (one CPU each, each node its own SCALE_CACHE): (address, [cache of each node])."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("ray-nodes")
    node_caches = [root / "node-a", root / "node-b"]
    # The suite runs in parallel workers (pytest-xdist); two local Ray clusters starting together can collide.
    with FileLock(Path(tempfile.gettempdir()) / "scale-tests-ray.lock"):
        # No autoscaler monitor and no log monitor: nothing here scales, and the sweeps keep workers' logs out
        # of the driver (their shutdown alone took a second).
        quiet = {"num_cpus": 1, "include_log_monitor": False, "no_monitor": True}
        # Ray starts its workers at nice 15: on 2 cores beside the other pytest worker they got a sliver of the
        # CPU (markov-tiny's Ray sweep took 121 s beside two busy loops, 11 s with its workers at nice 0).
        head, node = ({"SCALE_CACHE": str(cache), "RAY_worker_niceness": "0"} for cache in node_caches)
        cluster = Cluster(initialize_head=True, head_node_args={"env_vars": head, "include_dashboard": False, **quiet})
        try:
            cluster.add_node(env_vars=node, **quiet)
            cluster.wait_for_nodes()
            yield cluster.address, node_caches
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(scope="module")
def ray_tiny(two_nodes, tmp_path_factory):
    """markov-tiny swept once on the two nodes with --workers 2 by a driver with a data cache of its own:
    (results directory, the `scale sweep` CompletedProcess, the driver's cache)."""
    address, _ = two_nodes
    root = tmp_path_factory.mktemp("ray-tiny")
    driver_cache = root / "driver-cache"
    result = run_scale(
        "sweep", TINY, "--out", root / "ray", "--executor", "ray", "--address", address, "--workers", "2",
        env={"SCALE_CACHE": str(driver_cache)},
    )  # fmt: skip
    return root / "ray", result, driver_cache


def test_two_node_cluster_with_separate_caches_matches_the_local_executor(two_nodes, ray_tiny, tiny_sweep):
    _, node_caches = two_nodes
    out, remote, driver_cache = ray_tiny
    local_out, local = tiny_sweep  # the local executor's `scale sweep` of the same spec with --workers 2
    assert local.returncode == 0, local.stderr
    nodes_used = {line["host"] for line in _attempt_lines(out)}
    assert remote.returncode == 0, remote.stderr

    # Each node prepared nothing itself and read nothing of the driver's cache: it holds the shipped copy.
    assert prepared_dirs(driver_cache) and prepared_dirs(node_caches[0]) == prepared_dirs(driver_cache)
    assert prepared_dirs(node_caches[1]) == prepared_dirs(driver_cache)
    assert not (node_caches[0] / "downloads").exists() and nodes_used  # the data came from the object store
    assert_same_results(local_out, out)


def test_ray_executor_gives_the_same_table_as_local(tiny_sweep, ray_tiny):
    """A Ray sweep's runs.parquet equals the local executor's in every result column, and it wrote its plan."""
    local_out, _ = tiny_sweep
    out, result, _ = ray_tiny
    assert result.returncode == 0, result.stderr
    local = pd.read_parquet(local_out / "runs.parquet")[RESULT_COLUMNS].sort_values("run_id", ignore_index=True)
    remote = pd.read_parquet(out / "runs.parquet")[RESULT_COLUMNS].sort_values("run_id", ignore_index=True)
    pd.testing.assert_frame_equal(local, remote, check_exact=True)
    assert json.loads((out / "plan.json").read_text())["runs"]


def test_a_data_parallel_run_trains_as_one_gang_across_the_nodes_like_the_local_executor(tmp_path, two_nodes):
    """--gpus-per-run 2 on Ray: the run's two ranks take one bundle each of a placement group that, with one
    CPU per node, spans both nodes; they meet at rank 0's address and train the local executor's curve."""
    address, _ = two_nodes
    spec = tmp_path / "two-ranks.toml"  # markov-tiny's data (already in the nodes' caches), one width, a WSD unit
    spec.write_text(TINY.read_text().replace("d_model = [16, 32, 48]", "d_model = 32"))
    local = scale_in_process("sweep", spec, "--out", tmp_path / "local", "--workers", "1", "--gpus-per-run", "2")
    assert local.returncode == 0, local.stderr
    remote = run_scale(
        "sweep", spec, "--out", tmp_path / "ray", "--executor", "ray", "--address", address, "--gpus-per-run", "2"
    )
    assert remote.returncode == 0, remote.stderr

    runs = pd.read_parquet(tmp_path / "ray" / "runs.parquet")
    assert len(runs) == 2 and set(runs.data_parallel) == {2}, runs
    for run_id in runs.run_id:
        placed = json.loads((tmp_path / "ray" / "runs" / run_id / "ranks.json").read_text())
        assert [p["rank"] for p in placed] == [0, 1] and len({p["node"] for p in placed}) == 2, placed
    assert_same_results(tmp_path / "local", tmp_path / "ray")


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


def test_a_gang_bigger_than_the_cluster_is_refused_before_anything_trains(tmp_path, two_nodes):
    """Four ranks on two one-CPU nodes can never be placed: the dry run (which printed the plan and exited 0
    before) and the real run both say so in one line and exit 2, and the real run trains nothing. Both run in
    this process, where a refusing sweep that stayed connected to the cluster would show."""
    address, _ = two_nodes
    spec = tmp_path / "two-widths.toml"
    spec.write_text(TINY.read_text().replace("d_model = [16, 32, 48]", "d_model = [16, 32]"))
    base = ("sweep", spec, "--executor", "ray", "--address", address, "--gpus-per-run", "4")
    expected = "error: --gpus-per-run: value: 4 ranks need 4 CPU, the Ray cluster has 2"
    for extra in (("--out", tmp_path / "dry", "--dry-run"), ("--out", tmp_path / "real")):
        ran = scale_in_process(*base, *extra)
        assert ran.returncode == 2, ran.stdout + ran.stderr
        lines = ran.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), ran.stderr
    assert not (tmp_path / "dry").exists()
    assert not pytest.importorskip("ray").is_initialized(), "the refusing sweep stayed connected to the cluster"
    assert not (tmp_path / "real" / "runs.parquet").exists()
    assert not list((tmp_path / "real").glob("runs/*/curve*")), "a run trained before the refusal"
