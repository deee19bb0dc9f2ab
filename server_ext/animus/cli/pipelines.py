"""`animus pipelines submit|ls|show|cancel` and `animus runs reproduce`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .main import _client, api_command, json_option, main, print_json, print_table, project_option, runs

FINAL = ("succeeded", "failed", "cancelled")


@main.group()
def pipelines() -> None:
    """Pipelines: DAGs of batch runs from a YAML spec (see docs/how-to/pipelines.md)."""


@pipelines.command("submit")
@project_option
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--repo", required=True, help="Git URL of the code every step runs (https://, ssh:// or git://).")
@click.option(
    "--commit",
    required=True,
    help="The commit: a full 40-hex SHA, or a branch or tag (resolved once, the SHA recorded).",
)
@click.option("-e", "--experiment", default=None, help="Experiment of the step runs (created if missing).")
@click.option("--idempotency-key", default=None, help="Submitting again with the same key returns the same pipeline.")
@click.option(
    "-w", "--wait", is_flag=True, help="Then wait until the pipeline ends (exit status 1 unless it succeeded)."
)
@json_option
@api_command
def pipelines_submit(
    project: str,
    spec: Path,
    repo: str,
    commit: str,
    experiment: str | None,
    idempotency_key: str | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Check SPEC (a pipeline YAML file) and start it on a commit of a repository.

    \b
    A mistake in SPEC is reported with its line and column, e.g.
      error: line 7 column 5: steps/train/colour: unknown key 'colour' …
    Example:
      animus pipelines submit -p churn pipeline.yaml \\
        --repo https://git.example.com/ml/churn.git --commit 3f2a…(40 hex)
    """
    p = _client().submit_pipeline(
        project,
        spec.read_text(),
        repo,
        commit,
        experiment=experiment,
        idempotency_key=idempotency_key,
    )
    if as_json:
        print_json(p)
    else:
        click.echo(
            f"{p['id']}  {p['status']}  commit {p['code']['commit_sha']}  steps: "
            + ", ".join(s["name"] for s in p["steps"])
        )
    if wait:
        sys.exit(_wait(project, p["id"]))


def _wait(project: str, pipeline_id: str, interval: float = 2.0) -> int:
    client, seen = _client(), {}
    while True:
        p = client.get_pipeline(project, pipeline_id)
        for s in p["steps"]:
            state = (s["status"], s["cached"])
            if seen.get(s["name"]) != state:
                seen[s["name"]] = state
                click.echo(f"  {s['name']}: {s['status']}{' (cached)' if s['cached'] else ''}", err=True)
        if p["status"] in FINAL:
            click.echo(f"[pipeline {pipeline_id} {p['status']}]", err=True)
            return 0 if p["status"] == "succeeded" else 1
        time.sleep(interval)


@pipelines.command("ls")
@project_option
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]), default=None)
@json_option
@api_command
def pipelines_ls(project: str, status: str | None, as_json: bool) -> None:
    """List the project's pipeline runs, newest first."""
    items = list(_client().list_pipelines(project, status))
    if as_json:
        print_json(items)
        return
    rows = [
        {
            "id": p["id"],
            "name": p["name"],
            "status": p["status"],
            "steps": f"{sum(s['status'] == 'succeeded' for s in p['steps'])}/{len(p['steps'])}",
            "created": p["created_at"],
            "by": p["created_by"],
        }
        for p in items
    ]
    print_table(rows, ["id", "name", "status", "steps", "created", "by"])


@pipelines.command("show")
@project_option
@click.argument("pipeline_id")
@click.option("--spec", "with_spec", is_flag=True, help="Also print the YAML spec as submitted.")
@json_option
@api_command
def pipelines_show(project: str, pipeline_id: str, with_spec: bool, as_json: bool) -> None:
    """Show a pipeline run and its steps (status, run, attempt, cached or not)."""
    p = _client().get_pipeline(project, pipeline_id, spec=with_spec)
    if as_json:
        print_json(p)
        return
    click.echo(f"{p['id']}  {p['name'] or '(unnamed)'}  {p['status']}")
    click.echo(f"commit {p['code']['commit_sha']} of {p['code']['repo_url']}  spec {p['spec_digest']}")
    if p["message"]:
        click.echo(p["message"])
    rows = [
        {
            "step": s["name"],
            "status": s["status"] + (" (cached)" if s["cached"] else ""),
            "run": s["cached_from_run_id"] or s["run_id"],
            "attempt": s["attempt"],
            "needs": ",".join(s["needs"]) or "-",
        }
        for s in p["steps"]
    ]
    print_table(rows, ["step", "status", "run", "attempt", "needs"])
    if with_spec:
        click.echo("---")
        click.echo(p["spec"])


@pipelines.command("cancel")
@project_option
@click.argument("pipeline_id")
@api_command
def pipelines_cancel(project: str, pipeline_id: str) -> None:
    """Cancel a pipeline run: its running steps are cancelled, the waiting ones skipped."""
    p = _client().cancel_pipeline(project, pipeline_id)
    click.echo(f"{p['id']}  {p['status']}")


@runs.command("reproduce")
@project_option
@click.argument("run_id")
@click.option("--no-wait", is_flag=True, help="Only queue the new run; do not wait for it or compare.")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
@json_option
@api_command
def runs_reproduce(project: str, run_id: str, no_wait: bool, timeout: float | None, as_json: bool) -> None:
    """Run RUN again exactly (same commit, environment version, data, params, command, seed)
    and report which output artifacts differ by digest.

    Exit status: 0 when the new run succeeded and every artifact is identical, 1 otherwise.
    """
    client = _client()
    new = client.reproduce_run(project, run_id)
    click.echo(f"reproducing {run_id} as {new['id']}", err=True)
    if no_wait:
        if as_json:
            print_json(new)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = client.run_job(project, new["id"])
        if job["status"] in FINAL:
            break
        if deadline is not None and time.monotonic() > deadline:
            click.echo(f"error: run {new['id']} is still {job['status']}", err=True)
            sys.exit(1)
        time.sleep(1)
    diff = client.artifact_diff(project, run_id, new["id"])
    diff["status"] = job["status"]
    if as_json:
        print_json(diff)
    else:
        click.echo(f"run {new['id']} {job['status']}")
        for path in diff["same"]:
            click.echo(f"  same       {path}")
        for d in diff["different"]:
            click.echo(f"  DIFFERENT  {d['path']}  {d['digest']} → {d['other_digest']}")
        for path in diff["only_in_run"]:
            click.echo(f"  MISSING    {path}  (only in {run_id})")
        for path in diff["only_in_other"]:
            click.echo(f"  NEW        {path}  (only in {new['id']})")
        click.echo("identical artifacts" if diff["identical"] else "artifacts differ")
    sys.exit(0 if job["status"] == "succeeded" and diff["identical"] else 1)
