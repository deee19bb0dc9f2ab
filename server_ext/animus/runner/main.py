"""animus-runner: execute one attempt of a batch run and report on it.

Everything it needs comes from its environment (set by the executor):
ANIMUS_API_URL, ANIMUS_TOKEN (a run token: it can touch only this run),
ANIMUS_PROJECT, ANIMUS_RUN_ID, ANIMUS_RUN_ATTEMPT, ANIMUS_RUNNER_CACHE,
ANIMUS_HEARTBEAT_INTERVAL and optionally ANIMUS_MEMORY_LIMIT_MB. Instead of
ANIMUS_TOKEN, ANIMUS_TOKEN_FILE may name a file holding the token (Kubernetes Jobs).

In its working directory it

1. reads the run's job (code ref, command, environment version, inputs) and
   reports "running"; from then on it sends heartbeats;
2. fetches exactly the commit (``git fetch --depth 1 <repo> <sha>``) into ``src/``
   and checks that HEAD is that SHA;
3. downloads the pinned dataset versions into ``inputs/<name>/`` and makes them
   read-only;
4. builds, or reuses, a virtualenv for the lock file's digest under the cache;
5. runs the command in ``src/`` with that virtualenv first on PATH, streaming its
   output (stdout and stderr) to the API in chunks;
6. reports the exit code. A failure of steps 2–4 is reported as "setup_failed".

If the API answers that the attempt is no longer current (cancelled, timed out,
superseded by a retry), the runner kills the command and exits.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..client import AnimusAPIError, Client

LOG_CHUNK_BYTES = 64 * 1024
LOG_FLUSH_SECONDS = 1.0
STOP_CODES = ("run_finished", "attempt_superseded")


class SetupFailed(Exception):
    """The attempt could not be prepared (code, data or environment)."""


class Stop(Exception):
    """The API says this attempt is over."""


def _seg(value: str) -> str:
    return quote(value, safe="")


class RunnerAPI:
    def __init__(self, client: Client, project: str, run_id: str, attempt: int):
        self.client = client
        self.base = f"/projects/{_seg(project)}/runs/{_seg(run_id)}"
        self.attempt = attempt
        self.stopped = threading.Event()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        for delay in (0, 1, 2, 4, 8):
            time.sleep(delay)
            try:
                return self.client.request("POST", self.base + path, json_body=body)
            except AnimusAPIError as e:
                if e.reason in STOP_CODES or e.status in (401, 403, 404):
                    self.stopped.set()
                    raise Stop(e.message) from None
                if e.status and e.status < 500:
                    raise
        raise AnimusAPIError(0, "api_unavailable", f"POST {path} kept failing")

    def job(self) -> dict[str, Any]:
        return self.client.request("GET", self.base + "/job")

    def report(self, state: str, exit_code: int | None = None, message: str = "") -> Any:
        body = {"attempt": self.attempt, "state": state, "message": message[:4000]}
        if exit_code is not None:
            body["exit_code"] = exit_code
        return self._post("/report", body)

    def log(self, text: str) -> None:
        self._post("/logs", {"attempt": self.attempt, "text": text})


class LogShipper(threading.Thread):
    """Collects output and sends it in chunks: every second, or sooner when a chunk fills."""

    def __init__(self, api: RunnerAPI, echo: Any = None):
        super().__init__(name="animus-logs", daemon=True)
        self.api = api
        self.echo = echo
        self.buffer: list[str] = []
        self.size = 0
        self.lock = threading.Condition()
        self.closed = False

    def write(self, text: str) -> None:
        if self.echo is not None:
            self.echo.write(text)
            self.echo.flush()
        with self.lock:
            self.buffer.append(text)
            self.size += len(text)
            if self.size >= LOG_CHUNK_BYTES:
                self.lock.notify()

    def _take(self) -> str:
        with self.lock:
            text, self.buffer, self.size = "".join(self.buffer), [], 0
            return text

    def run(self) -> None:
        while True:
            with self.lock:
                if not self.closed and self.size < LOG_CHUNK_BYTES:
                    self.lock.wait(LOG_FLUSH_SECONDS)
                closed = self.closed
            self._send(self._take())
            if closed:
                return

    def _send(self, text: str) -> None:
        while text:
            piece, text = text[: LOG_CHUNK_BYTES * 4], text[LOG_CHUNK_BYTES * 4 :]
            try:
                self.api.log(piece)
            except Stop:
                return
            except AnimusAPIError as e:
                print(f"animus-runner: could not ship output: {e}", file=sys.stderr)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify()
        self.join(timeout=60)


class Heartbeat(threading.Thread):
    def __init__(self, api: RunnerAPI, interval: float, on_stop):
        super().__init__(name="animus-heartbeat", daemon=True)
        self.api = api
        self.interval = interval
        self.on_stop = on_stop
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                self.api.report("heartbeat")
            except Stop:
                self.on_stop()
                return
            except AnimusAPIError as e:
                print(f"animus-runner: heartbeat failed: {e}", file=sys.stderr)


# --- preparing the attempt -------------------------------------------------------------


def _git(args: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    }
    proc = subprocess.run(  # noqa: S603
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise SetupFailed(f"git {args[0]} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout.strip()


def checkout(repo: str, sha: str, dest: Path, out: LogShipper) -> None:
    """Exactly `sha` of `repo` in `dest`, and nothing else."""
    out.write(f"[animus] fetching {repo} at {sha}\n")
    dest.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q", str(dest)])
    _git(["fetch", "-q", "--depth=1", "--no-tags", "--", repo, sha], cwd=dest)
    _git(["checkout", "-q", "--detach", "FETCH_HEAD"], cwd=dest)
    head = _git(["rev-parse", "HEAD"], cwd=dest)
    if head != sha:
        raise SetupFailed(f"checked out {head}, not the requested commit {sha}")


def _read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    root.chmod(root.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def materialise(
    client: Client, project: str, inputs: list[dict[str, Any]], root: Path, out: LogShipper
) -> dict[str, Path]:
    from .. import datasets

    paths: dict[str, Path] = {}
    for i in inputs:
        target = root / i["name"]
        out.write(f"[animus] downloading dataset {i['name']}:{i['version']} ({i['digest']})\n")
        try:
            v = datasets.get(i["name"], i["version"], project=project, client=client, record=False)
            if v.digest != i["digest"]:
                raise SetupFailed(f"dataset {i['name']}:{i['version']} has digest {v.digest}, expected {i['digest']}")
            v.download(target, progress=False)
        except (datasets.DatasetError, AnimusAPIError) as e:
            raise SetupFailed(f"dataset {i['name']}:{i['version']}: {e}") from None
        _read_only(target)
        paths[i["name"]] = target
    return paths


def _platform_site() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def has_requirements(lock: str) -> bool:
    """Whether a lock file names anything to install (one of only comments pins "nothing")."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in lock.splitlines())


def ensure_venv(cache: Path, lock: str, lock_digest: str | None, out: LogShipper) -> Path:
    """A virtualenv for this lock file, built once per digest and reused.

    The platform's own packages (the animus SDK among them) stay importable after the
    locked ones (a .pth line appends them), so the run's code can log into its run.
    """
    key = (lock_digest or "sha256:" + hashlib.sha256(lock.encode()).hexdigest()).removeprefix("sha256:")
    venvs = cache / "venvs"
    target = venvs / key
    if (target / ".animus-ready").exists():
        out.write(f"[animus] reusing the environment for lock {key[:12]}\n")
        return target
    venvs.mkdir(parents=True, exist_ok=True)
    tmp = venvs / f".tmp-{uuid.uuid4().hex}"
    out.write(f"[animus] building the environment for lock {key[:12]}\n")
    try:
        args = [sys.executable, "-m", "venv", str(tmp)]
        if not has_requirements(lock):
            args.insert(3, "--without-pip")
        proc = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise SetupFailed(f"python -m venv failed: {proc.stderr.strip()[-500:]}")
        python = tmp / "bin" / "python"
        site = subprocess.run(  # noqa: S603
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in _platform_site())
        Path(site, "zz_animus_platform.pth").write_text(lines)
        if has_requirements(lock):
            lock_path = tmp / "animus-lock.txt"
            lock_path.write_text(lock)
            cmd = [
                str(python),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "-r",
                str(lock_path),
            ]
            if "--hash=" in lock:
                cmd.append("--require-hashes")
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)  # noqa: S603
            out.write(proc.stdout[-4000:])
            if proc.returncode != 0:
                raise SetupFailed(f"installing the lock file failed: {proc.stderr.strip()[-1000:]}")
        (tmp / ".animus-ready").write_text(key + "\n")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / ".animus-ready").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another runner built it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --- running ------------------------------------------------------------------------------


def command_environment(venv: Path, inputs: dict[str, Path], mlflow_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "TMPDIR", "LANG", "LC_ALL")}
    for key in ("ANIMUS_API_URL", "ANIMUS_TOKEN", "ANIMUS_PROJECT", "ANIMUS_RUN_ID", "ANIMUS_RUN_ATTEMPT"):
        env[key] = os.environ[key]
    env["PATH"] = f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"
    env["ANIMUS_INPUTS_DIR"] = str(Path("inputs").resolve())
    for name, path in inputs.items():
        env["ANIMUS_INPUT_" + "".join(c if c.isalnum() else "_" for c in name).upper()] = str(path.resolve())
    env["MLFLOW_TRACKING_URI"] = mlflow_uri
    env["MLFLOW_TRACKING_TOKEN"] = os.environ["ANIMUS_TOKEN"]
    env["MLFLOW_RUN_ID"] = os.environ["ANIMUS_RUN_ID"]
    return env


def _memory_limit():
    raw = os.environ.get("ANIMUS_MEMORY_LIMIT_MB")
    if not raw:
        return None
    limit = int(raw) * 1024 * 1024

    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


REQUIRED_ENV = ("ANIMUS_API_URL", "ANIMUS_TOKEN", "ANIMUS_PROJECT", "ANIMUS_RUN_ID", "ANIMUS_RUN_ATTEMPT")


def read_token_file() -> None:
    """In a Kubernetes Job the run token is a file of a projected volume (ANIMUS_TOKEN_FILE), not a variable."""
    path = os.environ.get("ANIMUS_TOKEN_FILE")
    if path and not os.environ.get("ANIMUS_TOKEN"):
        try:
            os.environ["ANIMUS_TOKEN"] = Path(path).read_text().strip()
        except OSError as e:
            print(f"animus-runner: cannot read the run token from {path}: {e.strerror}", file=sys.stderr)


def main() -> int:
    read_token_file()
    missing = [k for k in REQUIRED_ENV if not os.environ.get(k)]
    if missing:
        print(
            "animus-runner executes one attempt of a batch run and is started by the run queue's executor, "
            f"not by hand; missing: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    project = os.environ["ANIMUS_PROJECT"]
    run_id = os.environ["ANIMUS_RUN_ID"]
    attempt = int(os.environ["ANIMUS_RUN_ATTEMPT"])
    api_url = os.environ["ANIMUS_API_URL"]
    client = Client(url=api_url, token=os.environ["ANIMUS_TOKEN"])
    api = RunnerAPI(client, project, run_id, attempt)
    workdir = Path.cwd()
    try:
        job = api.job()
        api.report("running")
    except Stop as e:
        print(f"animus-runner: attempt {attempt} of run {run_id} is over: {e}", file=sys.stderr)
        return 0
    out = LogShipper(api, echo=sys.stdout)
    out.start()
    child: list[subprocess.Popen] = []

    def stop_child() -> None:
        for proc in child:
            if proc.poll() is None:
                proc.kill()

    beat = Heartbeat(api, float(os.environ.get("ANIMUS_HEARTBEAT_INTERVAL", "10")), stop_child)
    beat.start()
    try:
        try:
            src = workdir / "src"
            checkout(job["code"]["repo_url"], job["code"]["commit_sha"], src, out)
            inputs = materialise(client, project, job.get("inputs") or [], workdir / "inputs", out)
            env_version = job.get("environment") or {}
            venv = ensure_venv(
                Path(os.environ.get("ANIMUS_RUNNER_CACHE", workdir / "cache")),
                env_version.get("lock_content") or "",
                env_version.get("lock_digest"),
                out,
            )
        except (SetupFailed, subprocess.SubprocessError, OSError) as e:
            out.write(f"[animus] set-up failed: {e}\n")
            out.close()
            api.report("setup_failed", message=str(e))
            return 3
        mlflow_uri = api_url.rsplit("/api/v1", 1)[0] + "/mlflow"
        out.write(f"[animus] running {' '.join(job['command'])}\n")
        try:
            proc = subprocess.Popen(  # noqa: S603 (the user's command, in the data plane)
                job["command"],
                cwd=src,
                env=command_environment(venv, inputs, mlflow_uri),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=_memory_limit(),  # noqa: PLW1509
            )
        except OSError as e:
            out.write(f"[animus] could not start the command: {e}\n")
            out.close()
            api.report("exited", exit_code=127, message=f"could not start the command: {e}")
            return 0
        child.append(proc)
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            out.write(raw.decode("utf-8", "replace"))
        code = proc.wait()
        out.write(f"[animus] the command exited with code {code}\n")
        out.close()
        if not api.stopped.is_set():
            api.report("exited", exit_code=code, message="" if code == 0 else f"exit code {code}")
        return 0
    except Stop as e:
        stop_child()
        print(f"animus-runner: attempt {attempt} of run {run_id} is over: {e}", file=sys.stderr)
        return 0
    finally:
        beat.done.set()


if __name__ == "__main__":
    raise SystemExit(main())
