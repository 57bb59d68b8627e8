"""Run sweep units as Ray tasks, each with its CPU (and fractional GPU) needs; results go to the same store,
so the results directory must be on a filesystem every node sees. Prepared data sets need not be: their
files travel once through Ray's object store, and each node writes them into its own cache and verifies
their checksums before training (see `scaling_cli.dataref`)."""

from __future__ import annotations

import contextlib
from typing import Any

from scaling_cli.errors import SpecError


def _call(fn: Any, task: Any) -> Any:
    return fn(task)


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
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(log_to_driver=False, include_dashboard=False)
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
        self._refs: list[Any] = []

    def ship_data(self, refs: dict) -> dict:
        """Put each prepared data set's files into the object store, so nodes without it can fetch it."""
        from scaling_cli.dataref import directory_files, resolve, with_shipment

        shipped = {}
        for name, ref in refs.items():
            files = directory_files(resolve(ref).path)
            shipped[name] = with_shipment(ref, ObjectStoreFiles(self._ray.put(files)))
        return shipped

    def submit(self, fn: Any, task: Any) -> Any:
        # A CPU unit reserves the cores it trains on, so Ray places it where they are free.
        needs = {"num_cpus": 1, "num_gpus": self._gpu_share} if self._gpu_share else {"num_cpus": task.threads or 1}
        ref = self._remote.options(**needs).remote(fn, task)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # a task that already finished cannot be cancelled
                    self._ray.cancel(ref, force=True)
        if self._started_here:
            self._ray.shutdown()
