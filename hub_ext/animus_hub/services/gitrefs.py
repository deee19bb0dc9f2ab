"""Resolving a repository reference to a commit SHA, once, at submission.

The control plane runs only ``git ls-remote`` and, to prove that a SHA which is not
the tip of a ref exists, a shallow ``git fetch`` of that one commit into a throw-away
bare repository. Neither executes anything from the repository. Git never prompts
(no terminal, no askpass), and every call has a timeout.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import AnimusError

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
HEXISH_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")
# scp-like ssh syntax: git@host:group/repo.git
SCP_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
REF_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{1,255}$")


@dataclass(frozen=True)
class ResolvedRef:
    sha: str
    ref: str  # what the caller gave ("" when it was the SHA itself)


def git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    }


def validate_repo_url(url: str, allowed_schemes: list[str] | tuple[str, ...]) -> str:
    """Accept https/http/ssh/git URLs (and scp-like ssh) without embedded credentials."""
    if not isinstance(url, str) or not url or len(url) > 1024 or any(c.isspace() for c in url) or url.startswith("-"):
        raise AnimusError(
            422, "invalid_repo_url", "repo must be a git URL such as https://git.example.com/team/repo.git"
        )
    if SCP_RE.match(url) and "://" not in url:
        scheme = "ssh"
    else:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if not parts.netloc and scheme != "file":
            raise AnimusError(422, "invalid_repo_url", f"{url!r} is not a git URL with a host")
        if parts.password or (scheme in ("http", "https") and "@" in parts.netloc):
            raise AnimusError(
                422,
                "invalid_repo_url",
                "Do not put credentials in the repository URL; they would be shown with the run",
            )
    if scheme not in allowed_schemes:
        raise AnimusError(
            422,
            "invalid_repo_url",
            f"Repository URLs with scheme {scheme!r} are not allowed here (allowed: {', '.join(allowed_schemes)})",
        )
    return url


async def _git(args: list[str], timeout: float, cwd: str | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=git_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"timed out after {timeout:g}s"
    return proc.returncode or 0, out.decode("utf-8", "replace")


def _short(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:300]


async def ls_remote(url: str, timeout: float) -> dict[str, str]:
    """ref name → SHA of every ref the repository advertises (HEAD included); 422 if unreachable."""
    code, out = await _git(["ls-remote", "--", url], timeout)
    if code != 0:
        raise AnimusError(422, "repo_unreachable", f"Cannot read the repository {url!r}: {_short(out)}", {"repo": url})
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if SHA_RE.match(sha) and name:
            refs[name] = sha
    return refs


async def commit_exists(url: str, sha: str, timeout: float) -> bool:
    """Whether the server hands out commit `sha` (a shallow fetch of just that commit, nothing checked out)."""
    tmp = tempfile.mkdtemp(prefix="animus-git-")
    try:
        code, _ = await _git(["init", "--bare", "-q", tmp], timeout)
        if code != 0:
            raise AnimusError(500, "git_failed", "Could not create a scratch repository")
        code, _ = await _git(
            ["fetch", "-q", "--depth=1", "--no-tags", "--filter=tree:0", "--", url, sha], timeout, cwd=tmp
        )
        return code == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def resolve(url: str, ref: str, timeout: float, verify: bool = True) -> ResolvedRef:
    """A full SHA for `ref` (a 40-hex SHA, a branch, a tag or HEAD), checked against the repository."""
    if not isinstance(ref, str) or not ref:
        raise AnimusError(422, "invalid_commit", "Give the commit to run (a 40-hex SHA, or a branch or tag to resolve)")
    if HEXISH_RE.match(ref) and not SHA_RE.match(ref):
        raise AnimusError(
            422,
            "invalid_commit_sha",
            f"{ref!r} looks like an abbreviated or malformed SHA: give all 40 lower-case hex characters",
            {"commit": ref},
        )
    if not SHA_RE.match(ref) and not REF_RE.match(ref):
        raise AnimusError(422, "invalid_commit", f"{ref[:80]!r} is neither a 40-hex SHA nor a branch or tag name")
    refs = await ls_remote(url, timeout) if verify or not SHA_RE.match(ref) else {}
    if SHA_RE.match(ref):
        if verify and ref not in refs.values() and not await commit_exists(url, ref, timeout):
            raise AnimusError(
                422, "commit_not_found", f"Commit {ref} is not in the repository {url!r}", {"commit": ref, "repo": url}
            )
        return ResolvedRef(ref, "")
    for candidate in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
        if candidate in refs:
            return ResolvedRef(refs[candidate], ref)
    raise AnimusError(
        422, "ref_not_found", f"The repository {url!r} has no branch or tag {ref!r}", {"ref": ref, "repo": url}
    )
