"""`animus datasets`: push, pull, import, verify, list and show dataset versions; their schema and diffs."""

from __future__ import annotations

from pathlib import Path

import click

from .. import datasets as ds
from .main import _client, api_command, json_option, main, print_json, print_table, project_option


def _name_and_version(ref: str) -> tuple[str, str | None]:
    """NAME or NAME:VERSION (VERSION a number or 'latest')."""
    name, _, version = ref.partition(":")
    if not name:
        raise click.BadParameter(f"{ref!r}: expected NAME or NAME:VERSION")
    return name, (version or None)


def _dataset_error(f):
    wrapped = api_command(f)

    def run(*args, **kwargs):
        try:
            return wrapped(*args, **kwargs)
        except ds.DatasetError as e:
            raise click.ClickException(str(e)) from None

    run.__name__ = f.__name__
    run.__doc__ = f.__doc__
    return run


@main.group()
def datasets() -> None:
    """Version data as immutable, content-addressed dataset versions."""


@datasets.command("push")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@project_option
@click.option("-m", "--message", default="", help="What changed in this version.")
@click.option("--force", is_flag=True, help="Create a version even if the content equals the latest one.")
@click.option("-j", "--jobs", type=int, default=8, show_default=True, help="Parallel uploads.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--no-profile", is_flag=True, help="Do not compute schema and statistics of tabular files.")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Hash every file, even those unchanged (same size, times and inode) since an earlier push.",
)
@json_option
@_dataset_error
def datasets_push(
    name: str,
    path: Path,
    project: str,
    message: str,
    force: bool,
    jobs: int,
    quiet: bool,
    no_profile: bool,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Version the folder (or file) PATH as the next version of dataset NAME (created if missing).

    Only files the project's storage does not have yet are uploaded; an
    interrupted push leaves nothing visible, and running it again resumes.
    Digests of files unchanged since an earlier push on this machine come from a
    local cache ($ANIMUS_CACHE_DIR, by default your user cache directory); the
    store checks the digest of every uploaded byte either way.
    """
    v = ds.push(
        name,
        path,
        project,
        message,
        client=_client(),
        upload_workers=jobs,
        progress=not quiet,
        force=force,
        profile=not no_profile,
        cache=not no_cache,
    )
    if as_json:
        print_json(v.data)
    else:
        click.echo(f"{name}:{v.version} {v.digest} ({v.file_count} files, {v.total_size} bytes)")


@datasets.command("pull")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@project_option
@click.option("-j", "--jobs", type=int, default=8, show_default=True, help="Parallel downloads.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@_dataset_error
def datasets_pull(ref: str, directory: Path, project: str, jobs: int, quiet: bool) -> None:
    """Download a version (default: the latest) into DIRECTORY, verifying every file's sha256."""
    name, version = _name_and_version(ref)
    v = ds.get(name, version, project, client=_client(), record=False)
    v.download(directory, workers=jobs, progress=not quiet)
    click.echo(f"{name}:{v.version} → {directory} ({v.file_count} files)")


@datasets.command("ls")
@click.argument("name", required=False)
@project_option
@json_option
@_dataset_error
def datasets_ls(name: str | None, project: str, as_json: bool) -> None:
    """List the datasets of a project, or the versions of dataset NAME."""
    client = _client()
    if name is None:
        items = ds.list_datasets(project, client=client)
        columns = ["name", "latest_version", "restricted", "description"]
    else:
        items = ds.list_versions(name, project, client=client)
        columns = ["version", "digest", "file_count", "total_size", "committed_by", "committed_at", "message"]
    if as_json:
        print_json(items)
    else:
        print_table(items, columns)


@datasets.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@project_option
@click.option("--files", "with_files", is_flag=True, help="List the version's files too.")
@json_option
@_dataset_error
def datasets_show(ref: str, project: str, with_files: bool, as_json: bool) -> None:
    """Show a version (default: the latest) of dataset NAME."""
    name, version = _name_and_version(ref)
    v = ds.get(name, version, project, client=_client(), record=False)
    body = dict(v.data)
    if with_files:
        body["files"] = v.files()
    if as_json:
        print_json(body)
        return
    for key in ("dataset", "version", "digest", "file_count", "total_size", "message", "committed_by", "committed_at"):
        click.echo(f"{key}: {body.get(key)}")
    if with_files:
        print_table(body["files"], ["path", "size", "sha256", "media_type"])


@datasets.command("schema")
@click.argument("ref", metavar="NAME[:VERSION]")
@project_option
@click.option("--path", "file_path", default=None, help="Only this file.")
@json_option
@_dataset_error
def datasets_schema(ref: str, project: str, file_path: str | None, as_json: bool) -> None:
    """Columns, types and statistics of the tabular files of a version (default: the latest)."""
    name, version = _name_and_version(ref)
    v = ds.get(name, version, project, client=_client(), record=False)
    files = v.schema(file_path)
    if as_json:
        print_json({"dataset": name, "version": v.version, "digest": v.digest, "files": files})
        return
    if not files:
        click.echo(f"{name}:{v.version} has no profiled tabular file")
    for i, f in enumerate(files):
        if i:
            click.echo("")
        bad = f", {f['bad_rows']} broken rows skipped" if f.get("bad_rows") else ""
        click.echo(f"{f['path']} ({f['format']}, {f['rows']} rows{bad})")
        rows = [{**c, **{k: _short(c.get(k)) for k in ("min", "max", "mean")}} for c in f["columns"]]
        print_table(rows, ["name", "type", "nulls", "distinct", "min", "max", "mean"])


def _short(value: object) -> object:
    return f"{value:.6g}" if isinstance(value, float) else value


@datasets.command("diff")
@click.argument("name")
@click.argument("a")
@click.argument("b", required=False)
@project_option
@json_option
@_dataset_error
def datasets_diff(name: str, a: str, b: str | None, project: str, as_json: bool) -> None:
    """What changed from version A to version B (default: the latest) of dataset NAME."""
    d = ds.diff(name, a, b, project, client=_client())
    if as_json:
        print_json(d)
        return
    files = d["files"]
    click.echo(
        f"{name}:{d['from']['version']} → {name}:{d['to']['version']}: {files['added_count']} added, "
        f"{files['removed_count']} removed, {files['changed_count']} changed, {files['unchanged_count']} unchanged"
    )
    for mark, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        for f in files[key]:
            click.echo(f"  {mark} {f['path']}")
    if files["truncated"]:
        click.echo("  … (lists cut at 1000 entries; see --json for counts)")
    for t in d["tables"]:
        rows = t["rows"]
        click.echo(f"{t['path']}: rows {rows['from']} → {rows['to']} ({rows['change']:+d})")
        for c in t["columns_added"]:
            click.echo(f"  + column {c['name']} ({c['type']})")
        for c in t["columns_removed"]:
            click.echo(f"  - column {c['name']} ({c['type']})")
        for c in t["type_changes"]:
            click.echo(f"  ~ column {c['name']}: {c['from']} → {c['to']}")


@datasets.command("import")
@click.argument("name")
@click.argument("uri", metavar="s3://BUCKET/PREFIX/")
@click.option(
    "-s", "--source", required=True, help="The external source to read through (see `animus datasets sources`)."
)
@project_option
@click.option(
    "--reference/--snapshot",
    "by_reference",
    default=True,
    show_default=True,
    help="--reference: copy nothing, pin each object by ETag (and version id); reads go to the source "
    "and refuse changed objects. --snapshot: copy every object into the project through this machine, "
    "so later changes in the source do not matter.",
)
@click.option("-m", "--message", default="", help="What this version is.")
@click.option("-j", "--jobs", type=int, default=8, show_default=True, help="Parallel copies (--snapshot).")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where --snapshot keeps the copies until they are uploaded (default: a temporary directory); "
    "needs room for the whole prefix.",
)
@click.option("--quiet", is_flag=True, help="No progress output.")
@json_option
@_dataset_error
def datasets_import(
    name: str,
    uri: str,
    source: str,
    project: str,
    by_reference: bool,
    message: str,
    jobs: int,
    workdir: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Make the next version of dataset NAME (created if missing) from every object under an S3 prefix.

    The prefix is read through SOURCE, a read-only external source a platform admin
    configured for the project (`animus datasets sources` lists them). Example:

    \b
        animus datasets import churn s3://corp-lake/curated/churn/ --source lake
    """
    v = ds.import_external(
        name,
        uri,
        source,
        project,
        message,
        snapshot=not by_reference,
        client=_client(),
        workers=jobs,
        progress=not quiet,
        workdir=workdir,
    )
    if as_json:
        print_json(v.data)
    else:
        how = "referenced" if by_reference else "copied"
        click.echo(f"{name}:{v.version} {v.digest} ({v.file_count} files, {v.total_size} bytes {how} from {uri})")


@datasets.command("verify")
@click.argument("ref", metavar="NAME[:VERSION]")
@project_option
@json_option
@_dataset_error
def datasets_verify(ref: str, project: str, as_json: bool) -> None:
    """Check that every file of a version (default: the latest) is still there, unchanged.

    Files referenced in an external source are compared with the ETag (and version
    id) captured when the version was registered; other files are checked in the
    project's storage. Exits with status 1 if anything changed or is missing.
    """
    name, version = _name_and_version(ref)
    v = ds.get(name, version, project, client=_client(), record=False)
    report = v.verify()
    if as_json:
        print_json({"dataset": name, "version": v.version, "digest": v.digest, **report})
    else:
        for item in report["changed"]:
            click.echo(f"changed  {item['path']}")
        for item in report["missing"]:
            click.echo(f"missing  {item['path']}")
        click.echo(
            f"{name}:{v.version}: {report['checked']} checked, {report['ok']} ok, "
            f"{len(report['changed'])} changed, {len(report['missing'])} missing"
        )
    if report["changed"] or report["missing"]:
        raise SystemExit(1)


@datasets.command("sources")
@project_option
@json_option
@_dataset_error
def datasets_sources(project: str, as_json: bool) -> None:
    """List the external S3 sources this project may import from."""
    items = ds.list_sources(project, client=_client())
    if as_json:
        print_json(items)
    else:
        rows = [{**s, "prefixes": ", ".join(s["prefixes"]) or "*", "bucket": s["bucket"] or "*"} for s in items]
        print_table(rows, ["name", "bucket", "prefixes", "description"])
