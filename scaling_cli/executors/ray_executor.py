"""Run sweep units as Ray tasks, each with its CPU (and fractional GPU) needs; results go to the same store,
so the results directory must be on a filesystem every node sees. Prepared data sets need not be: their
files travel once through Ray's object store, and each node writes them into its own cache and verifies
their checksums before training (see `scaling_cli.dataref`).

A unit whose runs are data-parallel (K ranks) gets a placement group of K bundles, one per rank (PACK: on one
node where it fits, else across nodes); its ranks run as tasks in those bundles and meet in one process group
at rank 0's node address (`GangLauncher`)."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from pathlib import Path
from typing import Any

from scaling_cli.errors import SpecError


def _call(fn: Any, task: Any) -> Any:
    return fn(task)


def _call_as_gang(fn: Any, task: Any, group: Any) -> Any:
    """The unit's task: its data-parallel runs start their ranks in `group`'s bundles, not in this process."""
    from scaling_cli.train.distributed import ranks_launched_by

    with ranks_launched_by(GangLauncher(group, task.data)):
        return fn(task)


def data_parallel_of(unit: Any) -> int:
    """Ranks the unit's runs train on (every run of a unit shares its train settings but the budget)."""
    return max(run.train.data_parallel for run in unit.runs)


class GangLauncher:
    """Starts a data-parallel run's ranks as Ray tasks, rank i in bundle i of the unit's placement group;
    rank 0's node address and a free port there are the process group's rendezvous."""

    def __init__(self, group: Any, data: dict):
        self.group, self.data = group, data

    def __call__(self, world: int, target: Any, args: tuple, run_dir: Path) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from scaling_cli.train.distributed import free_port

        def in_bundle(index: int) -> PlacementGroupSchedulingStrategy:
            return PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=index)

        bundles = self.group.bundle_specs
        if len(bundles) != world:
            raise RuntimeError(f"the unit's placement group has {len(bundles)} bundles for {world} ranks")
        # This runs in the unit's task, which waits in bundle 0: on rank 0's node, where the ranks meet.
        address, port = ray.util.get_node_ip_address(), free_port()
        # A rank on a GPU gets a fresh process (a CUDA context cannot move to another device); a CPU rank may
        # reuse an idle worker of an earlier rank, whose imports are done.
        on_gpu = any(bundle.get("GPU", 0) for bundle in bundles)
        rank_task = ray.remote(max_retries=0, max_calls=1 if on_gpu else 0)(_gang_rank)
        refs = [
            rank_task.options(
                num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0), scheduling_strategy=in_bundle(rank)
            ).remote(rank, world, address, port, target, args, self.data)
            for rank, bundle in enumerate(bundles)
        ]
        try:
            placed = ray.get(refs)
        except Exception as exc:  # noqa: BLE001 - one rank failed: stop the others, fail the run
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise RuntimeError(f"a rank of the data-parallel run failed: {type(exc).__name__}: {exc}") from None
        (Path(run_dir) / "ranks.json").write_text(json.dumps(placed, indent=1) + "\n")


def _gang_rank(rank: int, world: int, address: str, port: int, target: Any, args: tuple, data: dict) -> dict:
    """One rank on whatever node its bundle is on; returns where it ran (the run's ranks.json)."""
    import ray

    from scaling_cli.train.distributed import rank_main

    rank_main(rank, world, port, target, tuple(_here(arg, data) for arg in args), address)
    return {"rank": rank, "node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}


def _here(arg: Any, data: dict) -> Any:
    """A prepared data set's path on the unit's node becomes its path in this node's cache (got by identity)."""
    if not isinstance(arg, str):
        return arg
    for ref in data.values():
        if Path(arg).name == ref.dirname:
            from scaling_cli.dataref import resolve

            return str(resolve(ref).path)
    return arg


class ObjectStoreFiles:
    """The files of a prepared directory, put once into the object store; any node fetches them by ref."""

    def __init__(self, ref: Any):
        self.ref = ref

    def fetch(self) -> dict[str, bytes]:
        import ray

        return ray.get(self.ref)


class RayExecutor:
    """Submit units to a Ray cluster at `address`, or to a local one started here when no address is given."""

    def __init__(
        self, address: str | None = None, workers: int | None = None, runs_per_gpu: int = 1, device: str = "auto"
    ):
        try:
            import ray
        except ImportError:
            raise SpecError("--executor", "ray", "Ray is not installed: pip install 'scaling-cli[ray]'") from None
        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
                else:
                    ray.init(log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
            except Exception as exc:  # noqa: BLE001 - Ray raises many types for an unreachable cluster
                raise SpecError("--address", str(address or "local"), f"cannot start or reach Ray: {exc}") from None
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        # The driver may have no GPU while the cluster's nodes do, so ask the cluster, not local torch.
        gpus = resources.get("GPU", 0.0) if device in ("auto", "cuda") else 0.0
        self.slots = (workers or max(1, int(gpus * runs_per_gpu))) if gpus else (workers or cpus)
        self.cores = cpus
        self.device_types = frozenset({"cpu", "cuda"} if resources.get("GPU", 0.0) else {"cpu"})
        # One task runs on one node: a unit can use at most the largest node's CPUs.
        node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        self.max_unit_cores = max(1, int(max(node_cpus, default=cpus)))
        self._gpu_share = 1.0 / runs_per_gpu if gpus else 0.0
        self._remote = ray.remote(max_retries=0)(_call)
        self._gang_remote = ray.remote(max_retries=0)(_call_as_gang)
        self._refs: list[Any] = []
        self._groups: list[tuple[Any, Any]] = []  # (unit's future, its gang's placement group)
        self._resources = resources

    def ship_data(self, refs: dict) -> dict:
        """Put each prepared data set's files into the object store, so nodes without it can fetch it."""
        from scaling_cli.dataref import directory_files, resolve, with_shipment

        shipped = {}
        for name, ref in refs.items():
            files = directory_files(resolve(ref).path)
            shipped[name] = with_shipment(ref, ObjectStoreFiles(self._ray.put(files)))
        return shipped

    def check_units(self, units: Any) -> None:
        """Refuse, before anything trains, a data-parallel unit whose gang this cluster can never place (and
        leave the cluster, as the sweep will not: the executor is not used after a refusal)."""
        world = max((data_parallel_of(u) for u in units), default=1)
        try:
            check_gangs_fit(world, self._resources, bool(self._gpu_share))
        except SpecError:
            self.shutdown()
            raise

    def submit(self, fn: Any, task: Any) -> Any:
        world = data_parallel_of(task.unit)
        if world > 1:
            return self._submit_gang(fn, task, world)
        # A CPU unit reserves the cores it trains on, so Ray places it where they are free.
        needs = {"num_cpus": 1, "num_gpus": self._gpu_share} if self._gpu_share else {"num_cpus": task.threads or 1}
        ref = self._remote.options(**needs).remote(fn, task)
        self._refs.append(ref)
        return ref.future()

    def _submit_gang(self, fn: Any, task: Any, world: int) -> Any:
        """The unit's task waits in bundle 0 holding nothing; each rank holds one bundle: a whole GPU, or its
        share of the unit's CPU cores."""
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if self._gpu_share:
            bundle = {"CPU": 1, "GPU": 1}
        else:
            bundle = {"CPU": max(1, (task.threads or world) // world)}
        for resource, amount in bundle.items():
            if amount * world > self._resources.get(resource, 0):
                have = self._resources.get(resource, 0)
                raise _too_big(f"{world} ranks need {amount * world:g} {resource}, the Ray cluster has {have:g}")
        self._remove_finished_groups()
        group = placement_group([dict(bundle) for _ in range(world)], strategy="PACK")
        strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
        ref = self._gang_remote.options(num_cpus=0, scheduling_strategy=strategy).remote(fn, task, group)
        self._refs.append(ref)
        future = ref.future()
        self._groups.append((future, group))
        return future

    def _remove_finished_groups(self) -> None:
        """Give back the bundles of gangs whose unit has ended (here, not in a future's done-callback: that runs
        on Ray's own thread, where a blocking Ray call hangs the driver)."""
        for future, group in [(f, g) for f, g in self._groups if f.done()]:
            _suppressed(self._ray.util.remove_placement_group, group)
            self._groups.remove((future, group))

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # a task that already finished cannot be cancelled
                    self._ray.cancel(ref, force=True)
        for _, group in self._groups:
            _suppressed(self._ray.util.remove_placement_group, group)
        if self._started_here:
            self._ray.shutdown()


def check_gangs_fit(world: int, resources: dict, on_gpu: bool) -> None:
    """SpecError when a gang of `world` ranks needs more than the cluster has in all: a CPU per rank, and on
    GPUs a GPU per rank too (a placement group that can never be placed would wait forever)."""
    needs = {"CPU": world, "GPU": world} if on_gpu else {"CPU": world}
    for resource, amount in needs.items():
        have = resources.get(resource, 0)
        if world > 1 and amount > have:
            raise _too_big(f"{world} ranks need {amount:g} {resource}, the Ray cluster has {have:g}")


def check_gangs_before_running(world: int, address: str | None, device: str) -> None:
    """The dry run's form of `RayExecutor.check_units`: the cluster at `address` is asked for its resources
    (and left running); with no address, the local cluster a sweep would start has this machine's CPUs and
    GPUs."""
    if world <= 1:
        return
    if address:
        try:
            import ray
        except ImportError:
            raise SpecError("--executor", "ray", "Ray is not installed: pip install 'scaling-cli[ray]'") from None
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            resources = ray.cluster_resources()
        except Exception as exc:  # noqa: BLE001 - Ray raises many types for an unreachable cluster
            raise SpecError("--address", address, f"cannot reach Ray: {exc}") from None
        finally:
            _suppressed(ray.shutdown)
    else:
        import os

        import torch

        resources = {"CPU": len(os.sched_getaffinity(0)), "GPU": torch.cuda.device_count()}
    check_gangs_fit(world, resources, device in ("auto", "cuda") and resources.get("GPU", 0) > 0)


def _too_big(problem: str) -> SpecError:
    return SpecError("--gpus-per-run", "value", f"{problem} (lower --gpus-per-run or the spec's [train] data_parallel)")


def _suppressed(call: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):  # already removed, or Ray already shut down
        call(*args)
