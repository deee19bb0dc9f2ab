"""Workspace templates per project, and the local-process spawner of the embedded profile.

A *workspace template* is a KubeSpawner ``profile_list`` entry plus one Animus key:

    {"slug": "gpu", "display_name": "GPU", "description": "8 CPU, 32 GB, 1 GPU",
     "default": False,
     "allowed_groups": ["gpu-users"],          # Animus: who may pick it (empty: everyone)
     "kubespawner_override": {"cpu_limit": 8, "mem_limit": "32G",
                              "extra_resource_limits": {"nvidia.com/gpu": "1"},
                              "tolerations": [...], "environment": {...}}}

``project_templates`` says which template slugs each project allows, by project slug,
with ``"*"`` for every other project. ``templates_for()`` is the one rule (pure, no
I/O): the templates a person may start for a project, in the configured order.
``profile_list_for()`` returns the same list in KubeSpawner's shape (``allowed_groups``
removed), for ``c.KubeSpawner.profile_list`` as a callable in the cluster profile.

The local spawner (``AnimusLocalSpawner``) honours what one machine can: ``cpu_limit``,
``mem_limit``, ``cpu_guarantee``, ``mem_guarantee`` (exported to the workspace as
``CPU_LIMIT``/``MEM_LIMIT``…, not enforced: local processes share the machine) and
``environment``; Kubernetes-only keys (image, tolerations, node selectors, extra
resources) are ignored there. The chosen template is ``user_options["profile"]``
(KubeSpawner's key; ``"template"`` is accepted too) and is exported as
``ANIMUS_WORKSPACE_TEMPLATE``. Its ``start()`` returns once the workspace answers HTTP
(``ready_check_interval``), so the hub marks it ready without its own backed-off wait.
"""

from __future__ import annotations

import asyncio
import html
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from jupyterhub.httpclient import fetch
from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import fmt_ip_url, url_path_join
from tornado import web
from traitlets import Dict, Float, List, default, validate
from traitlets.config import LoggingConfigurable

#: kubespawner_override keys the local spawner applies (the rest are the cluster's)
LOCAL_OVERRIDES = ("cpu_limit", "mem_limit", "cpu_guarantee", "mem_guarantee")


class TemplateNotAllowed(Exception):
    def __init__(self, slug: str, allowed: list[str]):
        super().__init__(slug)
        self.slug = slug
        self.allowed = allowed


def check_templates(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    slugs = set()
    for t in templates:
        slug = t.get("slug")
        if not isinstance(slug, str) or not slug:
            raise ValueError(f"Workspace template {t!r} needs a 'slug'")
        if slug in slugs:
            raise ValueError(f"Two workspace templates are called {slug!r}")
        slugs.add(slug)
        if not isinstance(t.get("allowed_groups", []), list):
            raise ValueError(f"Template {slug!r}: 'allowed_groups' is a list of group names")
        if not isinstance(t.get("kubespawner_override", {}), dict):
            raise ValueError(f"Template {slug!r}: 'kubespawner_override' is a dict")
    return templates


def templates_for(
    templates: list[dict[str, Any]],
    project_templates: dict[str, list[str]],
    project: str,
    groups: Iterable[str],
    admin: bool = False,
) -> list[dict[str, Any]]:
    """The templates a person in `groups` may start for `project`, in the configured order.

    A project not named in `project_templates` gets the ``"*"`` entry; without one (or
    without any `project_templates`), every template. A template with ``allowed_groups``
    is only for members of one of them (platform admins included: a GPU quota is a
    quota).
    """
    del admin  # reserved: admins follow the same rule for now
    if project_templates:
        allowed_slugs = project_templates.get(project, project_templates.get("*", []))
        chosen = [t for t in templates if t["slug"] in set(allowed_slugs)]
    else:
        chosen = list(templates)
    groups = set(groups)
    return [t for t in chosen if not t.get("allowed_groups") or groups & set(t["allowed_groups"])]


def profile_list_for(
    templates: list[dict[str, Any]], project_templates: dict[str, list[str]], project: str, groups: Iterable[str]
) -> list[dict[str, Any]]:
    """The same choice in KubeSpawner ``profile_list`` shape (without Animus's ``allowed_groups``)."""
    out = []
    for t in templates_for(templates, project_templates, project, groups):
        out.append({k: v for k, v in t.items() if k != "allowed_groups"})
    return out


def pick_template(allowed: list[dict[str, Any]], requested: str | None) -> dict[str, Any] | None:
    """The template `requested` (a slug), or the default one; TemplateNotAllowed if it is not allowed."""
    if requested:
        for t in allowed:
            if t["slug"] == requested:
                return t
        raise TemplateNotAllowed(requested, [t["slug"] for t in allowed])
    for t in allowed:
        if t.get("default"):
            return t
    return allowed[0] if allowed else None


class WorkspaceTemplates(LoggingConfigurable):
    """Templates for any spawner (a mixin): the configuration, the form and the choice."""

    workspace_templates = List(
        Dict(),
        help="""Workspace templates (KubeSpawner profile_list entries with an optional
        "allowed_groups"), e.g. [{"slug": "cpu-small", "display_name": "CPU small",
        "default": True, "kubespawner_override": {"cpu_limit": 2, "mem_limit": "4G"}},
        {"slug": "gpu", "display_name": "GPU", "allowed_groups": ["gpu-users"],
        "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "1"}}}].
        Empty: no templates, every workspace starts the same.""",
    ).tag(config=True)

    project_templates = Dict(
        help="""Which template slugs each project allows: {"fraud": ["cpu-small", "gpu"],
        "*": ["cpu-small"]}. "*" covers projects not named; empty: every template
        everywhere (still filtered by allowed_groups).""",
    ).tag(config=True)

    @validate("workspace_templates")
    def _check_templates(self, proposal: Any) -> list[dict[str, Any]]:
        return check_templates(proposal["value"])

    def allowed_templates(self) -> list[dict[str, Any]]:
        groups = [g.name for g in getattr(self.user, "groups", [])]
        return templates_for(
            self.workspace_templates,
            self.project_templates,
            self.name or "",
            groups,
            bool(getattr(self.user, "admin", False)),
        )

    def choose_template(self, user_options: dict[str, Any]) -> dict[str, Any] | None:
        """The template these options ask for; 403 naming the allowed ones if it is not allowed."""
        if not self.workspace_templates:
            return None
        requested = (user_options or {}).get("profile") or (user_options or {}).get("template")
        if requested is not None and not isinstance(requested, str):
            raise web.HTTPError(400, "The workspace template ('profile') is a template name")
        allowed = self.allowed_templates()
        try:
            template = pick_template(allowed, requested)
        except TemplateNotAllowed as e:
            names = ", ".join(e.allowed) or "none"
            raise web.HTTPError(
                403,
                f"Workspace template {e.slug!r} is not allowed for you in project {self.name or '(default)'!r}; "
                f"allowed: {names}",
            ) from None
        if template is None:
            raise web.HTTPError(
                403, f"No workspace template is allowed for you in project {self.name or '(default)'!r}; allowed: none"
            )
        return template


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


class AnimusLocalSpawner(WorkspaceTemplates, SimpleLocalProcessSpawner):
    """The embedded profile's spawner: local processes, workspace templates, a folder per project."""

    ready_check_interval = Float(
        0.1,
        help="""Seconds between the spawner's own checks that a starting workspace answers
        (GET <server>/api, the hub's check). start() returns once it answers, so the hub's
        check passes at its first try: JupyterHub's own check backs off exponentially with
        random waits of up to 5 s, and noticed a workspace that was up 0.7-2.5 s late on
        median (benchmarks/spawn.py). The wait gives up after Spawner.http_timeout (or a
        second before start_timeout) or when the process exits; the hub's check then decides
        as before. 0: return as soon as the process has started, as JupyterHub's local
        spawners do.""",
    ).tag(config=True)

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return lambda spawner, options: spawner.apply_template(options)

    @default("options_form")
    def _default_options_form(self):
        return lambda spawner: spawner.template_form()

    @default("options_from_form")
    def _default_options_from_form(self):
        return lambda formdata, spawner=None: {"profile": (formdata.get("profile") or [""])[0]}

    def template_form(self) -> str:
        allowed = self.allowed_templates() if self.workspace_templates else []
        if len(allowed) < 2:
            return ""  # nothing to choose: start at once
        options = []
        default_slug = (pick_template(allowed, None) or {}).get("slug")
        for t in allowed:
            checked = " selected" if t["slug"] == default_slug else ""
            label = html.escape(t.get("display_name") or t["slug"])
            description = html.escape(t.get("description", ""))
            options.append(f'<option value="{html.escape(t["slug"])}"{checked}>{label} — {description}</option>')
        return (
            '<label for="animus-profile">Workspace template</label>'
            f'<select id="animus-profile" name="profile" class="form-control">{"".join(options)}</select>'
        )

    def apply_template(self, user_options: dict[str, Any]) -> None:
        template = self.choose_template(user_options)
        self.template = template
        if template is None:
            return
        override = template.get("kubespawner_override") or {}
        for key in LOCAL_OVERRIDES:
            if key in override:
                setattr(self, key, override[key])
        self.log.info("Workspace %s starts from template %s", self._log_name, template["slug"])

    template: dict[str, Any] | None = None

    @property
    def project_dir(self) -> str:
        """The project's folder in the person's home (the home itself for the default server)."""
        return str(Path(self.home_dir) / self.name) if self.name else self.home_dir

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        template = self.template
        if template is not None:
            env.update(
                {k: str(v) for k, v in (template.get("kubespawner_override", {}).get("environment") or {}).items()}
            )
            env["ANIMUS_WORKSPACE_TEMPLATE"] = template["slug"]
        env["ANIMUS_WORKSPACE_DIR"] = self.project_dir
        # VS Code (code-server via jupyter-vscode-proxy) opens the project's folder
        env.setdefault("CODE_WORKINGDIR", self.project_dir)
        # code-server and other tools write under the workspace's home, never the hub user's
        home = env.get("HOME") or self.home_dir
        env["XDG_CONFIG_HOME"] = os.path.join(home, ".config")
        env["XDG_DATA_HOME"] = os.path.join(home, ".local", "share")
        env["XDG_CACHE_HOME"] = os.path.join(home, ".cache")
        return env

    async def start(self) -> Any:
        os.makedirs(self.project_dir, exist_ok=True)
        ip, port = await super().start()
        if self.ready_check_interval > 0 and not self.internal_ssl:
            url = f"http://{fmt_ip_url(ip)}:{port}" + url_path_join(self.server.base_url, "api")
            timeout = max(0.0, min(self.http_timeout, self.start_timeout - 1))
            await wait_until_answering(url, self._process_alive, self.ready_check_interval, timeout)
        return ip, port

    def _process_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def stop(self, now: bool = False) -> None:
        # code-server's extension host (and other helpers) can outlive the server: stop
        # whatever the workspace started once the server itself is gone
        children: list[psutil.Process] = []
        if self.pid:
            try:
                children = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                children = []
        await super().stop(now=now)
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
