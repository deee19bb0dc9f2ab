"""`animus`: the command line of Animus Datalab.

In a JupyterLab terminal of an Animus workspace it works with no setup; elsewhere
run `animus login` once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from ..auditchain import verify
from ..client import AnimusAPIError, Client, ConfigError, forget_login, save_login

ROLES = ["viewer", "contributor", "maintainer", "owner"]
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _client() -> Client:
    try:
        return Client()
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def api_command(f: Callable) -> Callable:
    """Turn API errors into a one-line message and exit status 1."""

    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except AnimusAPIError as e:
            click.echo(f"error: {e.message} [{e.status} {e.reason}]", err=True)
            for item in e.details.get("errors", [])[:10]:
                where = item.get("field") or item.get("path")
                if item.get("line"):
                    where = f"{where} (line {item['line']} column {item.get('column')})"
                click.echo(f"  {where}: {item.get('message')}", err=True)
            for item in e.details.get("missing", [])[:20]:
                click.echo(f"  missing: {item}", err=True)
            sys.exit(1)

    return wrapper


def print_table(rows: Iterable[dict], columns: list[str]) -> None:
    rows = list(rows)
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=False)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="animus-datalab", prog_name="animus")
def main() -> None:
    """Animus Datalab: projects, members and the audit trail from the command line.

    \b
    Start a local Animus:   animus up
    Log in from elsewhere:  animus login --url http://HOST:8000/services/animus/api/v1
    See who you are:        animus whoami
    """


# --- the embedded stack ------------------------------------------------------


@main.command()
@click.option(
    "--data-dir", type=click.Path(file_okay=False), help="Where all data lives (default: your user data directory)."
)
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port of the web UI and API.")
@click.option(
    "--hub-port",
    default=8081,
    show_default=True,
    type=int,
    envvar="ANIMUS_HUB_PORT",
    help="Internal port of the hub's own API (127.0.0.1).",
)
@click.option(
    "--proxy-api-port",
    default=8001,
    show_default=True,
    type=int,
    envvar="ANIMUS_PROXY_API_PORT",
    help="Internal port of the proxy's API (127.0.0.1).",
)
@click.option(
    "--api-port",
    default=8090,
    show_default=True,
    type=int,
    envvar="ANIMUS_API_PORT",
    help="Internal port of animus-api (127.0.0.1).",
)
@click.option(
    "--objects-port",
    default=8092,
    show_default=True,
    type=int,
    envvar="ANIMUS_OBJECTS_PORT",
    help="Internal port of the object gateway (127.0.0.1).",
)
@click.option(
    "--ssh-port",
    default=8022,
    show_default=True,
    type=int,
    envvar="ANIMUS_SSH_PORT",
    help="Port of the SSH gateway into workspaces (ssh -p PORT you+PROJECT@host); 0 turns it off.",
)
@click.option(
    "--idle-timeout",
    default=3600,
    show_default=True,
    type=int,
    envvar="ANIMUS_IDLE_TIMEOUT",
    help="Stop workspaces nobody used for this many seconds (notebooks, terminals, VS Code and SSH count); "
    "0 never stops them.",
)
@click.option(
    "--db-url",
    envvar="ANIMUS_DB_URL",
    default="",
    help="Animus database URL (default: animus.sqlite in the data directory), e.g. postgresql+psycopg://user@host/animus.",
)
@click.option(
    "--oidc-issuer",
    envvar="ANIMUS_OIDC_ISSUER",
    default="",
    help="Log in through this OpenID Connect provider (its issuer URL) instead of the users file.",
)
@click.option(
    "--oidc-client-id", envvar="ANIMUS_OIDC_CLIENT_ID", default="", help="The client id registered at the provider."
)
@click.option(
    "--oidc-client-secret-file",
    envvar="ANIMUS_OIDC_CLIENT_SECRET_FILE",
    default="",
    type=click.Path(dir_okay=False),
    help="A file holding the client secret (kept out of the command line and the environment).",
)
@click.option(
    "--oidc-groups-claim",
    envvar="ANIMUS_OIDC_GROUPS_CLAIM",
    default="groups",
    show_default=True,
    help="The claim listing a person's groups (mapped to project roles).",
)
def up(
    data_dir: str | None,
    ip: str,
    port: int,
    hub_port: int,
    proxy_api_port: int,
    api_port: int,
    objects_port: int,
    ssh_port: int,
    idle_timeout: int,
    db_url: str,
    oidc_issuer: str,
    oidc_client_id: str,
    oidc_client_secret_file: str,
    oidc_groups_claim: str,
) -> None:
    """Start Animus on this machine: JupyterHub, the proxy, animus-api and local workspaces.

    Everything lives in one data directory and survives restarts. The first start
    creates the platform admin and prints its password once. Stop with Ctrl-C.

    \b
    Single sign-on instead of the users file (register the redirect URI
    http://HOST:PORT/hub/oauth_callback at your provider):
      animus up --oidc-issuer https://idp.example.com/realms/ml \\
                --oidc-client-id animus --oidc-client-secret-file ./client-secret
    """
    from animus_hub.cli import DEFAULT_DATA_DIR
    from animus_hub.embedded import run
    from animus_hub.hubconfig import EmbeddedSettings

    settings = EmbeddedSettings(
        data_dir=data_dir or DEFAULT_DATA_DIR,
        ip=ip,
        port=port,
        hub_port=hub_port,
        proxy_api_port=proxy_api_port,
        api_port=api_port,
        objects_port=objects_port,
        ssh_port=ssh_port,
        idle_timeout=idle_timeout,
        idle_cull_every=max(1, min(300, idle_timeout // 4 or 300)),
        db_url=db_url,
        oidc_issuer=oidc_issuer,
        oidc_client_id=oidc_client_id,
        oidc_client_secret_file=str(Path(oidc_client_secret_file).resolve()) if oidc_client_secret_file else "",
        oidc_groups_claim=oidc_groups_claim,
    )
    if oidc_issuer and not oidc_client_id:
        raise click.UsageError("--oidc-issuer needs --oidc-client-id (and usually --oidc-client-secret-file)")
    try:
        sys.exit(run(settings))
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None


# --- identity ----------------------------------------------------------------


@main.command()
@click.option("--url", required=True, help="The API URL, e.g. http://127.0.0.1:8000/services/animus/api/v1")
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input instead of prompting.")
@api_command
def login(url: str, token_stdin: bool) -> None:
    """Store an API token for this machine (in your config directory, mode 0600).

    Get a token from the hub's Token page (/hub/token).
    """
    token = sys.stdin.readline().strip() if token_stdin else click.prompt("API token", hide_input=True)
    me = Client(url=url, token=token).whoami()
    path = save_login(url.rstrip("/"), token)
    click.echo(f"logged in as {me['name']}; token saved in {path}")


@main.command()
def logout() -> None:
    """Forget the token stored by `animus login`."""
    click.echo("logged out" if forget_login() else "not logged in")


@main.command()
@json_option
@api_command
def whoami(as_json: bool) -> None:
    """Show who the API sees: name, kind, groups, admin flag, and the current project."""
    import os

    me = _client().whoami()
    project = os.environ.get("ANIMUS_PROJECT") or me.get("project")
    if as_json:
        print_json({**me, "project": project})
        return
    click.echo(f"user:    {me['name']} ({me['kind']}{', platform admin' if me.get('admin') else ''})")
    click.echo(f"groups:  {', '.join(me.get('groups') or []) or '-'}")
    click.echo(f"project: {project or '-'}")


# --- projects ----------------------------------------------------------------


@main.group()
def projects() -> None:
    """Create and manage projects, the isolation boundary of Animus."""


@projects.command("ls")
@click.option("--archived", is_flag=True, help="Include archived projects.")
@json_option
@api_command
def projects_ls(archived: bool, as_json: bool) -> None:
    """List the projects you can see, with your role in each."""
    items = _client().list_projects(archived=archived)
    if as_json:
        print_json(items)
    else:
        print_table(items, ["slug", "display_name", "role", "archived", "created_by"])


@projects.command("create")
@click.argument("slug")
@click.option("--name", "display_name", help="Display name (default: the slug).")
@click.option("--description", default="", help="What the project is for.")
@json_option
@api_command
def projects_create(slug: str, display_name: str | None, description: str, as_json: bool) -> None:
    """Create project SLUG (3–63 of a-z, 0-9, '-'); you become its owner."""
    p = _client().create_project(slug, display_name, description)
    if as_json:
        print_json(p)
    else:
        click.echo(f"created project {p['slug']} (you are {p.get('role', 'owner')})")


@projects.command("show")
@click.argument("slug")
@api_command
def projects_show(slug: str) -> None:
    """Show project SLUG as JSON."""
    print_json(_client().get_project(slug))


@projects.command("update")
@click.argument("slug")
@click.option("--name", "display_name", help="New display name.")
@click.option("--description", help="New description.")
@api_command
def projects_update(slug: str, display_name: str | None, description: str | None) -> None:
    """Change a project's display name or description (maintainers and owners)."""
    if display_name is None and description is None:
        raise click.UsageError("give --name and/or --description")
    print_json(_client().update_project(slug, display_name, description))


@projects.command("archive")
@click.argument("slug")
@api_command
def projects_archive(slug: str) -> None:
    """Archive a project: it becomes read-only and leaves the default listing (owners)."""
    _client().archive_project(slug)
    click.echo(f"archived {slug}")


@projects.command("unarchive")
@click.argument("slug")
@api_command
def projects_unarchive(slug: str) -> None:
    """Make an archived project writable again (owners)."""
    _client().unarchive_project(slug)
    click.echo(f"unarchived {slug}")


# --- members -----------------------------------------------------------------


@main.group()
def members() -> None:
    """Manage who holds which role in a project (viewer < contributor < maintainer < owner)."""


kind_option = click.option(
    "--group", "is_group", is_flag=True, help="NAME is a group (from your IdP or JupyterHub), not a user."
)


@members.command("ls")
@click.argument("project")
@json_option
@api_command
def members_ls(project: str, as_json: bool) -> None:
    """List the members of PROJECT."""
    items = _client().list_members(project)
    if as_json:
        print_json(items)
    else:
        print_table(items, ["kind", "name", "role", "created_by"])


@members.command("add")
@click.argument("project")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="The role to grant.")
@kind_option
@api_command
def members_add(project: str, name: str, role: str, is_group: bool) -> None:
    """Give user (or --group) NAME a ROLE in PROJECT (owners)."""
    m = _client().add_member(project, name, role, "group" if is_group else "user")
    click.echo(f"{m['kind']} {m['name']} is now {m['role']} in {project}")


@members.command("set-role")
@click.argument("project")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@kind_option
@api_command
def members_set_role(project: str, name: str, role: str, is_group: bool) -> None:
    """Change the role of member NAME in PROJECT (owners)."""
    m = _client().set_member_role(project, name, role, "group" if is_group else "user")
    click.echo(f"{m['kind']} {m['name']} is now {m['role']} in {project}")


@members.command("rm")
@click.argument("project")
@click.argument("name")
@kind_option
@api_command
def members_rm(project: str, name: str, is_group: bool) -> None:
    """Remove member NAME from PROJECT (owners; the last owner cannot be removed)."""
    _client().remove_member(project, name, "group" if is_group else "user")
    click.echo(f"removed {name} from {project}")


# --- experiments and runs ----------------------------------------------------------

project_option = click.option(
    "-p",
    "--project",
    envvar="ANIMUS_PROJECT",
    required=True,
    help="The project (default: $ANIMUS_PROJECT, set in workspaces).",
)


@main.group()
def experiments() -> None:
    """List and create experiments: named groups of runs inside a project."""


@experiments.command("ls")
@project_option
@click.option("--deleted", is_flag=True, help="List deleted experiments instead.")
@json_option
@api_command
def experiments_ls(project: str, deleted: bool, as_json: bool) -> None:
    """List the experiments of a project."""
    items = _client().list_experiments(project, "deleted" if deleted else "active")
    if as_json:
        print_json(items)
    else:
        print_table(items, ["id", "name", "created_by", "created_at"])


@experiments.command("create")
@project_option
@click.argument("name")
@click.option("--description", default="", help="What the experiment is about.")
@api_command
def experiments_create(project: str, name: str, description: str) -> None:
    """Create experiment NAME (contributors and above)."""
    e = _client().create_experiment(project, name, description)
    click.echo(f"created experiment {e['name']} (id {e['id']})")


@main.group()
def runs() -> None:
    """Find, inspect and compare tracked runs."""


def _metric_text(m: dict | None) -> str:
    return "" if m is None else str(m["value"])


@runs.command("ls")
@project_option
@click.option("-e", "--experiment", "experiment_ids", multiple=True, help="Only runs of this experiment id (repeatable).")
@click.option("-f", "--filter", "filter_", default="", help="A search filter, e.g. \"metrics.acc > 0.9 and params.model = 'rf'\".")
@click.option("-o", "--order-by", multiple=True, help="e.g. 'metrics.acc DESC' (repeatable).")
@click.option("-n", "--limit", type=int, default=50, show_default=True, help="At most this many runs.")
@click.option("-m", "--metric", "metrics", multiple=True, help="Show this metric's latest value as a column (repeatable).")
@click.option("-s", "--status", "statuses", multiple=True, help="Only runs with this status, e.g. queued, running, failed (repeatable).")
@click.option("-k", "--kind", type=click.Choice(["batch", "interactive"]), default=None, help="Only batch (submitted) or interactive runs.")
@json_option
@api_command
def runs_ls(project: str, experiment_ids: tuple[str, ...], filter_: str, order_by: tuple[str, ...], limit: int, metrics: tuple[str, ...], statuses: tuple[str, ...], kind: str | None, as_json: bool) -> None:
    """Search the runs of a project (newest first unless --order-by says otherwise)."""
    clauses = [f"({filter_})"] if filter_ else []
    if statuses:
        clauses.append("attributes.status in (" + ", ".join(f"'{s}'" for s in statuses) + ")")
    if kind:
        clauses.append(f"attributes.kind = '{kind}'")
    filter_ = " and ".join(clauses)
    items = list(_client().search_runs(project, filter_, list(order_by), list(experiment_ids), limit=limit))
    if as_json:
        print_json(items)
        return
    rows = [
        {"id": r["id"], "name": r["name"], "status": r["status"], "user": r["user"], "start_time": r["start_time"],
         **{f"metrics.{k}": _metric_text(r["metrics"].get(k)) for k in metrics}}
        for r in items
    ]
    print_table(rows, ["id", "name", "status", "user", "start_time", *[f"metrics.{k}" for k in metrics]])


@runs.command("show")
@project_option
@click.argument("run_id")
@api_command
def runs_show(project: str, run_id: str) -> None:
    """Show one run as JSON: params, tags, latest metrics, inputs, code reference."""
    print_json(_client().get_run(project, run_id))


@runs.command("artifacts")
@project_option
@click.argument("run_id")
@json_option
@api_command
def runs_artifacts(project: str, run_id: str, as_json: bool) -> None:
    """List a run's artifacts: files logged with animus and with MLflow (models under logged-models/)."""
    items = _client().list_artifacts(project, run_id)
    if as_json:
        print_json(items)
    else:
        print_table(items, ["path", "size", "source"])


@runs.command("download")
@project_option
@click.argument("run_id")
@click.argument("path")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="File to write (default: the artifact's name).")
@api_command
def runs_download(project: str, run_id: str, path: str, output: str | None) -> None:
    """Download one artifact of a run, straight from storage."""
    import requests

    info = _client().artifact_url(project, run_id, path)
    target = Path(output or path.rsplit("/", 1)[-1])
    with requests.get(info["url"], stream=True, timeout=600) as r:
        r.raise_for_status()
        with target.open("wb") as f:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
    click.echo(f"downloaded {path} to {target}")


@runs.command("history")
@project_option
@click.argument("run_id")
@click.argument("key")
@click.option("--max-points", type=int, help="Downsample to at most this many points (extremes are kept).")
@json_option
@api_command
def runs_history(project: str, run_id: str, key: str, max_points: int | None, as_json: bool) -> None:
    """Print the history of metric KEY of a run (step, value, timestamp)."""
    h = _client().metric_history(project, run_id, key, max_points)
    if as_json:
        print_json(h)
    else:
        print_table(h["points"], ["step", "value", "timestamp"])


@runs.command("compare")
@project_option
@click.argument("run_ids", nargs=-1, required=True)
@json_option
@api_command
def runs_compare(project: str, run_ids: tuple[str, ...], as_json: bool) -> None:
    """Compare runs side by side: params (differences marked *) and latest metrics."""
    c = _client().compare_runs(project, list(run_ids), max_points=200)
    if as_json:
        print_json(c)
        return
    ids = [r["id"] for r in c["runs"]]
    rows = [{"key": ("* " if k in c["params_differ"] else "  ") + f"params.{k}", **{i[:8]: v.get(i) for i in ids}} for k, v in c["params"].items()]
    rows += [{"key": f"  metrics.{k}", **{i[:8]: _metric_text(v.get(i)) for i in ids}} for k, v in c["metrics"].items()]
    print_table(rows, ["key", *[i[:8] for i in ids]])


# --- audit -------------------------------------------------------------------


@main.group()
def audit() -> None:
    """Read, export and verify the tamper-evident audit trail."""


@audit.command("export")
@click.option("--project", help="Only this project's events (owners); without it, every event (platform admins).")
@click.option("--since", help="From this time on (ISO 8601, e.g. 2026-01-31T00:00:00Z).")
@click.option("--until", help="Before this time (ISO 8601).")
@click.option("--actor", help="Only events by this user or service account.")
@click.option("--action", help="Only this action, e.g. project.create.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to this file instead of standard output.",
)
@api_command
def audit_export(
    project: str | None, since: str | None, until: str | None, actor: str | None, action: str | None, output: str | None
) -> None:
    """Export audit events as JSON lines, oldest first."""
    events = _client().audit_events(project=project, since=since, until=until, actor=actor, action=action)
    out = open(output, "w") if output else sys.stdout
    try:
        for e in events:
            out.write(json.dumps(e, sort_keys=True) + "\n")
    finally:
        if output:
            out.close()


@audit.command("verify")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    help="Verify an unfiltered export file instead of the live trail.",
)
@api_command
def audit_verify(path: str | None) -> None:
    """Check the audit hash chain and name the first bad event (exit status 1 if broken).

    Without --file, downloads the whole trail (platform admins) and checks it here,
    independently of the server, against the chain head the server records.
    """
    if path:
        with Path(path).open() as f:
            result = verify(json.loads(line) for line in f if line.strip())
    else:
        client = _client()
        head = client.audit_head()
        result = verify(client.audit_events(), head=head)
    click.echo(result.describe())
    sys.exit(0 if result.ok else 1)


from . import batch as _batch  # noqa: E402, F401 (registers `animus runs submit/logs/cancel/job` and `animus environments`)
from . import datasets as _datasets  # noqa: E402, F401 (registers `animus datasets`; it imports helpers from here)
from . import models as _models  # noqa: E402, F401 (registers `animus models`)
from . import pipelines as _pipelines  # noqa: E402, F401 (registers `animus pipelines` and `animus runs reproduce`)
from . import secrets as _secrets  # noqa: E402, F401 (registers `animus secrets` and `animus access`)
from . import service_accounts as _service_accounts  # noqa: E402, F401 (registers `animus service-accounts`)
from . import ssh_keys as _ssh_keys  # noqa: E402, F401 (registers `animus ssh-keys`)
from . import users as _users  # noqa: E402, F401 (registers `animus users`)

if __name__ == "__main__":
    # run as `python -m animus.cli.main`: use the module as imported, where every
    # command group (datasets, service-accounts) registered itself
    from animus.cli.main import main as registered_main

    registered_main()
