"""`animus ssh-keys`: your public SSH keys for the workspace SSH gateway."""

from __future__ import annotations

from pathlib import Path

import click

from .main import _client, api_command, json_option, main, print_json, print_table


@main.group("ssh-keys")
def ssh_keys() -> None:
    """Your public SSH keys, for SSH into project workspaces.

    \b
    Register a key once, then log in to project PROJECT's workspace:
      animus ssh-keys add ~/.ssh/id_ed25519.pub
      ssh -p 8022 alice+PROJECT@127.0.0.1
    Accepted: ed25519, ecdsa and rsa keys of at least 3072 bits.
    """


@ssh_keys.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--comment", default=None, help="A label for the key (default: the comment in the file).")
@json_option
@api_command
def ssh_keys_add(file: Path, comment: str | None, as_json: bool) -> None:
    """Register the public key in FILE (a .pub file, never the private key)."""
    text = file.read_text(errors="replace").strip()
    if "PRIVATE KEY" in text:
        raise click.ClickException(f"{file} is a private key: give the .pub file next to it")
    key = _client().add_ssh_key(text, comment=comment)
    if as_json:
        print_json(key)
        return
    click.echo(f"added {key['type']} key {key['fingerprint']} ({key['comment'] or 'no comment'})")


@ssh_keys.command("ls")
@json_option
@api_command
def ssh_keys_ls(as_json: bool) -> None:
    """List your keys with their fingerprints."""
    items = _client().list_ssh_keys()
    if as_json:
        print_json(items)
        return
    print_table(items, ["id", "type", "bits", "fingerprint", "comment", "last_used_at"])


@ssh_keys.command("rm")
@click.argument("key")
@api_command
def ssh_keys_rm(key: str) -> None:
    """Remove KEY (its id or its SHA256:… fingerprint); it stops opening workspaces at once."""
    _client().delete_ssh_key(key)
    click.echo(f"removed {key}")
