"""A real one-node Slurm cluster for tests: munged, slurmctld and `slurmd -N localhost`, with every state, spool,
pid and log file under one fresh directory, started by the test and stopped by pid.

No systemd and no cgroups are needed (linuxproc process tracking, no task plugin). Job states come from a
text job-completion log read with `sacct -c`, as there is no accounting database. Settings chosen for short
tests: credentials expire after 5 s (the default 120 s delays every requeue), the scheduler looks every 1-2 s,
and the node offers more CPUs than the machine has (`config_overrides`), so that a test module can keep several
jobs in flight at once and their waits overlap (nothing binds a job to its CPUs here: no cgroups).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "sacct", "scontrol")
START_TIMEOUT_S = 30.0


def missing_binaries() -> list[str]:
    """The daemons and clients a cluster needs that are not on PATH (Debian puts the daemons in /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    return [name for name in DAEMONS if shutil.which(name, path=path) is None]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _binary(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    found = shutil.which(name, path=path)
    assert found, f"{name} not found"
    return found


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    partition: str = "debug"

    @property
    def env(self) -> dict[str, str]:
        """What every Slurm client (and the `scale` process that calls them) needs."""
        return {"SLURM_CONF": str(self.conf)}

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def slurm_conf(root: Path, cpus: int) -> str:
    munge_socket = root / "munge" / "munge.socket.2"
    return "\n".join(
        [
            "ClusterName=scaletest",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket},cred_expire=5",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root}/state",
            f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/slurmctld.pid",
            f"SlurmdPidFile={root}/slurmd.pid",
            f"SlurmctldLogFile={root}/slurmctld.log",
            f"SlurmdLogFile={root}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",  # trust CPUs= below over the machine's own count
            "SchedulerParameters=bf_interval=1,sched_interval=2",
            "KillWait=5",
            "MpiDefault=none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root}/jobcomp.txt",
            "JobAcctGatherType=jobacct_gather/none",
            f"NodeName=localhost CPUs={cpus} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@contextlib.contextmanager
def running_cluster(root: Path, cpus: int = 8):
    """Start munged, slurmctld and slurmd under `root`; yield a SlurmCluster once the node is idle; stop them."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(exist_ok=True)
    os.chmod(root, 0o755)
    os.chmod(root / "munge", 0o755)  # munged refuses a socket directory others cannot reach
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, cpus))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    key = root / "munge" / "munge.key"
    pids = {"munged": root / "munged.pid", "slurmctld": root / "slurmctld.pid", "slurmd": root / "slurmd.pid"}
    try:
        subprocess.run([_binary("mungekey"), "-c", "-k", str(key)], check=True, capture_output=True)
        os.chmod(key, 0o600)
        subprocess.run(
            [
                _binary("munged"), "--force", f"--socket={root / 'munge' / 'munge.socket.2'}", f"--key-file={key}",
                f"--pid-file={pids['munged']}", f"--log-file={root / 'munged.log'}",
                f"--seed-file={root / 'munge' / 'seed'}",
            ],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        subprocess.run([_binary("slurmctld"), "-c", "-i"], check=True, capture_output=True, env=env)
        subprocess.run([_binary("slurmd"), "-N", "localhost"], check=True, capture_output=True, env=env)
        cluster = SlurmCluster(root=root, conf=conf)
        _wait_until_idle(cluster)
        yield cluster
    finally:
        _stop(list(pids.values()))


def _wait_until_idle(cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [_binary("sinfo"), "-h", "-N", "-o", "%T"],
            capture_output=True,
            text=True,
            env={**os.environ, **cluster.env},
        )
        state = (probe.stdout + probe.stderr).strip()
        if probe.returncode == 0 and state.startswith("idle"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"slurm did not come up: {state!r}\n{cluster.log('slurmctld')[-2000:]}")


def _stop(pid_files: list[Path], wait_s: float = 10.0) -> None:
    """Stop daemons by the pids they wrote (never by name: other clusters may run beside this one), all at once:
    each takes a second or two to exit (measured: slurmctld and munged 2.0 s, slurmd 1.1 s), one after the other 5 s."""
    pids = []
    for pid_file in pid_files:
        try:
            pids.append(int(pid_file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _alive(pid)]
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
