"""Datasets: `animus datasets push` next to `dvc add` and plain hashlib, in one run on one machine.

    python benchmarks/datasets.py [--quick] [--skip-s3] [--keep] [--setup]

On first use it creates `.cache/bench/dvc-venv` (gitignored) with `python -m venv` and
pip, and installs DVC 3.67.x into it; the project venv is not touched. Then, in a
temporary directory under `.cache/bench/`:

  (a) 200 files x 10 MB, and (b) 20,000 files totalling 2 GB (100 KB each, in 100
      folders), of incompressible bytes from a seeded generator;

and for each data set, in this order, on the same files:

  1. hashlib: read and sha256 every file, one thread, 1 MiB reads (the limit);
  2. `dvc add DIR` in a fresh DVC repository (`dvc init --no-scm`, its own empty cache,
     DVC's default cache type), wall time of the command;
  3. `animus datasets push NAME DIR` through the real embedded stack with its local
     directory store (tests/stack.py: JupyterHub, proxy, animus-api, object gateway),
     wall time of the command, the first version into an empty store;
  4. the same against a stack whose store is S3 on SeaweedFS (`--skip-s3` leaves it out);

then rewrites 1 % of the files with new bytes (same sizes) and repeats 2-4: the
re-version, timed the same way. Prints throughputs (GB/s = 10^9 bytes/s), the ratios
and the issue's goals as information (never an assertion), and writes the results as
JSON to benchmarks/results/.

The files are in the page cache for every contender (they were just written and the
machine has memory to spare), so this measures hashing, copying and protocol overhead,
not the disk's read speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))
from api_throughput import log, run_and_save  # noqa: E402

DVC_VENV = REPO / ".cache" / "bench" / "dvc-venv"
DVC_SPEC = "dvc==3.67.*"
DVC_SERIES = "3.67."
PROJECT = "bench"
GB = 1e9
READ_CHUNK = 1 << 20

QUIET_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "DVC_NO_UPDATER": "1",
    "GIT_PYTHON_REFRESH": "quiet",
    "PYTHONUNBUFFERED": "1",
}


# =============================================================================
# The DVC venv
# =============================================================================


def dvc_version(venv: Path = DVC_VENV) -> str | None:
    py = venv / "bin" / "python"
    if not py.exists():
        return None
    r = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('dvc'))"],
        capture_output=True,
        text=True,
        env={**os.environ, **QUIET_ENV},
    )
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_dvc_venv(venv: Path = DVC_VENV) -> str:
    """The DVC venv (created with `python -m venv` + pip on first use); returns DVC's version."""
    version = dvc_version(venv)
    if version and version.startswith(DVC_SERIES) and (venv / "bin" / "dvc").exists():
        return version
    log(f"creating {venv} with {DVC_SPEC} (first use; a few minutes) ...")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", DVC_SPEC], check=True)
    version = dvc_version(venv)
    if not version or not version.startswith(DVC_SERIES):
        raise RuntimeError(f"{venv}: expected DVC {DVC_SERIES}x, found {version}")
    return version


# =============================================================================
# Data
# =============================================================================


def sizes(quick: bool) -> dict[str, dict[str, int]]:
    if quick:
        return {"a": {"files": 20, "size": 10_000_000, "dirs": 1}, "b": {"files": 2_000, "size": 100_000, "dirs": 10}}
    return {"a": {"files": 200, "size": 10_000_000, "dirs": 1}, "b": {"files": 20_000, "size": 100_000, "dirs": 100}}


def file_paths(root: Path, spec: dict[str, int]) -> list[Path]:
    per_dir = -(-spec["files"] // spec["dirs"])
    if spec["dirs"] == 1:
        return [root / f"part-{i:05d}.bin" for i in range(spec["files"])]
    return [root / f"d{i // per_dir:03d}" / f"part-{i:05d}.bin" for i in range(spec["files"])]


def write_files(paths: list[Path], size: int, rng: random.Random) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))


def hash_all(paths: list[Path]) -> float:
    """Read and sha256 every file, one thread: seconds."""
    t0 = time.perf_counter()
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb", buffering=0) as f:
            while chunk := f.read(READ_CHUNK):
                h.update(chunk)
        h.hexdigest()
    return time.perf_counter() - t0


# =============================================================================
# Timed commands
# =============================================================================


def timed(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> dict[str, Any]:
    """Run a command to completion: wall seconds and the CPU seconds it (and its children) used.

    First (not timed) the page cache's dirty pages are written out: `dvc add` returns
    with its cache copies still in memory, and the next command's first fsync would
    otherwise wait for the disk to take them, billing DVC's writes to its successor.
    """
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "client_cpu_s": cpu}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="datasets-", dir=REPO / ".cache" / "bench"))
        self.stacks: list[Any] = []
        self.seaweed: Any = None

    # --- contenders ----------------------------------------------------------------

    def dvc_env(self) -> dict[str, str]:
        return {
            **os.environ,
            **QUIET_ENV,
            "DVC_SITE_CACHE_DIR": str(self.tmp / "dvc-site-cache"),
            "HOME": str(self.tmp / "home"),
            "PATH": f"{DVC_VENV / 'bin'}:{os.environ.get('PATH', '')}",
        }

    def dvc_add(self, name: str) -> dict[str, Any]:
        return timed([str(DVC_VENV / "bin" / "dvc"), "add", "--quiet", name], self.repo, self.dvc_env(), "dvc add")

    def start_stack(self, label: str, api_config: str = "") -> dict[str, Any]:
        from stack import HubStack

        stack = HubStack(self.tmp / f"stack-{label}", api_config=api_config)
        log(f"starting the Animus stack ({label}) ...")
        stack.start()
        self.stacks.append(stack)
        token = stack.user_token("bench")
        r = stack.api("POST", "/projects", token, json={"slug": PROJECT})
        if r.status_code != 201:
            raise RuntimeError(f"could not create the project: {r.status_code} {r.text}")
        env = {
            **os.environ,
            "ANIMUS_API_URL": stack.api_url,
            "ANIMUS_TOKEN": token,
            "ANIMUS_CONFIG_DIR": str(self.tmp / f"animus-config-{label}"),
            # the client's hash cache (like DVC's state database, kept in the temp directory)
            "ANIMUS_CACHE_DIR": str(self.tmp / f"animus-cache-{label}"),
            "PYTHONUNBUFFERED": "1",
        }
        return {"stack": stack, "env": env}

    def animus_push(self, target: dict[str, Any], dataset: str, name: str) -> dict[str, Any]:
        animus = str(Path(sys.executable).with_name("animus"))
        cmd = [animus, "datasets", "push", dataset, name, "--project", PROJECT, "--quiet", "--json"]
        return timed(cmd, self.repo, target["env"], "animus datasets push")

    def s3_config(self) -> str:
        from seaweed import SeaweedFS

        self.seaweed = SeaweedFS(self.tmp / "seaweedfs").start()
        s = self.seaweed
        return (
            'c.AnimusAPI.storage_class = "animus_hub.storage.s3.S3ObjectStore"\n'
            f"c.S3ObjectStore.endpoint_url = {s.endpoint_url!r}\n"
            'c.S3ObjectStore.bucket = "animus-bench"\n'
            f"c.S3ObjectStore.region = {s.region!r}\n"
            f"c.S3ObjectStore.access_key_id = {s.access_key!r}\n"
            f"c.S3ObjectStore.secret_access_key = {s.secret_key!r}\n"
            "c.S3ObjectStore.create_bucket = True\n"
        )

    # --- the run ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        dvc = ensure_dvc_venv()
        self.repo = self.tmp / "repo"
        self.repo.mkdir()
        (self.tmp / "home").mkdir()
        cfg = sizes(self.args.quick)
        rng = random.Random(20261128)
        data: dict[str, list[Path]] = {}
        for name, spec in cfg.items():
            paths = file_paths(self.repo / name, spec)
            log(f"writing ({name}): {spec['files']:,} files x {spec['size']:,} bytes ...")
            write_files(paths, spec["size"], rng)
            data[name] = paths

        subprocess.run(
            [str(DVC_VENV / "bin" / "dvc"), "init", "--no-scm", "--quiet"], cwd=self.repo, env=self.dvc_env(), check=True
        )
        subprocess.run(
            [str(DVC_VENV / "bin" / "dvc"), "cache", "dir", str(self.tmp / "dvc-cache")],
            cwd=self.repo,
            env=self.dvc_env(),
            check=True,
        )
        targets = {"local": self.start_stack("local")}
        if not self.args.skip_s3:
            targets["s3"] = self.start_stack("s3", self.s3_config())

        results: dict[str, Any] = {}
        for name, paths in data.items():
            total = len(paths) * cfg[name]["size"]
            row: dict[str, Any] = {"files": len(paths), "bytes": total}
            log(f"({name}) hashlib ...")
            hash_all(paths)  # once to settle the page cache; then measured
            row["hashlib"] = {"seconds": hash_all(paths)}
            log(f"({name}) dvc add ...")
            row["dvc"] = self.dvc_add(name)
            for label, target in targets.items():
                log(f"({name}) animus datasets push ({label}) ...")
                row[f"animus_{label}"] = self.animus_push(target, f"bench-{name}", name)
            # 1 % of the files get new bytes
            changed = paths[:: max(1, len(paths) // max(1, len(paths) // 100))][: max(1, len(paths) // 100)]
            write_files(changed, cfg[name]["size"], rng)
            row["changed_files"] = len(changed)
            log(f"({name}) {len(changed)} files changed: dvc add again ...")
            row["dvc_again"] = self.dvc_add(name)
            for label, target in targets.items():
                log(f"({name}) animus datasets push again ({label}) ...")
                row[f"animus_{label}_again"] = self.animus_push(target, f"bench-{name}", name)
            for value in row.values():
                if isinstance(value, dict) and "seconds" in value:
                    value["gb_per_s"] = total / GB / value["seconds"]
            results[name] = row

        result = {
            "benchmark": "datasets",
            "when": dt.datetime.now(dt.UTC).isoformat(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
            "dvc_version": dvc,
            "quick": self.args.quick,
            "sizes": cfg,
            "results": results,
        }
        self.report(result)
        return result

    # --- output ----------------------------------------------------------------------

    def report(self, result: dict[str, Any]) -> None:
        res = result["results"]
        labels = ["local"] + ([] if self.args.skip_s3 else ["s3"])
        print()
        print(
            f"DVC {result['dvc_version']} vs Animus (`animus datasets push`, embedded stack); "
            f"{'QUICK sizes; ' if result['quick'] else ''}{result['machine']['cpus']} CPUs, "
            f"load {result['machine']['load'][0]:.2f}"
        )
        head = f"{'data':<28}{'hashlib':>9}{'dvc add':>9}" + "".join(f"{'animus ' + lb:>14}" for lb in labels)
        print("first version, GB/s (client CPU s in brackets)")
        print(head)
        print("-" * len(head))
        for name, row in res.items():
            gb = row["bytes"] / GB
            line = f"({name}) {row['files']:,} files, {gb:.2f} GB".ljust(28)
            line += f"{row['hashlib']['gb_per_s']:>9.2f}{row['dvc']['gb_per_s']:>9.2f}"
            line += "".join(f"{row[f'animus_{lb}']['gb_per_s']:>14.2f}" for lb in labels)
            print(line)
        print()
        print("ratios and goals (information, not assertions)")
        goals = {"a": (3.0, 0.70), "b": (5.0, None)}
        for name, row in res.items():
            dvc_gbs = row["dvc"]["gb_per_s"]
            for lb in labels:
                ours = row[f"animus_{lb}"]["gb_per_s"]
                vs_dvc = ours / dvc_gbs
                vs_hash = ours / row["hashlib"]["gb_per_s"]
                goal_dvc, goal_hash = goals[name] if lb == "local" else (None, None)
                text = f"  ({name}) animus {lb}: {vs_dvc:.2f}x DVC"
                if goal_dvc:
                    text += f" (goal >= {goal_dvc:.0f}x: {'met' if vs_dvc >= goal_dvc else 'NOT met'})"
                text += f", {100 * vs_hash:.0f} % of hashlib"
                if goal_hash:
                    text += f" (goal >= {100 * goal_hash:.0f} %: {'met' if vs_hash >= goal_hash else 'NOT met'})"
                print(text)
        print()
        print("re-version after 1 % of the files changed: seconds (share of the first version's time)")
        for name, row in res.items():
            parts = [f"dvc {row['dvc_again']['seconds']:.2f} s ({100 * row['dvc_again']['seconds'] / row['dvc']['seconds']:.0f} %)"]
            for lb in labels:
                again, first = row[f"animus_{lb}_again"]["seconds"], row[f"animus_{lb}"]["seconds"]
                share = again / first
                goal = f", goal <= 10 %: {'met' if share <= 0.10 else 'NOT met'}" if lb == "local" else ""
                parts.append(f"animus {lb} {again:.2f} s ({100 * share:.0f} %{goal})")
            print(f"  ({name}) {row['changed_files']} files changed: " + "; ".join(parts))
        print()
        print("client CPU seconds (the command and its children), first version / re-version")
        for name, row in res.items():
            parts = [f"dvc {row['dvc']['client_cpu_s']:.1f}/{row['dvc_again']['client_cpu_s']:.1f}"]
            for lb in labels:
                parts.append(
                    f"animus {lb} {row[f'animus_{lb}']['client_cpu_s']:.1f}/{row[f'animus_{lb}_again']['client_cpu_s']:.1f}"
                )
            print(f"  ({name}) " + "; ".join(parts))

    def cleanup(self) -> None:
        for stack in self.stacks:
            stack.stop()
        if self.seaweed is not None:
            self.seaweed.stop()
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a tenth of the sizes: a smoke run")
    p.add_argument("--skip-s3", action="store_true", help="leave out the S3 (SeaweedFS) store")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (data, stack logs)")
    p.add_argument("--setup", action="store_true", help="only create the DVC venv")
    args = p.parse_args(argv)
    if args.setup:
        print(f"DVC {ensure_dvc_venv()} in {DVC_VENV}")
        return 0
    return run_and_save(Bench(args), "datasets")


if __name__ == "__main__":
    sys.exit(main())
