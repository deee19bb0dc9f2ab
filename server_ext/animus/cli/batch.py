"""`animus runs submit|job|logs|cancel` and `animus environments`: batch runs from the command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .main import _client, api_command, json_option, main, print_json, print_table, project_option, runs


def _key_values(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=what)
        out[key] = value
    return out


def _secret_refs(refs: tuple[str, ...]) -> list[str] | dict[str, str] | None:
    """--secret NAME or NAME=VARIABLE → what the API takes (a list when no variable is named)."""
    if not refs:
        return None
    if not any("=" in r for r in refs):
        return list(refs)
    out: dict[str, str] = {}
    for r in refs:
        name, sep, env = r.partition("=")
        out[name] = env if sep else name.upper().replace("-", "_").replace(".", "_")
    return out


@runs.command("submit", context_settings={"ignore_unknown_options": True})
@project_option
@click.option("--repo", required=True, help="Git URL of the code (https://, ssh:// or git://).")
@click.option(
    "--commit",
    required=True,
    help="The commit: a full 40-hex SHA, or a branch or tag (resolved once, the SHA recorded).",
)
@click.option("--env", "environment", default=None, help="Environment version as NAME:VERSION, e.g. torch:3.")
@click.option(
    "--dataset", "datasets", multiple=True, help="Input dataset version as NAME:VERSION, e.g. churn:3 (repeatable)."
)
@click.option("--param", "params", multiple=True, help="A run parameter KEY=VALUE (repeatable).")
@click.option("--tag", "tags", multiple=True, help="A run tag KEY=VALUE (repeatable).")
@click.option("-e", "--experiment", default=None, help="Experiment name (created if missing; default: Default).")
@click.option("--name", default="", help="A name for the run.")
@click.option(
    "--priority", type=int, default=0, show_default=True, help="-100…100; higher starts first in the project's queue."
)
@click.option(
    "--retries", type=int, default=0, show_default=True, help="Retries when the code fails (non-zero exit, timeout)."
)
@click.option(
    "--infra-retries", type=int, default=None, help="Retries after infrastructure failures (default: the server's)."
)
@click.option("--timeout", "timeout_seconds", type=int, default=None, help="Seconds after which an attempt is stopped.")
@click.option(
    "--production",
    is_flag=True,
    help="Refuse unless code, environment (image digest, lock file) and data are all pinned.",
)
@click.option(
    "--secret",
    "secret_refs",
    multiple=True,
    help="A project secret the run gets as an environment variable: NAME (variable NAME upper-cased, "
    "'-' and '.' as '_') or NAME=VARIABLE (repeatable). Its value is redacted from the run's log.",
)
@click.option(
    "--git-credentials", default=None, help="A project secret holding 'user:password' or a token for an https repo."
)
@click.option("--idempotency-key", default=None, help="Submitting again with the same key returns the same run.")
@click.option("-f", "--follow", is_flag=True, help="Then print the run's output until it ends.")
@json_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@api_command
def runs_submit(
    project: str,
    repo: str,
    commit: str,
    environment: str | None,
    datasets: tuple[str, ...],
    params: tuple[str, ...],
    tags: tuple[str, ...],
    experiment: str | None,
    name: str,
    priority: int,
    retries: int,
    infra_retries: int | None,
    timeout_seconds: int | None,
    production: bool,
    secret_refs: tuple[str, ...],
    git_credentials: str | None,
    idempotency_key: str | None,
    follow: bool,
    as_json: bool,
    command: tuple[str, ...],
) -> None:
    """Queue COMMAND to run on the commit of a repository, in an environment, with pinned data.

    \b
    Put the command after --:
      animus runs submit -p churn --repo https://git.example.com/ml/churn.git \\
        --commit 3f2a…(40 hex) --env torch:3 --dataset churn:3 --param lr=0.01 \\
        -- python train.py --lr 0.01
    """
    run = _client().submit_run(
        project,
        repo,
        commit,
        list(command),
        environment=environment,
        datasets=list(datasets),
        params=_key_values(params, "--param"),
        tags=_key_values(tags, "--tag"),
        experiment=experiment,
        name=name,
        priority=priority,
        retries=retries,
        infra_retries=infra_retries,
        timeout_seconds=timeout_seconds,
        production=production,
        idempotency_key=idempotency_key,
        secrets=_secret_refs(secret_refs),
        git_credentials=git_credentials,
    )
    if as_json:
        print_json(run)
    else:
        click.echo(f"{run['id']}  {run['status']}  commit {run['code']['commit_sha']}")
    if follow:
        sys.exit(_follow(project, run["id"]))


@runs.command("job")
@project_option
@click.argument("run_id")
@api_command
def runs_job(project: str, run_id: str) -> None:
    """Show what a batch run executes and how its attempts went (JSON)."""
    print_json(_client().run_job(project, run_id))


@runs.command("cancel")
@project_option
@click.argument("run_id")
@api_command
def runs_cancel(project: str, run_id: str) -> None:
    """Cancel a queued or running batch run (its processes are killed)."""
    job = _client().cancel_run(project, run_id)
    click.echo(f"{run_id}  {job['status']}")


FINAL = ("succeeded", "failed", "cancelled")


def _follow(project: str, run_id: str, after: int = 0, interval: float = 1.0) -> int:
    client = _client()
    while True:
        page = client.run_logs(project, run_id, after=after)
        for item in page["items"]:
            sys.stdout.write(item["text"])
        sys.stdout.flush()
        after = page["next"]
        if not page["items"] and page["status"] in FINAL:
            click.echo(f"[run {run_id} {page['status']}]", err=True)
            return 0 if page["status"] == "succeeded" else 1
        if not page["items"]:
            time.sleep(interval)


@runs.command("logs")
@project_option
@click.argument("run_id")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Keep printing new output until the run ends (exit status 1 if it did not succeed).",
)
@api_command
def runs_logs(project: str, run_id: str, follow: bool) -> None:
    """Print a batch run's output (stdout and stderr, every attempt)."""
    if follow:
        sys.exit(_follow(project, run_id))
    client, after = _client(), 0
    while True:
        page = client.run_logs(project, run_id, after=after)
        for item in page["items"]:
            sys.stdout.write(item["text"])
        if not page["items"]:
            return
        after = page["next"]


# --- environments ---------------------------------------------------------------------------


@main.group()
def environments() -> None:
    """Environments of batch runs: an image, a Python lock file and a resource template, versioned.

    \b
      animus environments create torch -p PROJECT
      animus environments add-version torch -p PROJECT \\
        --image registry.example.com/ml/torch:2.5@sha256:<64 hex> \\
        --lock-file requirements.lock --cpu 4 --memory-mb 16384 --gpus 1 --gpu-type nvidia-a100
    """


@environments.command("ls")
@project_option
@json_option
@api_command
def environments_ls(project: str, as_json: bool) -> None:
    """List a project's environments and their latest version."""
    items = _client().list_environments(project)
    if as_json:
        print_json(items)
    else:
        print_table(items, ["name", "latest_version", "created_by", "description"])


@environments.command("create")
@project_option
@click.argument("name")
@click.option("--description", default="", help="What the environment is for.")
@api_command
def environments_create(project: str, name: str, description: str) -> None:
    """Create environment NAME (then add versions to it)."""
    e = _client().create_environment(project, name, description)
    click.echo(f"created environment {e['name']}")


@environments.command("add-version")
@project_option
@click.argument("name")
@click.option("--image", required=True, help="Image reference; pin it with @sha256:<digest> for production runs.")
@click.option(
    "--lock-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A pip lock file (pinned requirements, with --hash=sha256:… where possible).",
)
@click.option("--cpu", type=float, default=None, help="CPU cores.")
@click.option("--memory-mb", type=int, default=None, help="Memory in MiB.")
@click.option("--gpus", "gpu_count", type=int, default=None, help="Number of GPUs.")
@click.option("--gpu-type", default=None, help="GPU model, e.g. nvidia-a100-80gb.")
@click.option("--description", default="", help="What changed in this version.")
@json_option
@api_command
def environments_add_version(
    project: str,
    name: str,
    image: str,
    lock_file: Path | None,
    cpu: float | None,
    memory_mb: int | None,
    gpu_count: int | None,
    gpu_type: str | None,
    description: str,
    as_json: bool,
) -> None:
    """Add an immutable version to environment NAME."""
    resources = {
        k: v
        for k, v in (("cpu", cpu), ("memory_mb", memory_mb), ("gpu_count", gpu_count), ("gpu_type", gpu_type))
        if v is not None
    }
    lock = lock_file.read_text() if lock_file else ""
    v = _client().add_environment_version(project, name, image, lock, resources, description)
    if as_json:
        print_json(v)
        return
    pinned = "pinned" if v["image_pinned"] else "NOT pinned (no @sha256 digest)"
    click.echo(f"{v['ref']}  image {pinned}  lock {v['lock_digest'] or 'none'}")


@environments.command("show")
@project_option
@click.argument("ref")
@api_command
def environments_show(project: str, ref: str) -> None:
    """Show environment NAME, or one version NAME:VERSION (JSON)."""
    name, sep, version = ref.rpartition(":")
    client = _client()
    if not sep:
        print_json({**client.get_environment(project, ref), "versions": client.list_environment_versions(project, ref)})
    else:
        print_json(client.get_environment_version(project, name, version))
