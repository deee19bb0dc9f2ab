"""`animus secrets ls|set|rm` (names only; values are write-only) and `animus access`."""

from __future__ import annotations

import sys

import click

from .main import _client, api_command, json_option, main, print_json, print_table, project_option


@main.group()
def secrets() -> None:
    """Project secrets: values for runs (passwords, API keys, git tokens), set by maintainers.

    \b
    Values are write-only: nobody can read one back through Animus. A run gets the
    secrets it names (animus runs submit --secret NAME) as environment variables,
    and their values are redacted from its log.
      animus secrets set db-password -p PROJECT          # prompts for the value
      printf %s "$TOKEN" | animus secrets set gh-token -p PROJECT --stdin
    """


@secrets.command("ls")
@project_option
@json_option
@api_command
def secrets_ls(project: str, as_json: bool) -> None:
    """List the project's secrets: names, versions, who set them and when (contributors and up)."""
    items = _client().list_secrets(project)
    if as_json:
        print_json(items)
    else:
        print_table(items, ["name", "version", "updated_by", "updated_at", "description"])


@secrets.command("set")
@click.argument("name")
@project_option
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from standard input (no prompt, no echo).")
@click.option("--description", default=None, help="What the secret is for.")
@json_option
@api_command
def secrets_set(name: str, project: str, from_stdin: bool, description: str | None, as_json: bool) -> None:
    """Set or rotate secret NAME (maintainers and owners). The value is never a command-line argument:
    it would land in your shell history and the process list."""
    if from_stdin:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    else:
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    meta = _client().set_secret(project, name, value, description)
    if as_json:
        print_json(meta)
    else:
        click.echo(f"{meta['name']}  version {meta['version']}")


@secrets.command("rm")
@click.argument("name")
@project_option
@api_command
def secrets_rm(name: str, project: str) -> None:
    """Delete secret NAME and every version of it (maintainers and owners)."""
    _client().delete_secret(project, name)
    click.echo(f"deleted {name}")


@main.command("access")
@click.argument("project")
@click.argument("resource", default="project")
@click.option("--principal", default=None, help="Explain one principal: user:NAME, group:NAME or service_account:NAME.")
@json_option
@api_command
def access(project: str, resource: str, principal: str | None, as_json: bool) -> None:
    """Who can access PROJECT, or RESOURCE in it, and why.

    \b
    RESOURCE is project (default), dataset:NAME, run:ID, model:NAME or secret:NAME.
      animus access fraud dataset:churn                  # everyone with a role (maintainers)
      animus access fraud dataset:churn --principal user:bob   # why bob may or may not
    """
    body = _client().access(project, resource, principal)
    if as_json:
        print_json(body)
        return
    entries = body["items"] if principal is None else [body]
    for e in entries:
        click.echo(f"{e['principal']}: {e['role'] or 'no role'}" + (f"  ({e['found_as']})" if "found_as" in e else ""))
        for g in e["grants"]:
            click.echo(f"  grant {g['role']} via {g['via']}: {g['detail']}")
        for d in e["decisions"]:
            click.echo(f"  {'allow' if d['allowed'] else 'DENY '} {d['action']}: {d['reason']}")
    for note in body.get("notes", []):
        click.echo(f"note: {note}")
