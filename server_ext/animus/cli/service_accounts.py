"""`animus service-accounts`: non-human principals of a project (CI, automation) and their tokens."""

from __future__ import annotations

import re

import click

from .main import ROLES, _client, api_command, json_option, main, print_json, print_table, project_option

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> int:
    """'3600', '90m', '12h' or '90d' → seconds."""
    m = _DURATION.match(value.strip().lower())
    if not m or int(m.group(1)) <= 0:
        raise click.BadParameter(f"{value!r}: expected a positive duration like 3600, 90m, 12h or 90d")
    return int(m.group(1)) * _UNIT[m.group(2)]


@main.group("service-accounts")
def service_accounts() -> None:
    """Service accounts: project principals for CI and automation, with expiring tokens.

    \b
    Rotate a token without downtime:
      animus service-accounts issue ci -p PROJECT --expires-in 90d   # new token
      (switch your CI secret to it)
      animus service-accounts revoke ci PREFIX -p PROJECT            # the old one
    """


@service_accounts.command("ls")
@project_option
@click.option("--disabled", is_flag=True, help="Include disabled service accounts.")
@json_option
@api_command
def sa_ls(project: str, disabled: bool, as_json: bool) -> None:
    """List the service accounts of the project."""
    items = _client().list_service_accounts(project, disabled=disabled)
    if as_json:
        print_json(items)
    else:
        print_table(items, ["name", "role", "description", "created_by", "disabled"])


@service_accounts.command("create")
@click.argument("name")
@project_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="Its role (at most yours).")
@click.option("--description", default="", help="What it is for.")
@json_option
@api_command
def sa_create(name: str, project: str, role: str, description: str, as_json: bool) -> None:
    """Create service account NAME (maintainers and owners)."""
    sa = _client().create_service_account(project, name, role, description)
    if as_json:
        print_json(sa)
    else:
        click.echo(f"created service account {sa['name']} ({sa['role']}) in {project}; issue a token with `issue`")


@service_accounts.command("update")
@click.argument("name")
@project_option
@click.option("--role", type=click.Choice(ROLES), help="New role (at most yours).")
@click.option("--description", help="New description.")
@api_command
def sa_update(name: str, project: str, role: str | None, description: str | None) -> None:
    """Change the role or description of service account NAME."""
    if role is None and description is None:
        raise click.UsageError("give --role and/or --description")
    print_json(_client().update_service_account(project, name, description=description, role=role))


@service_accounts.command("disable")
@click.argument("name")
@project_option
@api_command
def sa_disable(name: str, project: str) -> None:
    """Disable service account NAME: all its tokens stop working at once."""
    _client().disable_service_account(project, name)
    click.echo(f"disabled service account {name}; its tokens are revoked")


@service_accounts.command("tokens")
@click.argument("name")
@project_option
@json_option
@api_command
def sa_tokens(name: str, project: str, as_json: bool) -> None:
    """List the tokens of service account NAME (never their values)."""
    items = _client().list_service_account_tokens(project, name)
    if as_json:
        print_json(items)
        return
    for t in items:
        t["scopes"] = ",".join(t["scopes"]) or "all"
    print_table(items, ["prefix", "state", "note", "scopes", "expires_at", "last_used_at", "created_by"])


@service_accounts.command("issue")
@click.argument("name")
@project_option
@click.option(
    "--expires-in", required=True, help="Lifetime: seconds, or with a unit: 90m, 12h, 90d (server maximum applies)."
)
@click.option("--note", default="", help="What the token is for (shown in `tokens`).")
@click.option("--read-only", is_flag=True, help="Restrict the token to reads (scope 'read').")
@json_option
@api_command
def sa_issue(name: str, project: str, expires_in: str, note: str, read_only: bool, as_json: bool) -> None:
    """Issue a token for service account NAME and print it (shown only this once).

    The token alone goes to standard output, so that `TOKEN=$(animus service-accounts
    issue …)` captures it; its prefix and expiry go to standard error.
    """
    t = _client().issue_service_account_token(
        project, name, parse_duration(expires_in), note=note, scopes=["read"] if read_only else []
    )
    if as_json:
        print_json(t)
        return
    click.echo(t["token"])
    click.echo(f"token {t['prefix']} for {name} expires {t['expires_at']}; it is not shown again", err=True)


@service_accounts.command("revoke")
@click.argument("name")
@click.argument("prefix")
@project_option
@api_command
def sa_revoke(name: str, prefix: str, project: str) -> None:
    """Revoke token PREFIX of service account NAME, at once."""
    _client().revoke_service_account_token(project, name, prefix)
    click.echo(f"revoked token {prefix} of {name}")
