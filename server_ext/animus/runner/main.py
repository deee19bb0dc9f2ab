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
5. runs the command in ``src/`` with that virtualenv first on PATH (and the run's seed
   as ANIMUS_SEED and PYTHONHASHSEED), streaming its output (stdout and stderr) to the
   API in chunks;
6. after a zero exit, uploads the declared outputs as artifacts ``outputs/<name>/…``
   (content-addressed, through the tracking artifact protocol);
7. reports the exit code. A failure of steps 2–4 (or of the upload) is reported as
   "setup_failed", a declared output that is not there as "outputs_missing".

Upstream outputs of a pipeline step are inputs like datasets: downloaded from
short-lived URLs into ``inputs/<name>/``, checked against their digests, read-only.
Reports are retried while the API does not answer (ANIMUS_REPORT_PATIENCE seconds),
so a restart of the control plane does not lose them.

If the API answers that the attempt is no longer current (cancelled, timed out,
superseded by a retry), the runner kills the command and exits.

Secrets the run declared are resolved before step 2: with Vault the executor gave
the runner a response-wrapped, short-lived token (ANIMUS_VAULT_*) which it unwraps
to read exactly those paths; otherwise it fetches the values once from the API
with its run token. They reach the command as environment variables (and git as
credentials, through an askpass helper), and every form of them is replaced by
``[redacted:NAME]`` in the output before it is echoed or shipped.
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
from ..redaction import Redactor

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
        self.patience = float(os.environ.get("ANIMUS_REPORT_PATIENCE", "900"))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call, retried while the control plane does not answer (or answers 5xx).

        The control plane may be restarted while the run goes on (DESIGN.md §2: runs outlive
        it): the runner keeps trying for ANIMUS_REPORT_PATIENCE seconds (default 900), so a
        finished command's report reaches the restarted API instead of being lost.
        """
        deadline = time.monotonic() + self.patience
        delay = 0.5
        while True:
            try:
                return self.client.request(method, self.base + path, json_body=body)
            except AnimusAPIError as e:
                if e.reason in STOP_CODES or e.status in (401, 403, 404):
                    self.stopped.set()
                    raise Stop(e.message) from None
                if e.status and e.status < 500:
                    raise
                if time.monotonic() + delay > deadline:
                    raise AnimusAPIError(0, "api_unavailable", f"{method} {path} kept failing: {e.message}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def job(self) -> dict[str, Any]:
        return self._call("GET", "/job")

    def report(self, state: str, exit_code: int | None = None, message: str = "") -> Any:
        body = {"attempt": self.attempt, "state": state, "message": message[:4000]}
        if exit_code is not None:
            body["exit_code"] = exit_code
        return self._post("/report", body)

    def log(self, text: str) -> None:
        self._post("/logs", {"attempt": self.attempt, "text": text})

    def secrets(self) -> dict[str, Any]:
        return self._post("/secrets", {"attempt": self.attempt})


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
        self.redact: Redactor | None = None

    def write(self, text: str) -> None:
        # lines arrive whole (readline), so a value is never split across two writes
        if self.redact:
            text = self.redact(text)
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


def _git(
    args: list[str], cwd: Path | None = None, timeout: float = 600, extra_env: dict[str, str] | None = None
) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
        **(extra_env or {}),
    }
    proc = subprocess.run(  # noqa: S603
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise SetupFailed(f"git {args[0]} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout.strip()


ASKPASS = """#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "$ANIMUS_GIT_USERNAME" ;;
  *) printf '%s\\n' "$ANIMUS_GIT_PASSWORD" ;;
esac
"""


def git_credential_env(value: str, workdir: Path) -> dict[str, str]:
    """Environment for git that answers its prompts with the credential: 'user:password', or a bare token."""
    user, sep, password = value.partition(":")
    if not sep:
        user, password = "x-access-token", value
    helper = workdir / ".animus-askpass"
    helper.write_text(ASKPASS)
    helper.chmod(0o700)
    return {"GIT_ASKPASS": str(helper), "ANIMUS_GIT_USERNAME": user, "ANIMUS_GIT_PASSWORD": password}


def checkout(repo: str, sha: str, dest: Path, out: LogShipper, credentials: dict[str, str] | None = None) -> None:
    """Exactly `sha` of `repo` in `dest`, and nothing else."""
    out.write(f"[animus] fetching {repo} at {sha}\n")
    dest.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q", str(dest)])
    _git(["fetch", "-q", "--depth=1", "--no-tags", "--", repo, sha], cwd=dest, extra_env=credentials)
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
        target = root / (i.get("as") or i["name"])
        if i.get("kind") == "artifact":
            download_output(i, target, out)
            _read_only(target)
            paths[i.get("as") or i["name"]] = target
            continue
        out.write(f"[animus] downloading dataset {i['name']}:{i['version']} ({i['digest']})\n")
        try:
            v = datasets.get(i["name"], i["version"], project=project, client=client, record=False)
            if v.digest != i["digest"]:
                raise SetupFailed(f"dataset {i['name']}:{i['version']} has digest {v.digest}, expected {i['digest']}")
            v.download(target, progress=False)
        except (datasets.DatasetError, AnimusAPIError) as e:
            raise SetupFailed(f"dataset {i['name']}:{i['version']}: {e}") from None
        _read_only(target)
        paths[i.get("as") or i["name"]] = target
    return paths


def _safe_relative(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def download_output(i: dict[str, Any], target: Path, out: LogShipper) -> None:
    """An upstream step's output: each file from its short-lived URL, checked against its digest."""
    import requests

    out.write(f"[animus] downloading output {i['step']}.{i['output']} of run {i['run_id']} ({i['digest']})\n")
    target.mkdir(parents=True, exist_ok=True)
    for f in i.get("files") or []:
        if not _safe_relative(f["path"]):
            raise SetupFailed(f"output file {f['path']!r} is not a relative path")
        dest = target / f["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        try:
            with requests.get(f["url"], stream=True, timeout=600) as r:
                if r.status_code != 200:
                    raise SetupFailed(f"downloading {f['artifact']} of run {i['run_id']}: HTTP {r.status_code}")
                with dest.open("wb") as fh:
                    for chunk in r.iter_content(1 << 20):
                        h.update(chunk)
                        fh.write(chunk)
        except requests.RequestException as e:
            raise SetupFailed(f"downloading {f['artifact']} of run {i['run_id']}: {e}") from None
        if "sha256:" + h.hexdigest() != f["digest"]:
            raise SetupFailed(f"{f['artifact']} of run {i['run_id']} does not match its digest {f['digest']}")


class OutputsMissing(Exception):
    """The command succeeded but a declared output is not there."""


def output_files(outputs: dict[str, str], src: Path) -> list[tuple[str, Path]]:
    """(artifact path, local file) of every declared output: outputs/<name>/<file or relative path>."""
    files: list[tuple[str, Path]] = []
    missing = []
    root = src.resolve()
    for name, rel in sorted(outputs.items()):
        path = (src / rel).resolve()
        if root not in path.parents and path != root:
            missing.append(f"{name} ({rel}: outside the code directory)")
        elif path.is_file():
            files.append((f"outputs/{name}/{path.name}", path))
        elif path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if p.is_file()]
            if not found:
                missing.append(f"{name} ({rel}: an empty directory)")
            files += [(f"outputs/{name}/{p.relative_to(path).as_posix()}", p) for p in found]
        else:
            missing.append(f"{name} ({rel})")
    if missing:
        raise OutputsMissing("declared outputs are missing: " + ", ".join(missing))
    return files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def upload_outputs(api: RunnerAPI, files: list[tuple[str, Path]], out: LogShipper) -> None:
    """Content-addressed, through the tracking artifact protocol: plan, PUT the missing blobs, commit."""
    import requests

    manifest = [{"path": name, "sha256": _sha256(p), "size": p.stat().st_size} for name, p in files]
    by_digest = {m["sha256"]: p for m, (_, p) in zip(manifest, files, strict=True)}
    for i in range(0, len(manifest), 1000):
        part = manifest[i : i + 1000]
        plan = api._post("/artifacts/upload", {"files": part})
        for up in plan["uploads"]:
            with by_digest[up["sha256"]].open("rb") as f:
                r = requests.put(up["url"], data=f, headers=up.get("headers") or {}, timeout=600)
            if r.status_code >= 300:
                raise SetupFailed(f"uploading {by_digest[up['sha256']].name} failed: HTTP {r.status_code}")
        api._post("/artifacts/commit", {"files": part})
    for m in manifest:
        out.write(f"[animus] output {m['path']} sha256:{m['sha256']} ({m['size']} bytes)\n")


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


# --- secrets ------------------------------------------------------------------------------

VAULT_ENV = (
    "ANIMUS_VAULT_ADDR",
    "ANIMUS_VAULT_TOKEN",
    "ANIMUS_VAULT_WRAPPED",
    "ANIMUS_VAULT_MOUNT",
    "ANIMUS_VAULT_PATHS",
    "ANIMUS_VAULT_NAMESPACE",
    "ANIMUS_VAULT_VERIFY",
)


def read_from_vault(environ: dict[str, str]) -> dict[str, str]:
    """Unwrap the attempt's token and read exactly its paths from Vault (KV v2, key 'value')."""
    import json

    import hvac
    import hvac.exceptions as hx
    import requests

    verify_raw = environ.get("ANIMUS_VAULT_VERIFY", "true")
    verify: bool | str = False if verify_raw == "false" else True if verify_raw == "true" else verify_raw
    client = hvac.Client(
        url=environ["ANIMUS_VAULT_ADDR"],
        namespace=environ.get("ANIMUS_VAULT_NAMESPACE") or None,
        verify=verify,
        timeout=15,
    )
    paths: dict[str, str] = json.loads(environ.get("ANIMUS_VAULT_PATHS") or "{}")
    try:
        if environ.get("ANIMUS_VAULT_WRAPPED") == "1":
            client.token = environ["ANIMUS_VAULT_TOKEN"]
            unwrapped = client.sys.unwrap()
            client.token = unwrapped["auth"]["client_token"]
        else:
            client.token = environ["ANIMUS_VAULT_TOKEN"]
        values = {}
        for name, path in paths.items():
            data = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=environ.get("ANIMUS_VAULT_MOUNT", "secret"), raise_on_deleted_version=True
            )
            values[name] = data["data"]["data"]["value"]
        return values
    except hx.InvalidPath:
        raise SetupFailed("a secret of this run no longer exists in Vault") from None
    except hx.Forbidden:
        raise SetupFailed("Vault refused this attempt's token (expired, revoked or already unwrapped)") from None
    except (requests.exceptions.RequestException, hx.VaultError, KeyError) as e:
        raise SetupFailed(f"cannot read this run's secrets from Vault: {type(e).__name__}") from None


def resolve_secrets(api: RunnerAPI, job: dict[str, Any]) -> dict[str, str]:
    """The values of the run's secrets (by name); {} when it declared none."""
    names = [s["name"] for s in job.get("secrets") or []]
    if job.get("git_credentials") and job["git_credentials"] not in names:
        names.append(job["git_credentials"])
    if not names:
        return {}
    vault = {k: os.environ.pop(k) for k in VAULT_ENV if k in os.environ}
    if vault.get("ANIMUS_VAULT_TOKEN"):
        values = read_from_vault(vault)
    else:
        try:
            values = api.secrets()["secrets"]
        except AnimusAPIError as e:
            raise SetupFailed(f"cannot fetch this run's secrets: {e.message}") from None
    missing = sorted(set(names) - set(values))
    if missing:
        raise SetupFailed(f"secrets not received: {', '.join(missing)}")
    return values


# --- running ------------------------------------------------------------------------------


def command_environment(
    venv: Path,
    inputs: dict[str, Path],
    mlflow_uri: str,
    seed: int | None = None,
    secret_env: dict[str, str] | None = None,
) -> dict[str, str]:
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
    # the SDK in the command keeps retrying while the control plane restarts, as the runner does
    env["ANIMUS_API_RETRY_SECONDS"] = os.environ.get("ANIMUS_REPORT_PATIENCE", "900")
    if seed is not None:
        env["ANIMUS_SEED"] = str(seed)
        env["PYTHONHASHSEED"] = str(seed)
    env.update(secret_env or {})
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
            values = resolve_secrets(api, job)
            if values:
                out.redact = Redactor(values)
                out.write(f"[animus] received secrets {', '.join(sorted(values))}\n")
            secret_env = {s["env"]: values[s["name"]] for s in job.get("secrets") or []}
            git_env = (
                git_credential_env(values[job["git_credentials"]], workdir) if job.get("git_credentials") else None
            )
            src = workdir / "src"
            checkout(job["code"]["repo_url"], job["code"]["commit_sha"], src, out, git_env)
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
                env=command_environment(venv, inputs, mlflow_uri, job.get("seed"), secret_env),
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
        if code == 0 and job.get("outputs") and not api.stopped.is_set():
            try:
                upload_outputs(api, output_files(job["outputs"], src), out)
            except OutputsMissing as e:
                out.write(f"[animus] {e}\n")
                out.close()
                api.report("outputs_missing", exit_code=0, message=str(e))
                return 0
            except (SetupFailed, OSError, AnimusAPIError) as e:
                out.write(f"[animus] uploading the outputs failed: {e}\n")
                out.close()
                api.report("setup_failed", message=f"uploading the outputs failed: {e}")
                return 3
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
