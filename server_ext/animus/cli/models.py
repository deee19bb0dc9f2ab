"""`animus models`: the model registry, promotion under the project's policy, exports, lineage."""

from __future__ import annotations

from pathlib import Path

import click

from .. import models as am
from .main import _client, api_command, json_option, main, print_json, print_table, project_option

STATUSES = ["draft", "validated", "approved", "deprecated"]


@main.group("models")
def models() -> None:
    """Model registry: versions from run artifacts, promotion under the project's policy, export.

    \b
    Register, validate, approve (someone else approves: four eyes), export:
      animus models register churn RUN_ID model -p PROJECT
      animus models promote churn 1 validated -p PROJECT
      animus models promote churn 1 approved --reason "beats v3" -p PROJECT
      animus models approve churn 1 -p PROJECT            # as a maintainer
      animus models export churn 1 --s3 releases -p PROJECT
      animus models export churn 1 --oci churn-1.oci.tar -p PROJECT
    The policy: animus models policy show|set FILE.yaml -p PROJECT
    """


@models.command("ls")
@project_option
@json_option
@api_command
def models_ls(project: str, as_json: bool) -> None:
    """List the models of the project."""
    items = am.list_models(project, client=_client())
    if as_json:
        print_json(items)
    else:
        print_table(
            [{**m, "aliases": ", ".join(f"{a}={v}" for a, v in m["aliases"].items())} for m in items],
            ["name", "versions", "aliases", "description"],
        )


@models.command("create")
@click.argument("name")
@project_option
@click.option("--description", default="", help="What the model is for.")
@api_command
def models_create(name: str, project: str, description: str) -> None:
    """Create model NAME."""
    am.create_model(name, project, description, client=_client())
    click.echo(f"created model {name}")


@models.command("register")
@click.argument("model")
@click.argument("run_id")
@click.argument("path", default="")
@project_option
@click.option("--alias", "aliases", multiple=True, help="Point this alias at the new version (repeatable).")
@click.option("--description", default="")
@json_option
@api_command
def models_register(
    model: str, run_id: str, path: str, project: str, aliases: tuple[str, ...], description: str, as_json: bool
) -> None:
    """Make a draft version of MODEL from artifact PATH (a file or directory) of run RUN_ID.

    A directory holding an MLmodel file is recorded as an MLflow model (flavors,
    framework, signature). Files are referenced by digest; nothing is copied.

    Models logged with MLflow (log_model, autolog) are registered as they are: give the
    path `animus runs artifacts RUN_ID` lists, e.g. logged-models/MODEL_ID. Their files
    are hashed once at registration.
    """
    v = am.register(model, run_id, path, project, description=description, aliases=list(aliases), client=_client())
    if as_json:
        print_json(v)
    else:
        click.echo(
            f"{model} version {v['version']}: {v['status']}, {v['source']['kind']}, {len(v['files'])} file(s), "
            f"framework {v['framework'] or '-'}, digest {v['digest']}"
        )


@models.command("versions")
@click.argument("model")
@project_option
@click.option("--status", type=click.Choice(STATUSES), help="Only versions in this status.")
@json_option
@api_command
def models_versions(model: str, project: str, status: str | None, as_json: bool) -> None:
    """List the versions of MODEL."""
    items = am.list_versions(model, project, status, client=_client())
    if as_json:
        print_json(items)
    else:
        print_table(
            [{**v, "aliases": ", ".join(v["aliases"]), "kind": v["source"]["kind"]} for v in items],
            ["version", "status", "framework", "kind", "run_id", "aliases", "created_by"],
        )


@models.command("show")
@click.argument("model")
@click.argument("version")
@project_option
@api_command
def models_show(model: str, version: str, project: str) -> None:
    """Show VERSION (a number or an alias) of MODEL as JSON."""
    print_json(am.get_version(model, version, project, client=_client()))


def _print_outcome(r: dict) -> None:
    for c in r.get("checks") or []:
        click.echo(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['message']}")
    v = r["version"]
    if r["outcome"] == "pending":
        req = r["request"]
        click.echo(
            f"{v['model']} v{v['version']}: waiting for approvals ({len(req['approvals'])}/{req['required_approvals']}) "
            f"to move to {req['to_status']}"
        )
    else:
        click.echo(
            f"{v['model']} v{v['version']} is now {v['status']} (policy version {r['policy_version'] or 'built-in'})"
        )


@models.command("promote")
@click.argument("model")
@click.argument("version")
@click.argument("status", type=click.Choice(STATUSES))
@project_option
@click.option("--reason", default="", help="Why (required to deprecate, return to draft or break glass).")
@click.option("--break-glass", is_flag=True, help="Platform admins only: bypass the policy (audited, flagged).")
@api_command
def models_promote(model: str, version: str, status: str, project: str, reason: str, break_glass: bool) -> None:
    """Move VERSION of MODEL to STATUS under the project's promotion policy.

    Statuses change one step at a time: draft → validated → approved → deprecated
    (or validated → draft). If the policy needs approvals, this opens a request
    that other people approve with `animus models approve`.
    """
    _print_outcome(am.transition(model, version, status, reason, project, override=break_glass, client=_client()))


@models.command("approve")
@click.argument("model")
@click.argument("version")
@project_option
@click.option("--reason", default="")
@api_command
def models_approve(model: str, version: str, project: str, reason: str) -> None:
    """Approve the open promotion request of VERSION (not your own: four eyes)."""
    _print_outcome(am.approve(model, version, reason, project, client=_client()))


@models.command("history")
@click.argument("model")
@click.argument("version", required=False)
@project_option
@json_option
@api_command
def models_history(model: str, version: str | None, project: str, as_json: bool) -> None:
    """The promotion history of MODEL (or of one VERSION): who, when, why, policy version."""
    items = am.history(model, version, project, client=_client())
    if as_json:
        print_json(items)
    else:
        print_table(
            [
                {
                    **h,
                    "move": f"{h['from_status'] or ''}→{h['to_status'] or ''}",
                    "glass": "yes" if h["break_glass"] else "",
                }
                for h in items
            ],
            ["at", "version", "kind", "move", "by", "policy_version", "glass", "reason"],
        )


@models.command("alias")
@click.argument("model")
@click.argument("alias")
@click.argument("version", type=int)
@project_option
@api_command
def models_alias(model: str, alias: str, version: int, project: str) -> None:
    """Point ALIAS of MODEL at VERSION."""
    am.set_alias(model, alias, version, project, client=_client())
    click.echo(f"{model}@{alias} → version {version}")


@models.command("export")
@click.argument("model")
@click.argument("version")
@project_option
@click.option("--s3", "target", help="Write the bundle to this export target (see the project's export targets).")
@click.option("--oci", "oci", type=click.Path(dir_okay=False), help="Write an OCI image-layout tarball to this file.")
@click.option("--mlflow", "mlflow_uri", help="Register in the MLflow Model Registry at this tracking URI.")
@click.option("--force", is_flag=True, help="Export a version that is not approved (maintainers; needs --reason).")
@click.option("--reason", default="")
@api_command
def models_export(
    model: str,
    version: str,
    project: str,
    target: str | None,
    oci: str | None,
    mlflow_uri: str | None,
    force: bool,
    reason: str,
) -> None:
    """Export VERSION of MODEL (approved versions only, unless forced with a reason).

    Files move between the stores and the destination from this machine, through
    presigned URLs, their sha256 checked on the way.
    """
    if sum(x is not None for x in (target, oci, mlflow_uri)) != 1:
        raise click.UsageError("give exactly one of --s3 TARGET, --oci FILE, --mlflow URI")
    client = _client()
    if target:
        out = am.export_s3(model, version, target, project, force=force, reason=reason, client=client)
        click.echo(f"wrote {out['files']} file(s) and manifest.json to {out['uri']}")
    elif oci:
        path = am.export_oci(model, version, Path(oci), project, force=force, reason=reason, client=client)
        click.echo(f"wrote {path}")
    else:
        out = am.export_mlflow(model, version, mlflow_uri, project, force=force, reason=reason, client=client)
        click.echo(f"registered {out['name']} version {out['version']} ({out['source']})")


@models.group("policy")
def policy() -> None:
    """The project's promotion policy (YAML, versioned; owners change it)."""


@policy.command("show")
@project_option
@api_command
def policy_show(project: str) -> None:
    """Print the policy in force (the built-in default if none was stored)."""
    p = am.get_policy(project, client=_client())
    click.echo(f"# policy version {p['version'] or 'built-in'}")
    click.echo(p["source"].rstrip())


@policy.command("set")
@click.argument("file", type=click.File("r"))
@project_option
@click.option("--comment", default="", help="What changed, for the policy's history.")
@api_command
def policy_set(file, project: str, comment: str) -> None:
    """Store FILE (YAML) as the next version of the policy."""
    p = am.put_policy(file.read(), project, comment, client=_client())
    click.echo(f"policy version {p['version']} is now in force")


@models.command("lineage")
@click.argument("node")
@project_option
@click.option("--direction", type=click.Choice(["upstream", "downstream", "both"]), default="both")
@click.option("--depth", type=click.IntRange(1, 10), default=3)
@json_option
@api_command
def models_lineage(node: str, project: str, direction: str, depth: int, as_json: bool) -> None:
    """The lineage graph around NODE: model_version:NAME/N, dataset_version:NAME/N, run:ID or code:SHA.

    What depends on a dataset version: --direction downstream.
    """
    g = am.lineage(node, project, direction, depth, client=_client())
    if as_json:
        print_json(g)
    else:
        for e in g["edges"]:
            click.echo(f"{e['from']} --{e['relation']}--> {e['to']}")
