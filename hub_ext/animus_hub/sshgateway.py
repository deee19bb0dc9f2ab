"""animus-ssh: the SSH gateway into project workspaces (a JupyterHub-managed service).

``ssh -p <port> <user>+<project>@<host>`` logs in with a public key the person
registered through animus-api (``/users/me/ssh-keys``). For each offered key the
gateway asks animus-api (``/ssh/authorize``, with its own service token) whether the
key is the user's and the user may open the project's workspace; animus-api audits
refusals. After the key's signature checked out, the gateway:

- starts the user's named server for the project through the hub's REST API if it
  is not running (the server named after the project is that project's workspace),
- runs the shell, or the remote command, *in that workspace*: in the embedded profile
  a workspace is a local process, so the command is a local subprocess with the
  workspace process's environment and working directory (``LocalWorkspaceLocator``);
  a cluster would exec into the workspace's pod instead (``WorkspaceLocator`` is the
  seam),
- allows direct-tcpip port forwarding to the workspace's own ports (localhost only),
  which is what VS Code Remote-SSH and JetBrains Gateway tunnel through,
- records activity on the hub (``users:activity``) while the connection is open, so
  the idle culler counts an SSH session as use,
- reports the login and the end of each connection to animus-api for the audit trail.

Password and keyboard-interactive logins are not offered. Configuration comes from
the environment (``ANIMUS_SSH_*``; the hub supplies ``JUPYTERHUB_API_URL`` and
``JUPYTERHUB_API_TOKEN``).
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import fcntl
import logging
import os
import pty
import signal
import struct
import sys
import termios
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncssh
import psutil

from .keyfiles import read_or_create

log = logging.getLogger("animus.ssh")

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})
# variables of the workspace process that make no sense in a login shell
DROPPED_ENV = ("JUPYTERHUB_SERVICE_URL", "JPY_SESSION_NAME")


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 8022
    host_key_file: str = "ssh_host_ed25519_key"
    api_url: str = "http://127.0.0.1:8090/services/animus/api/v1"
    hub_api_url: str = "http://127.0.0.1:8081/hub/api"
    token: str = ""
    activity_interval: float = 60.0
    spawn_timeout: float = 120.0
    shell: str = "/bin/bash"

    @classmethod
    def from_environ(cls, env: dict[str, str] | os._Environ) -> GatewaySettings:
        return cls(
            host=env.get("ANIMUS_SSH_HOST", "127.0.0.1"),
            port=int(env.get("ANIMUS_SSH_PORT", "8022")),
            host_key_file=env.get("ANIMUS_SSH_HOST_KEY_FILE", "ssh_host_ed25519_key"),
            api_url=env.get("ANIMUS_SSH_API_URL", "http://127.0.0.1:8090/services/animus/api/v1"),
            hub_api_url=env.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            token=env.get("JUPYTERHUB_API_TOKEN", ""),
            activity_interval=float(env.get("ANIMUS_SSH_ACTIVITY_INTERVAL", "60")),
            spawn_timeout=float(env.get("ANIMUS_SSH_SPAWN_TIMEOUT", "120")),
            shell=env.get("ANIMUS_SSH_SHELL") or ("/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"),
        )


class Refused(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def split_login(username: str) -> tuple[str, str]:
    """'alice+churn' → ('alice', 'churn'); the project is after the last '+'."""
    user, sep, project = username.rpartition("+")
    if not sep or not user or not project:
        raise Refused("malformed_login", "Log in as <user>+<project>, e.g. ssh -p PORT alice+churn@HOST")
    return user, project


def load_host_key(path: str) -> asyncssh.SSHKey:
    """The gateway's host key, made once (0600) on first start."""
    data = read_or_create(Path(path), lambda: asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    return asyncssh.import_private_key(data)


# --- the control plane: animus-api and the hub ---------------------------------------------


class ControlPlane:
    """animus-api and the hub's REST API, called with the gateway's service token."""

    def __init__(self, settings: GatewaySettings):
        self.s = settings
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers={"Authorization": f"token {self.s.token}"}, timeout=aiohttp.ClientTimeout(total=30)
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def api(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.s.api_url + path, json=body) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                raise RuntimeError(
                    f"animus-api answered {r.status}: {data.get('message') if isinstance(data, dict) else data}"
                )
            return data

    async def hub(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.s.hub_api_url + path, **kwargs) as r:
            try:
                data = await r.json(content_type=None)
            except ValueError:
                data = None
            return r.status, data

    async def hub_user(self, user: str) -> dict[str, Any] | None:
        status, data = await self.hub("GET", f"/users/{quote(user, safe='')}")
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"the hub answered {status} for user {user!r}")
        return data

    async def report(self, event: str, **fields: Any) -> None:
        try:
            await self.api("/ssh/events", {"event": event, **fields})
        except Exception:
            log.exception("Could not report the SSH event %s for %s", event, fields.get("user"))

    async def ensure_server(self, user: str, server: str) -> dict[str, Any]:
        """The user's named server `server`, started if needed; its model (with state) when ready."""
        path = f"/users/{quote(user, safe='')}"
        deadline = time.monotonic() + self.s.spawn_timeout
        started = False
        while time.monotonic() < deadline:
            model = await self.hub_user(user)
            if model is None:
                raise Refused("user_not_found", f"JupyterHub has no user {user!r}")
            entry = (model.get("servers") or {}).get(server)
            if entry and entry.get("ready"):
                return entry
            if not entry and not started:
                status, data = await self.hub("POST", f"{path}/servers/{quote(server, safe='')}", json={})
                if status not in (201, 202, 400):
                    message = data.get("message") if isinstance(data, dict) else ""
                    raise Refused("workspace_start_failed", f"Could not start the workspace ({status}): {message}")
                if status == 400:
                    message = data.get("message") if isinstance(data, dict) else ""
                    if "already" not in (message or ""):
                        raise Refused("workspace_start_failed", f"Could not start the workspace: {message}")
                started = True
            elif not entry and started:
                raise Refused("workspace_start_failed", "The workspace stopped while starting; see the hub's log")
            await asyncio.sleep(0.5)
        raise Refused("workspace_start_timeout", f"The workspace did not start within {self.s.spawn_timeout:.0f} s")

    async def record_activity(self, user: str, server: str) -> None:
        now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        status, data = await self.hub(
            "POST",
            f"/users/{quote(user, safe='')}/activity",
            json={"last_activity": now, "servers": {server: {"last_activity": now}}},
        )
        if status >= 400:
            log.warning("The hub refused activity for %s/%s: %s %s", user, server, status, data)


# --- where commands run -----------------------------------------------------------------------


@dataclass
class Workspace:
    """A running workspace: what a command started in it sees."""

    env: dict[str, str]
    cwd: str


class WorkspaceLocator(abc.ABC):
    """Finds the running workspace a session runs in (the seam between profiles)."""

    @abc.abstractmethod
    def locate(self, user: str, server: str, model: dict[str, Any]) -> Workspace: ...


class LocalWorkspaceLocator(WorkspaceLocator):
    """Embedded profile: the workspace is a local process (the local spawner's state holds its
    pid); commands run as local subprocesses with its environment and working directory.

    In a cluster a locator would answer with the pod instead, and the session would exec
    into it through the Kubernetes API; that is not built yet.
    """

    def locate(self, user: str, server: str, model: dict[str, Any]) -> Workspace:
        pid = (model.get("state") or {}).get("pid")
        if not pid:
            raise Refused("workspace_not_local", "This workspace is not a local process; SSH cannot reach it here")
        try:
            proc = psutil.Process(int(pid))
            env = proc.environ()
            cwd = proc.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied) as e:
            raise Refused("workspace_unreachable", f"The workspace process cannot be reached: {e}") from None
        if env.get("JUPYTERHUB_USER") != user or env.get("JUPYTERHUB_SERVER_NAME", "") != server:
            raise Refused("workspace_unreachable", "The workspace process is not this user's workspace")
        for name in DROPPED_ENV:
            env.pop(name, None)
        cwd = env.get("ANIMUS_WORKSPACE_DIR") or cwd
        return Workspace(env=env, cwd=cwd)


# --- one SSH connection -------------------------------------------------------------------------


@dataclass
class Login:
    user: str = ""
    project: str = ""
    fingerprint: str = ""
    refusal: Refused | None = None
    authenticated: bool = False
    started: float = field(default_factory=time.monotonic)
    commands: list[str] = field(default_factory=list)
    forwards: list[str] = field(default_factory=list)
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:16])


class GatewayConnection(asyncssh.SSHServer):
    def __init__(self, gateway: SSHGateway):
        self.gw = gateway
        self.login = Login()
        self.client = ""
        self.conn: asyncssh.SSHServerConnection | None = None
        self._workspace: asyncio.Task | None = None
        self._activity: asyncio.Task | None = None
        self._decisions: dict[str, dict[str, Any]] = {}

    # --- connection lifecycle

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self.client = str(peer[0])
        conn.set_extra_info(animus_login=self.login)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._activity is not None:
            self._activity.cancel()
        if self._workspace is not None and not self._workspace.done():
            self._workspace.cancel()
        login = self.login
        if login.authenticated:
            self.gw.spawn(
                self.gw.control.report(
                    "session_end",
                    user=login.user,
                    project=login.project,
                    fingerprint=login.fingerprint,
                    client=self.client,
                    session=login.session,
                    duration_seconds=round(time.monotonic() - login.started, 3),
                    commands=login.commands[-100:],
                    forwards=sorted(set(login.forwards))[:100],
                    reason="error" if exc else "closed",
                )
            )
        elif login.refusal is not None and login.refusal.reason == "malformed_login":
            # never reached animus-api with a user name: audit the refusal here
            self.gw.spawn(
                self.gw.control.report(
                    "refused",
                    user=login.user[:255],
                    client=self.client,
                    session=login.session,
                    reason=login.refusal.reason,
                    message=login.refusal.message,
                )
            )

    # --- authentication

    def begin_auth(self, username: str) -> bool:
        try:
            self.login.user, self.login.project = split_login(username)
        except Refused as e:
            self.login.user = username
            self.login.refusal = e
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        login = self.login
        if login.refusal is not None and login.refusal.reason == "malformed_login":
            return False
        line = key.export_public_key("openssh").decode().strip()
        cached = self._decisions.get(line)
        if cached is None:
            cached = await self._authorize(line)
            self._decisions[line] = cached
        if cached.get("allowed"):
            login.fingerprint = cached.get("fingerprint", "")
            return True
        login.refusal = Refused(cached.get("reason", "refused"), cached.get("message", "refused"))
        return False

    async def _authorize(self, public_key: str) -> dict[str, Any]:
        login = self.login
        try:
            model = await self.gw.control.hub_user(login.user)
        except Exception as e:  # the hub is down: refuse, but say why in our log
            log.error("Cannot look up %s on the hub: %s", login.user, e)
            return {"allowed": False, "reason": "hub_unavailable", "message": "The hub cannot be reached"}
        body = {
            "user": login.user,
            "groups": (model or {}).get("groups") or [],
            "admin": bool((model or {}).get("admin")),
            "project": login.project,
            "public_key": public_key,
            "client": self.client,
        }
        try:
            decision = await self.gw.control.api("/ssh/authorize", body)
        except Exception as e:
            log.error("animus-api could not decide on a login of %s: %s", login.user, e)
            return {"allowed": False, "reason": "api_unavailable", "message": "animus-api cannot be reached"}
        if decision.get("allowed") and model is None:
            return {"allowed": False, "reason": "user_not_found", "message": "Log in to the hub once first"}
        return decision

    def auth_completed(self) -> None:
        login = self.login
        login.authenticated = True
        login.refusal = None
        log.info("SSH login %s+%s from %s (%s)", login.user, login.project, self.client, login.fingerprint)
        self.gw.spawn(
            self.gw.control.report(
                "login",
                user=login.user,
                project=login.project,
                fingerprint=login.fingerprint,
                client=self.client,
                session=login.session,
            )
        )
        self._workspace = asyncio.ensure_future(self._open_workspace())
        self._activity = asyncio.ensure_future(self._keep_active())

    async def _open_workspace(self) -> Workspace:
        model = await self.gw.control.ensure_server(self.login.user, self.login.project)
        return self.gw.locator.locate(self.login.user, self.login.project, model)

    async def workspace(self) -> Workspace:
        assert self._workspace is not None
        return await asyncio.shield(self._workspace)

    async def _keep_active(self) -> None:
        """While the connection is open, the workspace is in use (for the idle culler)."""
        try:
            await self._workspace
        except BaseException:  # noqa: S110 (a session reports a failed start itself)
            return
        while True:
            try:
                await self.gw.control.record_activity(self.login.user, self.login.project)
            except Exception as e:
                log.warning("Could not record activity for %s: %s", self.login.user, e)
            await asyncio.sleep(self.gw.settings.activity_interval)

    # --- port forwarding: the workspace's own ports only

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        if not self.login.authenticated or dest_host.lower() not in LOCAL_HOSTS:
            return False
        self.login.forwards.append(f"{dest_host}:{dest_port}")
        return True

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # remote (reverse) forwarding would open ports on the gateway's host


# --- running a session in the workspace -----------------------------------------------------------


async def run_session(process: asyncssh.SSHServerProcess) -> None:
    conn = process.channel.get_connection()
    login: Login = conn.get_extra_info("animus_login")
    owner: GatewayConnection = conn.get_owner()
    try:
        ws = await owner.workspace()
    except Refused as e:
        process.stderr.write(f"animus: {e.message}\r\n".encode())
        await owner.gw.control.report(
            "refused",
            user=login.user,
            project=login.project,
            client=owner.client,
            session=login.session,
            reason=e.reason,
            message=e.message,
        )
        process.exit(1)
        return
    except Exception as e:
        log.exception("Could not open the workspace of %s+%s", login.user, login.project)
        process.stderr.write(f"animus: the workspace could not be opened: {e}\r\n".encode())
        process.exit(1)
        return
    if process.subsystem:
        process.stderr.write(f"animus: subsystem {process.subsystem!r} is not supported\r\n".encode())
        process.exit(1)
        return
    command = process.command
    # the audit trail gets the program only: a command line may carry a secret
    login.commands.append(command.split(None, 1)[0][:64] if command and command.strip() else "(shell)")
    shell = ws.env.get("SHELL") or owner.gw.settings.shell
    if not os.path.exists(shell):
        shell = owner.gw.settings.shell
    argv = [shell, "-c", command] if command else [shell, "-l"] if not process.get_terminal_type() else [shell, "-i"]
    env = {
        **ws.env,
        "ANIMUS_SSH": "1",
        "SSH_CONNECTION": f"{owner.client} 0 {owner.gw.settings.host} {owner.gw.settings.port}",
        "USER": login.user,
        "LOGNAME": login.user,
    }
    for name, value in (process.env or {}).items():
        # what an ssh client usually sends (SendEnv): locale only
        if isinstance(name, str) and (name == "LANG" or name.startswith("LC_")):
            env[name] = str(value)
    if process.get_terminal_type():
        env["TERM"] = process.get_terminal_type()
        status = await _run_pty(process, argv, env, ws.cwd)
    else:
        status = await _run_pipes(process, argv, env, ws.cwd)
    process.exit(status)


async def _run_pipes(process: asyncssh.SSHServerProcess, argv: list[str], env: dict[str, str], cwd: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )

    async def pump_in() -> None:
        try:
            while True:
                try:
                    data = await process.stdin.read(65536)
                except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived, asyncssh.SignalReceived):
                    continue
                if not data:
                    break
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
            pass
        finally:
            try:
                proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass

    async def pump_out(reader: asyncio.StreamReader, writer: Any) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            writer.write(data)
            await writer.drain()

    feeder = asyncio.ensure_future(pump_in())
    try:
        await asyncio.gather(pump_out(proc.stdout, process.stdout), pump_out(proc.stderr, process.stderr))
        return await proc.wait()
    except (asyncssh.Error, ConnectionError):
        _kill_group(proc.pid)
        return 255
    finally:
        feeder.cancel()


def _set_winsize(fd: int, size: tuple[int, int, int, int]) -> None:
    cols, rows, width, height = size
    if cols and rows:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, width, height))


def _make_controlling_tty() -> None:  # runs in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _run_pty(process: asyncssh.SSHServerProcess, argv: list[str], env: dict[str, str], cwd: str) -> int:
    master, slave = pty.openpty()
    _set_winsize(slave, process.get_terminal_size())
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_make_controlling_tty,  # noqa: PLW1509 (only an ioctl, no locks)
        )
    finally:
        os.close(slave)
    loop = asyncio.get_running_loop()
    output_done = loop.create_future()
    os.set_blocking(master, False)

    def on_output() -> None:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every process holding the terminal is gone
            data = b""
        if not data:
            loop.remove_reader(master)
            if not output_done.done():
                output_done.set_result(None)
            return
        process.stdout.write(data)

    loop.add_reader(master, on_output)

    async def pump_in() -> None:
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as e:
                _set_winsize(master, (e.width, e.height, e.pixwidth, e.pixheight))
                continue
            except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                continue
            if not data:
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(master, view)
                    view = view[n:]
                except BlockingIOError:
                    await asyncio.sleep(0.01)

    feeder = asyncio.ensure_future(pump_in())
    try:
        status = await proc.wait()
        try:
            await asyncio.wait_for(output_done, 2)
        except TimeoutError:
            pass
        return status
    except (asyncssh.Error, ConnectionError):
        _kill_group(proc.pid)
        return 255
    finally:
        feeder.cancel()
        loop.remove_reader(master)
        os.close(master)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGHUP)
    except (ProcessLookupError, PermissionError):
        pass


# --- the service --------------------------------------------------------------------------


class SSHGateway:
    def __init__(self, settings: GatewaySettings, locator: WorkspaceLocator | None = None):
        self.settings = settings
        self.control = ControlPlane(settings)
        self.locator = locator or LocalWorkspaceLocator()
        self._tasks: set[asyncio.Task] = set()
        self.server: asyncssh.SSHAcceptor | None = None

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self.server = await asyncssh.create_server(
            lambda: GatewayConnection(self),
            self.settings.host,
            self.settings.port,
            server_host_keys=[load_host_key(self.settings.host_key_file)],
            process_factory=run_session,
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            server_version="AnimusSSH",
        )
        log.info("animus-ssh listening on %s:%s", self.settings.host, self.settings.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.control.close()


async def serve(settings: GatewaySettings) -> None:
    gateway = SSHGateway(settings)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # the hub may start us under nohup (SIGINT ignored): handle both signals ourselves
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s animus-ssh] %(message)s", stream=sys.stderr
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    asyncio.run(serve(GatewaySettings.from_environ(os.environ)))


if __name__ == "__main__":
    main()
