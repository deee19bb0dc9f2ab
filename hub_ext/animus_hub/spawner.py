"""Workspace templates for any spawner, and the local-process spawner of the embedded profile.

``WorkspaceTemplates`` is a mixin with the configuration (``workspace_templates``,
``project_templates``; the shape is in ``animus_hub.workspaces``), the spawn form
(a choice when more than one template is allowed) and the check at spawn time
(``apply_user_options``, before anything starts: 403 naming the allowed templates).
The chosen template is ``user_options["profile"]``, KubeSpawner's key.
``AnimusLocalSpawner`` (here) and ``AnimusKubeSpawner`` (``k8s/spawner.py``) both use it.

The local spawner honours a template as far as one machine can:

- ``cpu``: the workspace's process tree is pinned to ``ceil(cpu)`` CPUs (at most the
  machine's); ``CPU_LIMIT``/``CPU_GUARANTEE`` say how many CPUs it may use;
- ``memory``: ``MEM_LIMIT``/``MEM_GUARANTEE`` in bytes, enforced by a memory cgroup when
  the hub may make one (see ``locallimits``), otherwise exported only;
- ``environment``: added to the workspace's environment, with
  ``ANIMUS_WORKSPACE_TEMPLATE`` naming the template;
- ``gpu_count``: started only when the machine shows that many NVIDIA GPUs
  (``CUDA_VISIBLE_DEVICES`` names them; they are not reserved), else 400;
- ``image``, ``gpu_type``, ``tolerations``, ``node_selector``: Kubernetes only, ignored.

Its ``start()`` returns once the workspace answers HTTP (``ready_check_interval``), so
the hub marks it ready without its own backed-off wait.
"""

from __future__ import annotations

import asyncio
import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import psutil
from jupyterhub.httpclient import fetch
from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import fmt_ip_url, url_path_join
from tornado import web
from traitlets import Bool, Dict, Float, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from . import locallimits
from . import workspaces as ws
from .errors import AnimusError
from .workspace_access import ProjectWorkspaceAccess


class WorkspaceTemplates(LoggingConfigurable):
    """Templates for any spawner (a mixin): the configuration, the form and the choice."""

    workspace_templates = Dict(help=ws.TEMPLATES_HELP).tag(config=True)
    project_templates = Dict(help=ws.PROJECT_TEMPLATES_HELP).tag(config=True)

    @validate("workspace_templates")
    def _check_templates(self, proposal: Any) -> dict[str, Any]:
        ws.parse_templates(proposal["value"])  # fails start-up naming the template and key that are wrong
        return proposal["value"]

    @validate("project_templates")
    def _check_project_templates(self, proposal: Any) -> dict[str, Any]:
        ws.check_project_templates(proposal["value"])  # undefined names are checked at spawn time
        return proposal["value"]

    #: the template of the current (or last) start; None without templates
    template: ws.WorkspaceTemplate | None = None

    @default("options_form")
    def _template_options_form(self) -> Any:
        return lambda spawner: spawner.template_form()

    @default("options_from_form")
    def _template_options_from_form(self) -> Any:
        def options_from_form(formdata: dict[str, list[str]]) -> dict[str, Any]:
            profile = (formdata.get("profile") or [""])[0]
            return {"profile": profile} if profile else {}

        return options_from_form

    @default("apply_user_options")
    def _template_apply_user_options(self) -> Any:
        return lambda spawner, options: spawner.apply_template(options)

    def user_group_names(self) -> list[str]:
        return [g.name for g in getattr(self.user, "groups", None) or []]

    def _config_error(self, e: ValueError) -> web.HTTPError:
        self.log.error("Workspace templates are misconfigured: %s", e)
        return web.HTTPError(500, f"Workspace templates are misconfigured: {e}")

    def allowed_templates(self) -> list[ws.WorkspaceTemplate]:
        """The templates this user may start in this server's project, in configured order."""
        if not self.workspace_templates:
            return []
        try:
            templates = ws.parse_templates(self.workspace_templates)
            ws.check_project_templates(self.project_templates, templates)
            return ws.allowed_templates(self.name or "", self.user_group_names(), templates, self.project_templates)
        except ValueError as e:
            raise self._config_error(e) from None

    def choose_template(self, user_options: dict[str, Any] | None) -> ws.WorkspaceTemplate | None:
        """The template these options ask for (or the default); 403 naming the allowed ones if not allowed."""
        try:
            return ws.select_template(
                self.workspace_templates,
                self.project_templates,
                self.name or "",
                self.user_group_names(),
                (user_options or {}).get("profile"),
            )
        except AnimusError as e:
            raise web.HTTPError(e.status, e.message) from None
        except ValueError as e:
            raise self._config_error(e) from None

    def template_unavailable(self, template: ws.WorkspaceTemplate) -> str:
        """Why this spawner cannot start `template` here ('' when it can)."""
        return ""

    def template_form(self) -> str:
        """A choice of template when more than one is allowed; '' (start at once) otherwise."""
        allowed = self.allowed_templates()
        if len(allowed) < 2:
            return ""
        startable = [t for t in allowed if not self.template_unavailable(t)]
        chosen = ws.default_template(startable or allowed)
        options = []
        for t in allowed:
            label = t.display_name + (f" — {t.description}" if t.description else "")
            why_not = self.template_unavailable(t)
            attrs = " selected" if t is chosen else ""
            if why_not:
                label += f" ({why_not})"
                attrs += " disabled"
            options.append(f'<option value="{html.escape(t.name)}"{attrs}>{html.escape(label)}</option>')
        return (
            '<label for="animus-profile">Workspace template</label>'
            f'<select id="animus-profile" name="profile" class="form-control">{"".join(options)}</select>'
        )

    def apply_template(self, user_options: dict[str, Any] | None) -> None:
        """Choose the template of this start (403/400 before anything starts), and apply it."""
        self.template = template = self.choose_template(user_options)
        if template is None:
            return
        why_not = self.template_unavailable(template)
        if why_not:
            raise web.HTTPError(400, f"Workspace template {template.name!r} cannot start here: {why_not}")
        # the choice is recorded in KubeSpawner's key, whatever was (not) asked for
        self.user_options = {**(user_options or {}), "profile": template.name}
        self.log.info("Workspace %s starts from template %s", self._log_name, template.name)


async def wait_until_answering(
    url: str, alive: Callable[[], bool], interval: float, timeout: float, request_timeout: float = 5.0
) -> bool:
    """GET `url` every `interval` seconds until it answers below 500 (as the hub's own check
    counts a server as up): True. False when `alive()` says the process is gone or after
    `timeout` seconds; the hub's own check then decides."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while alive():
        try:
            r = await fetch(
                url, raise_for_status=False, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=request_timeout)
            )
            r.release()
            if r.status < 500:
                return True
        except (aiohttp.ClientError, OSError):  # refused, reset or timed out (TimeoutError is an OSError)
            pass
        if loop.time() + interval > deadline:
            return False
        await asyncio.sleep(interval)
    return False


class AnimusLocalSpawner(ProjectWorkspaceAccess, WorkspaceTemplates, SimpleLocalProcessSpawner):
    """The embedded profile's spawner: local processes, workspace templates, a folder per project."""

    ready_check_interval = Float(
        0.1,
        help="""Seconds between the spawner's own checks that a starting workspace answers
        (GET <server>/api, the hub's check). start() returns once it answers, so the hub's
        check passes at its first try: JupyterHub's own check backs off exponentially with
        random waits of up to 5 s, and would notice a workspace that is up about 1-2 s
        later on median (benchmarks/spawn.py). The wait ends at Spawner.http_timeout (or a
        second before start_timeout), when the process exits, and the hub's check then
        decides as before. 0: return as soon as the process has started, as JupyterHub's
        local spawners do.""",
    ).tag(config=True)

    enforce_cpu_affinity = Bool(
        True,
        help="""Pin each workspace's process tree to ceil(cpu_limit) CPUs (a template's `cpu`),
        never more than the hub may use; workspaces are spread over the least-used CPUs.""",
    ).tag(config=True)

    enforce_memory = Bool(
        True,
        help="""Enforce mem_limit (a template's `memory`) with a memory cgroup per workspace, when
        the hub may create one (cgroup v2 memory.max, or the cgroup v1 memory hierarchy). Checked
        at the first start; if it is not possible, one log line says why and MEM_LIMIT is only
        exported.""",
    ).tag(config=True)

    cgroup_parent = Unicode(
        "",
        help="""The cgroup under which workspace memory groups are made (a folder
        animus-workspaces/ is created in it). Empty: the hub's own group. On cgroup v2 this must be
        a group without processes of its own whose cgroup.controllers has `memory`, e.g. one made
        by root (`mkdir /sys/fs/cgroup/animus`) or delegated by systemd.""",
    ).tag(config=True)

    cgroup_root = Unicode("/sys/fs/cgroup", help="Where the cgroup filesystem is mounted.").tag(config=True)

    #: one allocator and one cgroup check per hub process
    _cpu_allocator: ClassVar[locallimits.CPUAllocator | None] = None
    _memory_groups: ClassVar[dict[tuple[str, str], locallimits.MemoryCgroups | None]] = {}

    _cpus: list[int]
    _cgroup: Path | None = None

    @property
    def project_dir(self) -> str:
        """The project's folder in the person's home (the home itself for the default server)."""
        return str(Path(self.home_dir) / self.name) if self.name else self.home_dir

    # --- templates ---------------------------------------------------------------------------

    def template_unavailable(self, template: ws.WorkspaceTemplate) -> str:
        if template.gpu_count:
            have = locallimits.count_nvidia_gpus()
            if have < template.gpu_count:
                return (
                    f"needs {template.gpu_count} GPU{'s' if template.gpu_count > 1 else ''}, this machine has "
                    f"{have or 'none'}; GPU templates need the cluster profile or a machine with NVIDIA GPUs"
                )
        return ""

    def apply_template(self, user_options: dict[str, Any] | None) -> None:
        super().apply_template(user_options)
        t = self.template
        if t is None:
            return
        cpus = float(locallimits.cpus_for(t.cpu, len(locallimits.available_cpus())))
        cpu = min(t.cpu, cpus)  # a template may ask for more than one machine has
        self.cpu_limit = self.cpu_guarantee = cpu
        self.mem_limit = self.mem_guarantee = t.memory_bytes

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        template = self.template
        if template is not None:
            env.update(template.environment)
            env["ANIMUS_WORKSPACE_TEMPLATE"] = template.name
            if template.gpu_count:
                env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(template.gpu_count)))
        env["ANIMUS_WORKSPACE_DIR"] = self.project_dir
        # VS Code (code-server via jupyter-server-proxy) opens the project's folder
        env.setdefault("CODE_WORKINGDIR", self.project_dir)
        # code-server and other tools write under the workspace's home, never the hub user's
        home = env.get("HOME") or self.home_dir
        env["XDG_CONFIG_HOME"] = os.path.join(home, ".config")
        env["XDG_DATA_HOME"] = os.path.join(home, ".local", "share")
        env["XDG_CACHE_HOME"] = os.path.join(home, ".cache")
        return env

    # --- limits --------------------------------------------------------------------------------

    @classmethod
    def cpu_allocator(cls) -> locallimits.CPUAllocator:
        if AnimusLocalSpawner._cpu_allocator is None:
            AnimusLocalSpawner._cpu_allocator = locallimits.CPUAllocator(locallimits.available_cpus())
        return AnimusLocalSpawner._cpu_allocator

    def memory_groups(self) -> locallimits.MemoryCgroups | None:
        key = (self.cgroup_root, self.cgroup_parent)
        if key not in AnimusLocalSpawner._memory_groups:
            groups = locallimits.MemoryCgroups(self.cgroup_root, self.cgroup_parent)
            why_not = groups.setup()
            if why_not:
                self.log.warning("Workspace memory limits are exported, not enforced: %s", why_not)
                AnimusLocalSpawner._memory_groups[key] = None
            else:
                self.log.info("Workspace memory limits are enforced by cgroup v%s in %s", groups.version, groups.base)
                AnimusLocalSpawner._memory_groups[key] = groups
        return AnimusLocalSpawner._memory_groups[key]

    def _take_limits(self) -> None:
        self._cpus = []
        self._cgroup = None
        if self.enforce_cpu_affinity and self.cpu_limit:
            allocator = self.cpu_allocator()
            self._cpus = allocator.take(locallimits.cpus_for(self.cpu_limit, len(allocator.cpus)))
        if self.enforce_memory and self.mem_limit:
            groups = self.memory_groups()
            if groups is not None:
                try:
                    self._cgroup = groups.create(locallimits.group_name(self.user.name, self.name), int(self.mem_limit))
                except OSError as e:
                    self.log.warning("The memory limit of %s is exported, not enforced: %s", self._log_name, e)

    def _release_limits(self) -> None:
        cpus, self._cpus = getattr(self, "_cpus", []), []
        if cpus:
            self.cpu_allocator().give_back(cpus)
        group, self._cgroup = self._cgroup, None
        if group is not None and not locallimits.MemoryCgroups.remove(group):
            # the server is gone: what is left in its group belongs to it
            for pid in locallimits.MemoryCgroups.pids(group):
                try:
                    psutil.Process(pid).kill()
                except psutil.Error:
                    pass
            if not locallimits.MemoryCgroups.remove(group):
                self.log.debug("Memory cgroup %s is not empty yet", group)

    def make_preexec_fn(self, name: str) -> Any:
        base = super().make_preexec_fn(name)
        cpus = list(getattr(self, "_cpus", []))
        procs = locallimits.MemoryCgroups.procs_file(self._cgroup) if self._cgroup is not None else None

        def preexec() -> None:
            base()
            # in the child before exec: everything the workspace starts inherits both
            if procs is not None:
                locallimits.join_cgroup(procs)
            if cpus:
                os.sched_setaffinity(0, cpus)

        return preexec

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.pid:
            if getattr(self, "_cpus", None):
                state["cpus"] = self._cpus
            if self._cgroup is not None:
                state["cgroup"] = str(self._cgroup)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("cpus"):
            self._cpus = list(state["cpus"])
            self.cpu_allocator().hold(self._cpus)
        if state.get("cgroup"):
            self._cgroup = Path(state["cgroup"])

    def clear_state(self) -> None:
        super().clear_state()
        self._release_limits()

    # --- start and stop -------------------------------------------------------------------------

    async def start(self) -> Any:
        os.makedirs(self.project_dir, exist_ok=True)
        self._take_limits()
        try:
            ip, port = await super().start()
        except BaseException:
            self._release_limits()
            raise
        if self.ready_check_interval > 0 and not self.internal_ssl:
            url = f"http://{fmt_ip_url(ip)}:{port}" + url_path_join(self.server.base_url, "api")
            timeout = max(0.0, min(self.http_timeout, self.start_timeout - 1))
            await wait_until_answering(url, self._process_alive, self.ready_check_interval, timeout)
        return ip, port

    def _process_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def stop(self, now: bool = False) -> None:
        # code-server's extension host (and other helpers) can outlive the server, even
        # leave its process tree: stop whatever the workspace started once the server is gone
        leftovers: dict[int, psutil.Process] = {}
        if self.pid:
            try:
                leftovers.update({p.pid: p for p in psutil.Process(self.pid).children(recursive=True)})
            except psutil.Error:
                pass
        group = self._cgroup
        if group is not None:
            for pid in locallimits.MemoryCgroups.pids(group):
                if pid != self.pid:
                    try:
                        leftovers.setdefault(pid, psutil.Process(pid))
                    except psutil.Error:
                        pass
        self._cgroup = None  # removed below, once empty
        try:
            await super().stop(now=now)
        finally:
            await self._stop_leftovers(list(leftovers.values()))
            if group is not None:
                for _ in range(20):
                    if locallimits.MemoryCgroups.remove(group):
                        break
                    await asyncio.sleep(0.1)
                else:
                    self.log.warning("Could not remove the memory cgroup %s of %s", group, self._log_name)

    @staticmethod
    async def _stop_leftovers(children: list[psutil.Process]) -> None:
        for child in children:
            try:
                child.terminate()
            except psutil.Error:
                pass
        _, alive = await asyncio.to_thread(psutil.wait_procs, children, timeout=3)
        for child in alive:
            try:
                child.kill()
            except psutil.Error:
                pass
