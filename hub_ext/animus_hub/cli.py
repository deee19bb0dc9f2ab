"""`animus-hub`: operator commands for the control plane (database, users, audit)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import platformdirs

from . import db as dbmod

DEFAULT_DATA_DIR = platformdirs.user_data_dir("animus")


def _default_db_url() -> str:
    return os.environ.get("ANIMUS_DB_URL") or f"sqlite:///{Path(DEFAULT_DATA_DIR) / 'animus.sqlite'}"


db_url_option = click.option(
    "--db-url",
    default=_default_db_url,
    show_default="$ANIMUS_DB_URL, else the embedded profile's SQLite file",
    help="SQLAlchemy URL of the Animus database, e.g. postgresql+psycopg://animus@db/animus",
)
data_dir_option = click.option(
    "--data-dir",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="The embedded profile's data directory (the one `animus up` uses).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Operate the Animus control plane: migrate its database, manage embedded users, verify the audit trail."""


@main.command("upgrade-db")
@db_url_option
def upgrade_db(db_url: str) -> None:
    """Migrate the Animus database to the schema this version needs. Back it up first."""
    engine = dbmod.make_engine(db_url)
    before = dbmod.current_revision(engine)
    dbmod.upgrade(db_url)
    after = dbmod.current_revision(engine)
    click.echo(f"database at revision {after}" + (f" (was {before})" if before != after else " (already current)"))


@main.command("db-revision")
@db_url_option
def db_revision(db_url: str) -> None:
    """Show the database's schema revision and the one this version needs."""
    current = dbmod.current_revision(dbmod.make_engine(db_url))
    head = dbmod.head_revision()
    click.echo(json.dumps({"current": current, "required": head, "up_to_date": current == head}))
    sys.exit(0 if current == head else 1)


@main.command("audit-verify")
@db_url_option
def audit_verify(db_url: str) -> None:
    """Verify the audit hash chain directly in the database (exit 1 naming the first bad event)."""
    from .audit import verify_database

    engine = dbmod.make_engine(db_url)
    with dbmod.make_session_factory(engine)() as session:
        result = verify_database(session)
    click.echo(result.describe())
    sys.exit(0 if result.ok else 1)


@main.group()
def users() -> None:
    """Manage the embedded profile's users (users.json in the data directory)."""


def _userfile(data_dir: str):
    from .userfile import UserFile

    return UserFile(Path(data_dir) / "users.json")


@users.command("add")
@click.argument("name")
@click.option("--group", "groups", multiple=True, help="A group the user belongs to (repeat for more).")
@click.option("--admin/--no-admin", default=None, help="Make the user a platform admin, or not (unchanged when omitted).")
@click.option("--password", help="The password; prompted for when omitted (or read from stdin with --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@data_dir_option
def users_add(
    name: str, groups: tuple[str, ...], admin: bool, password: str | None, password_stdin: bool, data_dir: str
) -> None:
    """Add or update user NAME (groups are replaced by the ones given)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        _userfile(data_dir).set_user(name, password=password, groups=list(groups), admin=admin)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    entry = _userfile(data_dir).load()[name]
    click.echo(f"user {name} saved (groups: {', '.join(entry['groups']) or '-'}; admin: {entry['admin']}); effective at next login")


@users.command("ls")
@data_dir_option
def users_ls(data_dir: str) -> None:
    """List users and their groups."""
    for name, entry in sorted(_userfile(data_dir).load().items()):
        flags = " (admin)" if entry.get("admin") else ""
        click.echo(f"{name}{flags}\t{', '.join(entry.get('groups', [])) or '-'}")


@users.command("rm")
@click.argument("name")
@data_dir_option
def users_rm(name: str, data_dir: str) -> None:
    """Remove user NAME (they can no longer log in)."""
    if not _userfile(data_dir).remove_user(name):
        raise click.ClickException(f"no user {name!r}")
    click.echo(f"user {name} removed")


@main.group()
def webhooks() -> None:
    """Operate webhook signing secrets (stored encrypted in the database)."""


@webhooks.command("rotate-keys")
@db_url_option
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    help="File with the encryption keys, one a line, the new key first "
    "(default: $ANIMUS_WEBHOOK_SECRET_KEYS, comma-separated, else <data dir>/secrets/webhook_secret_keys).",
)
@data_dir_option
def webhooks_rotate_keys(db_url: str, key_file: str | None, data_dir: str) -> None:
    """Re-encrypt every webhook signing secret with the first key.

    Rotation: put a new key first (keep the old ones after it) in the key file or in
    c.WebhookDelivery.secret_keys, restart animus-api, run this command with the same
    keys, then remove the old keys and restart again. Signing secrets do not change:
    receivers notice nothing.
    """
    from .orm import Webhook
    from .webhook_delivery import SecretBox, SecretUnavailable, load_key_file

    env_keys = [k.strip() for k in os.environ.get("ANIMUS_WEBHOOK_SECRET_KEYS", "").split(",") if k.strip()]
    if key_file:
        keys = load_key_file(Path(key_file)) if Path(key_file).exists() else []
    else:
        keys = env_keys or load_key_file(Path(data_dir) / "secrets" / "webhook_secret_keys")
    if not keys:
        raise click.ClickException("no keys: give --key-file or set ANIMUS_WEBHOOK_SECRET_KEYS")
    try:
        box = SecretBox(keys)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    engine = dbmod.make_engine(db_url)
    changed = unchanged = 0
    failed: list[int] = []
    with dbmod.make_session_factory(engine)() as session:
        for w in session.query(Webhook).order_by(Webhook.id):
            if box.key_id_of(w.secret_encrypted) == box.primary_key_id:
                unchanged += 1
                continue
            try:
                w.secret_encrypted = box.encrypt(box.decrypt(w.secret_encrypted, w.id), w.id)
                changed += 1
            except SecretUnavailable as e:
                failed.append(w.id)
                click.echo(f"webhook {w.id}: {e}", err=True)
        session.commit()
    click.echo(f"re-encrypted {changed} signing secret(s) with key {box.primary_key_id}; {unchanged} already were")
    if failed:
        click.echo(
            f"{len(failed)} could not be decrypted with these keys (webhooks {failed}); keep their old key", err=True
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
