"""Run sweep units as Ray tasks, each with its CPU (and fractional GPU) needs; results go to the same store,
so the results directory must be on a filesystem every node sees."""

from __future__ import annotations

import contextlib
from typing import Any

from scaling_cli.errors import SpecError


def _call(fn: Any, task: Any) -> Any:
    return fn(task)


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
        if gpus:
            self.slots = workers or max(1, int(gpus * runs_per_gpu))
            self._needs = {"num_cpus": 1, "num_gpus": 1.0 / runs_per_gpu}
            self.threads = max(1, cpus // self.slots)
        else:
            self.slots = workers or cpus
            self.threads = max(1, cpus // self.slots)
            self._needs = {"num_cpus": self.threads}
        self._remote = ray.remote(max_retries=0)(_call)
        self._refs: list[Any] = []

    def submit(self, fn: Any, task: Any) -> Any:
        ref = self._remote.options(**self._needs).remote(fn, task)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # a task that already finished cannot be cancelled
                    self._ray.cancel(ref, force=True)
        if self._started_here:
            self._ray.shutdown()
