"""`animus users`: people's login sessions, and forced logout (platform admins)."""

from __future__ import annotations

import click

from .main import _client, api_command, json_option, main, print_json, print_table


@main.group("users")
def users() -> None:
    """People's login sessions; log someone out everywhere (platform admins).

    \b
    A stolen laptop, a leaver, a suspected leaked token:
      animus users logout alice --reason "laptop stolen"
    """


@users.command("sessions")
@click.argument("name")
@click.option("--ended", is_flag=True, help="Include ended and expired sessions, with why they ended.")
@json_option
@api_command
def users_sessions(name: str, ended: bool, as_json: bool) -> None:
    """List the login sessions (browsers) of user NAME."""
    items = _client().list_user_sessions(name, ended=ended)
    if as_json:
        print_json(items)
        return
    rows = [{**s, "end_reason": s.get("end_reason") or ("" if s["active"] else "expired")} for s in items]
    print_table(rows, ["id", "created_at", "last_seen_at", "expires_at", "source", "end_reason"])


@users.command("logout")
@click.argument("name")
@click.option(
    "--stop-servers/--keep-servers",
    default=None,
    help="Stop the user's running workspaces, or keep them running (default: the server's setting, "
    "AnimusAPI.forced_logout_stops_servers, normally stop).",
)
@click.option("--reason", default="", help="Why; recorded in the audit trail.")
@json_option
@api_command
def users_logout(name: str, stop_servers: bool | None, reason: str, as_json: bool) -> None:
    """Log user NAME out everywhere, at once.

    Every login cookie and every token NAME holds stops working (JupyterHub API and
    OAuth tokens, NAME's Animus tokens; service-account tokens stay valid: they
    belong to their project). NAME can log in again afterwards.
    """
    result = _client().force_logout(name, stop_servers=stop_servers, reason=reason)
    if as_json:
        print_json(result)
        return
    click.echo(
        f"{name} logged out: {result['sessions_ended']} session(s) ended, "
        f"{result['hub_tokens_revoked'] + result['animus_tokens_revoked']} token(s) revoked"
    )
    if result["servers_stopped"]:
        click.echo("workspaces stopped: " + ", ".join(n or "(default)" for n in result["servers_stopped"]))
    if result["servers_kept"]:
        click.echo("workspaces kept running: " + ", ".join(n or "(default)" for n in result["servers_kept"]))
