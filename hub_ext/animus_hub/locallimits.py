"""What one machine can enforce of a workspace's limits: CPU affinity, a memory cgroup, visible GPUs.

Used by the local spawner (``AnimusLocalSpawner``) of the embedded profile:

- CPUs: the workspace's process tree is pinned (``sched_setaffinity`` in the child
  before exec; children inherit it) to ``ceil(cpu_limit)`` CPUs, at most as many
  as the hub may use. ``CPUAllocator`` hands out the least-used CPUs so two
  workspaces do not share one while another idles.
- Memory: a cgroup per workspace with ``memory.max`` (cgroup v2) or
  ``memory.limit_in_bytes`` (cgroup v1 memory hierarchy) set to ``mem_limit``; the
  child joins it before exec, so everything it starts is counted and the kernel's
  OOM killer stops the tree at the limit. ``MemoryCgroups.setup`` checks at run time
  whether the cgroup filesystem lets the hub make such groups; when it does not,
  memory is not enforced (and the caller logs it once). No rlimit is used instead:
  RLIMIT_AS breaks Node/V8 (code-server), and RLIMIT_DATA is per process, so it
  would not bound a workspace that runs several kernels.
- GPUs: ``count_nvidia_gpus`` counts the NVIDIA GPUs the driver shows.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

#: the folder, under the parent cgroup, holding one group per running workspace
GROUP_FOLDER = "animus-workspaces"


def available_cpus() -> list[int]:
    """The CPUs the hub may run on (its own affinity: a container's cpuset counts)."""
    return sorted(os.sched_getaffinity(0))


def cpus_for(cpu_limit: float, available: int) -> int:
    """How many whole CPUs a workspace with `cpu_limit` gets: rounded up, at least 1, at most `available`."""
    return max(1, min(math.ceil(cpu_limit), available))


class CPUAllocator:
    """Spreads workspaces over the CPUs: each gets the `n` CPUs the fewest workspaces hold."""

    def __init__(self, cpus: Iterable[int]):
        self.cpus = list(cpus)
        self.load: Counter[int] = Counter({c: 0 for c in self.cpus})

    def take(self, n: int) -> list[int]:
        chosen = sorted(sorted(self.cpus, key=lambda c: (self.load[c], c))[:n])
        self.hold(chosen)
        return chosen

    def hold(self, cpus: Iterable[int]) -> None:
        for c in cpus:
            if c in self.load:
                self.load[c] += 1

    def give_back(self, cpus: Iterable[int]) -> None:
        for c in cpus:
            if self.load.get(c, 0) > 0:
                self.load[c] -= 1


def count_nvidia_gpus(proc: str = "/proc") -> int:
    """NVIDIA GPUs the driver shows (one folder each in /proc/driver/nvidia/gpus); 0 without the driver."""
    try:
        return sum(1 for _ in Path(proc, "driver", "nvidia", "gpus").iterdir())
    except OSError:
        return 0


def own_cgroup(proc_cgroup_text: str, version: int) -> str:
    """This process's group path, from /proc/self/cgroup: the ``0::`` line (v2) or the memory line (v1)."""
    for line in proc_cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if version == 2 and parts[0] == "0" and parts[1] == "":
            return parts[2]
        if version == 1 and "memory" in parts[1].split(","):
            return parts[2]
    return "/"


def group_name(user: str, server: str) -> str:
    """A cgroup folder name for a workspace: readable, safe, and unique among hubs on one machine."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{user}-{server}" if server else user)[:80].lstrip(".")
    return f"{base or 'workspace'}-{secrets.token_hex(4)}"


class MemoryCgroups:
    """Memory cgroups for workspaces, under `parent` (default: the hub's own group).

    ``setup()`` answers ``None`` when groups can be made, or the reason they cannot.
    """

    def __init__(self, root: str = "/sys/fs/cgroup", parent: str = "", proc_self_cgroup: str = "/proc/self/cgroup"):
        self.root = Path(root)
        self.parent_setting = parent
        self.proc_self_cgroup = proc_self_cgroup
        self.version = 0
        self.base: Path | None = None

    def _detect(self) -> tuple[int, Path]:
        if self.parent_setting:
            parent = Path(self.parent_setting)
            if (parent / "cgroup.controllers").exists():
                return 2, parent
            if (parent / "memory.limit_in_bytes").exists():
                return 1, parent
            raise OSError(f"{parent} is neither a cgroup v2 group nor a cgroup v1 memory group")
        text = Path(self.proc_self_cgroup).read_text()
        if (self.root / "cgroup.controllers").exists():
            return 2, self.root / own_cgroup(text, 2).lstrip("/")
        if (self.root / "memory" / "memory.limit_in_bytes").exists():
            return 1, self.root / "memory" / own_cgroup(text, 1).lstrip("/")
        raise OSError(f"no cgroup v2 filesystem and no cgroup v1 memory hierarchy under {self.root}")

    def setup(self) -> str | None:
        try:
            version, parent = self._detect()
            if version == 2:
                if "memory" not in (parent / "cgroup.controllers").read_text().split():
                    raise OSError(f"the memory controller is not available in {parent}")
                self._enable_memory(parent)
                base = parent / GROUP_FOLDER
                base.mkdir(exist_ok=True)
                self._enable_memory(base)
            else:
                base = parent / GROUP_FOLDER
                base.mkdir(exist_ok=True)
            if not os.access(base, os.W_OK):
                raise OSError(f"{base} is not writable")
        except OSError as e:
            reason = str(e)
            if e.errno == errno.EBUSY:
                reason += (
                    " (a cgroup v2 group with processes of its own, like the hub's, cannot pass the memory "
                    "controller on: point cgroup_parent at a delegated group without processes)"
                )
            return reason
        self.version, self.base = version, base
        return None

    @staticmethod
    def _enable_memory(group: Path) -> None:
        control = group / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            control.write_text("+memory")

    def create(self, name: str, limit_bytes: int) -> Path:
        """A new group limited to `limit_bytes` (swap too, where the kernel accounts it)."""
        assert self.base is not None, "setup() first"
        group = self.base / name
        group.mkdir()
        try:
            if self.version == 2:
                (group / "memory.max").write_text(str(limit_bytes))
                # like a pod on a node without swap: at the limit the workspace's processes
                # are OOM-killed instead of swapping the machine to a crawl
                with contextlib.suppress(OSError):
                    (group / "memory.swap.max").write_text("0")
            else:
                (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):
                    (group / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        except OSError:
            self.remove(group)
            raise
        return group

    @staticmethod
    def limit(group: Path) -> int | None:
        for name in ("memory.max", "memory.limit_in_bytes"):
            with contextlib.suppress(OSError, ValueError):
                return int((group / name).read_text().strip())
        return None

    @staticmethod
    def procs_file(group: Path) -> bytes:
        return os.fsencode(group / "cgroup.procs")

    @staticmethod
    def pids(group: Path) -> list[int]:
        try:
            return [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    @staticmethod
    def remove(group: Path) -> bool:
        """Remove an empty group; False while processes remain in it."""
        try:
            group.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True


def join_cgroup(procs_file: bytes) -> None:
    """In a child before exec: move this process into the group (only raw syscalls, safe after fork)."""
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
