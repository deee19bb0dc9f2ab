"""Every route × every kind of caller, against the real stack: the expected status of each.

The table below is written independently of the code. The test enumerates the
routes the running application serves; a route (or method) missing from the
table fails the test, so a new endpoint cannot land without an authorisation
decision being written down here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from tornado.web import RequestHandler

from animus_hub.apihandlers.base import APIHandler
from animus_hub.app import AnimusAPI

CALLERS = ["anonymous", "outsider", "viewer", "contributor", "maintainer", "owner", "admin"]
ROLES = ["viewer", "contributor", "maintainer", "owner"]
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def only(ok: int, allowed: set[str], refused_member: int = 403) -> dict[str, int]:
    """`ok` for the allowed callers, 401 anonymous, 404 outsiders, `refused_member` for the rest."""
    table = {"anonymous": 401, "outsider": 404}
    for caller in ["viewer", "contributor", "maintainer", "owner", "admin"]:
        table[caller] = ok if caller in allowed else refused_member
    return table


def platform(ok: int, allowed: set[str]) -> dict[str, int]:
    table = {"anonymous": 401}
    for caller in CALLERS[1:]:
        table[caller] = ok if caller in allowed else 403
    return table


EVERYONE = set(CALLERS[1:])
ADMIN = {"admin"}
VIEWER_UP = {"viewer", "contributor", "maintainer", "owner", "admin"}
MAINTAINER_UP = {"maintainer", "owner", "admin"}
OWNER_UP = {"owner", "admin"}


@dataclass
class Case:
    expected: dict[str, int]
    body: Callable[[dict], Any] | None = None
    # prepares state for one call; returns extra path values
    setup: Callable[[Any, dict], dict] | None = None
    cleanup: Callable[[Any, dict], None] | None = None
    params: Callable[[Any, dict], dict] | None = None
    extra: dict = field(default_factory=dict)


def _new_member(ctx: Any, values: dict) -> dict:
    name = ctx.unique("m")
    r = ctx.api(
        "POST",
        f"/projects/{ctx.project}/members",
        ctx.tokens["owner"],
        json={"kind": "user", "name": name, "role": "viewer"},
    )
    assert r.status_code == 201, r.text
    return {"kind": "users", "name": name}


def _new_rule(ctx: Any, values: dict) -> dict:
    r = ctx.api(
        "POST",
        "/role-mappings",
        ctx.tokens["admin"],
        json={"group_pattern": ctx.unique("g") + "-{project}", "role": "viewer"},
    )
    assert r.status_code == 201, r.text
    return {"rule_id": str(r.json()["id"])}


def _new_experiment(ctx: Any, values: dict) -> dict:
    r = ctx.api("POST", f"/projects/{ctx.project}/experiments", ctx.tokens["owner"], json={"name": ctx.unique("e")})
    assert r.status_code == 201, r.text
    return {"experiment_id": r.json()["id"]}


def _new_run(ctx: Any, values: dict) -> dict:
    r = ctx.api("POST", f"/projects/{ctx.project}/runs", ctx.tokens["owner"], json={"tags": {"t": "1"}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    r = ctx.api(
        "POST",
        f"/projects/{ctx.project}/runs/{run_id}/log-batch",
        ctx.tokens["owner"],
        json={"metrics": [{"key": "m", "value": 1}]},
    )
    assert r.status_code == 200, r.text
    return {"run_id": run_id}


CONTRIBUTOR_UP = {"contributor", "maintainer", "owner", "admin"}


def _new_dataset(ctx: Any, values: dict) -> dict:
    """A dataset with one committed version (its blob uploaded through the presigned URL)."""
    import hashlib

    import requests

    name = ctx.unique("ds")
    owner = ctx.tokens["owner"]
    base = f"/projects/{ctx.project}/datasets"
    assert ctx.api("POST", base, owner, json={"name": name}).status_code == 201
    data = b"rbac"
    files = [{"path": "f.txt", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}]
    upload = ctx.api("POST", f"{base}/{name}/uploads", owner, json={"files": files}).json()["id"]
    for item in ctx.api("GET", f"{base}/{name}/uploads/{upload}/missing", owner).json()["items"]:
        assert requests.put(item["url"], data=data, headers=item["headers"], timeout=30).status_code < 300
    r = ctx.api("POST", f"{base}/{name}/uploads/{upload}/commit", owner)
    assert r.status_code == 201, r.text
    return {"dataset": name, "version": "1"}


def _new_upload(ctx: Any, values: dict) -> dict:
    """A dataset and a pending upload started by the owner (maintainers and up see others' uploads)."""
    name = ctx.unique("ds")
    base = f"/projects/{ctx.project}/datasets"
    assert ctx.api("POST", base, ctx.tokens["owner"], json={"name": name}).status_code == 201
    files = [{"path": "f.txt", "sha256": "0" * 64, "size": 1}]
    r = ctx.api("POST", f"{base}/{name}/uploads", ctx.tokens["owner"], json={"files": files})
    assert r.status_code == 201, r.text
    return {"dataset": name, "upload_id": r.json()["id"]}


DS_FILES = {"files": [{"path": "f.txt", "sha256": "0" * 64, "size": 1}]}


def _unarchive(ctx: Any, values: dict) -> None:
    r = ctx.api("POST", f"/projects/{ctx.project}/unarchive", ctx.tokens["admin"])
    assert r.status_code == 200, r.text


# (route as the app declares it, relative to /api/v1, or "ROOT" for the service root) → method → case
EXPECTED: dict[str, dict[str, Case]] = {
    "ROOT": {"GET": Case({c: 200 for c in CALLERS})},
    "/health": {"GET": Case({c: 200 for c in CALLERS})},
    "/version": {"GET": Case(platform(200, EVERYONE))},
    "/whoami": {"GET": Case(platform(200, EVERYONE))},
    "/openapi.json": {"GET": Case(platform(200, EVERYONE))},
    "/projects": {
        "GET": Case(platform(200, EVERYONE)),
        "POST": Case(platform(201, EVERYONE), body=lambda ctx: {"slug": ctx.unique("new")}),
    },
    "/projects/{project}": {
        "GET": Case(only(200, VIEWER_UP)),
        "PATCH": Case(only(200, MAINTAINER_UP), body=lambda ctx: {"description": "updated"}),
    },
    "/projects/{project}/archive": {"POST": Case(only(200, OWNER_UP), cleanup=_unarchive)},
    "/projects/{project}/unarchive": {"POST": Case(only(200, OWNER_UP))},
    "/projects/{project}/members": {
        "GET": Case(only(200, VIEWER_UP)),
        "POST": Case(only(201, OWNER_UP), body=lambda ctx: {"kind": "user", "name": ctx.unique("u"), "role": "viewer"}),
    },
    "/projects/{project}/members/{kind}/{name}": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_member),
        "PUT": Case(only(200, OWNER_UP), setup=_new_member, body=lambda ctx: {"role": "contributor"}),
        "DELETE": Case(only(204, OWNER_UP), setup=_new_member),
    },
    "/projects/{project}/audit/events": {"GET": Case(only(200, OWNER_UP))},
    "/projects/{project}/experiments": {
        "GET": Case(only(200, VIEWER_UP)),
        "POST": Case(only(201, CONTRIBUTOR_UP), body=lambda ctx: {"name": ctx.unique("exp")}),
    },
    "/projects/{project}/experiments/{experiment_id}": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_experiment),
        "PATCH": Case(only(200, CONTRIBUTOR_UP), setup=_new_experiment, body=lambda ctx: {"description": "d"}),
        "DELETE": Case(only(204, CONTRIBUTOR_UP), setup=_new_experiment),
    },
    "/projects/{project}/experiments/{experiment_id}/restore": {
        "POST": Case(only(200, CONTRIBUTOR_UP), setup=_new_experiment)
    },
    "/projects/{project}/runs": {
        "GET": Case(only(200, VIEWER_UP)),
        "POST": Case(only(201, CONTRIBUTOR_UP), body=lambda ctx: {"name": "r"}),
    },
    "/projects/{project}/runs/compare": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_run, params=lambda ctx, v: {"run_id": v["run_id"]}),
    },
    "/projects/{project}/runs/{run_id}": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_run),
        "PATCH": Case(only(200, CONTRIBUTOR_UP), setup=_new_run, body=lambda ctx: {"name": "renamed"}),
        "DELETE": Case(only(204, CONTRIBUTOR_UP), setup=_new_run),
    },
    "/projects/{project}/runs/{run_id}/restore": {"POST": Case(only(200, CONTRIBUTOR_UP), setup=_new_run)},
    "/projects/{project}/runs/{run_id}/log-batch": {
        "POST": Case(
            only(200, CONTRIBUTOR_UP), setup=_new_run, body=lambda ctx: {"metrics": [{"key": "x", "value": 1}]}
        ),
    },
    "/projects/{project}/runs/{run_id}/tags": {
        "DELETE": Case(only(204, CONTRIBUTOR_UP), setup=_new_run, params=lambda ctx, v: {"key": "t"}),
    },
    "/projects/{project}/runs/{run_id}/metric-history": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_run, params=lambda ctx, v: {"key": "m"}),
    },
    "/projects/{project}/runs/{run_id}/artifacts": {"GET": Case(only(200, VIEWER_UP), setup=_new_run)},
    "/projects/{project}/runs/{run_id}/artifacts/upload": {
        "POST": Case(
            only(200, CONTRIBUTOR_UP),
            setup=_new_run,
            body=lambda ctx: {"files": [{"path": "f", "sha256": "0" * 64, "size": 1}]},
        ),
    },
    "/projects/{project}/runs/{run_id}/artifacts/commit": {
        # nothing was uploaded: members who may write get the 409 that says so
        "POST": Case(
            only(409, CONTRIBUTOR_UP),
            setup=_new_run,
            body=lambda ctx: {"files": [{"path": "f", "sha256": "0" * 64, "size": 1}]},
        ),
    },
    "/projects/{project}/runs/{run_id}/artifacts/download": {
        # no such artifact: members who may read get the 404 that says so
        "GET": Case(only(404, VIEWER_UP, refused_member=404), setup=_new_run, params=lambda ctx, v: {"path": "nope"}),
    },
    "/projects/{project}/runs/{run_id}/inputs": {
        "POST": Case(
            only(200, CONTRIBUTOR_UP), setup=_new_run, body=lambda ctx: {"datasets": [{"name": "d", "digest": "abc"}]}
        ),
    },
    "/projects/{project}/datasets": {
        "GET": Case(only(200, VIEWER_UP)),
        "POST": Case(only(201, CONTRIBUTOR_UP), body=lambda ctx: {"name": ctx.unique("ds")}),
    },
    "/projects/{project}/datasets/{dataset}": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_dataset),
        "PATCH": Case(only(200, CONTRIBUTOR_UP), setup=_new_dataset, body=lambda ctx: {"description": "d"}),
    },
    "/projects/{project}/datasets/{dataset}/access": {
        "PUT": Case(only(200, MAINTAINER_UP), setup=_new_dataset, body=lambda ctx: {"reader_groups": []}),
    },
    "/projects/{project}/datasets/{dataset}/versions": {"GET": Case(only(200, VIEWER_UP), setup=_new_dataset)},
    "/projects/{project}/datasets/{dataset}/versions/{version}": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_dataset),
        "DELETE": Case(only(204, OWNER_UP), setup=_new_dataset),
    },
    "/projects/{project}/datasets/{dataset}/versions/{version}/files": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_dataset, params=lambda ctx, v: {"urls": "true"}),
    },
    "/projects/{project}/datasets/{dataset}/versions/{version}/download": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_dataset, params=lambda ctx, v: {"path": "f.txt"}),
    },
    "/projects/{project}/datasets/{dataset}/versions/{version}/schema": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_dataset),
    },
    "/projects/{project}/datasets/{dataset}/diff": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_dataset, params=lambda ctx, v: {"from": "1", "to": "latest"}),
    },
    "/projects/{project}/datasets/{dataset}/uploads": {
        "POST": Case(only(201, CONTRIBUTOR_UP), setup=_new_dataset, body=lambda ctx: DS_FILES),
    },
    # uploads are private to who started them (here the owner) and to maintainers and up:
    # a contributor who may write gets the 404 of an upload it cannot see
    "/projects/{project}/datasets/{dataset}/uploads/{upload_id}": {
        "GET": Case({**only(200, MAINTAINER_UP), "contributor": 404, "viewer": 404}, setup=_new_upload),
        "DELETE": Case({**only(204, MAINTAINER_UP), "contributor": 404}, setup=_new_upload),
    },
    "/projects/{project}/datasets/{dataset}/uploads/{upload_id}/files": {
        "POST": Case(
            {**only(200, MAINTAINER_UP), "contributor": 404},
            setup=_new_upload,
            body=lambda ctx: {"files": [{"path": ctx.unique("g"), "sha256": "1" * 64, "size": 1}]},
        ),
    },
    "/projects/{project}/datasets/{dataset}/uploads/{upload_id}/missing": {
        "GET": Case({**only(200, MAINTAINER_UP), "contributor": 404}, setup=_new_upload),
    },
    "/projects/{project}/datasets/{dataset}/uploads/{upload_id}/commit": {
        # nothing was uploaded: callers who may commit get the 409 that says so
        "POST": Case({**only(409, MAINTAINER_UP), "contributor": 404}, setup=_new_upload),
    },
    # no external source is configured on this stack: callers who may write get the 422 that says so
    "/projects/{project}/datasets/{dataset}/imports": {
        "POST": Case(
            only(422, CONTRIBUTOR_UP),
            setup=_new_dataset,
            body=lambda ctx: {"source": "lake", "uri": "s3://lake/x/", "mode": "reference"},
        ),
    },
    "/projects/{project}/datasets/{dataset}/uploads/{upload_id}/sources": {
        "GET": Case({**only(200, MAINTAINER_UP), "contributor": 404}, setup=_new_upload),
    },
    "/projects/{project}/datasets/{dataset}/versions/{version}/verify": {
        "GET": Case(only(200, VIEWER_UP), setup=_new_dataset),
    },
    "/projects/{project}/external-sources": {"GET": Case(only(200, VIEWER_UP))},
    "/audit/events": {"GET": Case(platform(200, ADMIN))},
    "/audit/head": {"GET": Case(platform(200, ADMIN))},
    "/role-mappings": {
        "GET": Case(platform(200, ADMIN)),
        "POST": Case(
            platform(201, ADMIN), body=lambda ctx: {"group_pattern": ctx.unique("grp") + "-{project}", "role": "viewer"}
        ),
    },
    "/role-mappings/{rule_id}": {"DELETE": Case(platform(204, ADMIN), setup=_new_rule)},
    # the catch-all: unknown API paths answer 404 to anyone authenticated
    "/(.*)": {
        m: Case(platform(404, EVERYONE), extra={"path": "/no/such/route"})
        for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
    },
}


# --- service accounts ---------------------------------------------------------------


def _new_service_account(ctx: Any, values: dict) -> dict:
    name = ctx.unique("sa")
    r = ctx.api(
        "POST", f"/projects/{ctx.project}/service-accounts", ctx.tokens["owner"], json={"name": name, "role": "viewer"}
    )
    assert r.status_code == 201, r.text
    return {"name": name}


def _new_service_account_token(ctx: Any, values: dict) -> dict:
    name = _new_service_account(ctx, values)["name"]
    r = ctx.api(
        "POST", f"/projects/{ctx.project}/service-accounts/{name}/tokens", ctx.tokens["owner"], json={"expires_in": 600}
    )
    assert r.status_code == 201, r.text
    return {"name": name, "prefix": r.json()["prefix"]}


EXPECTED.update(
    {
        "/projects/{project}/service-accounts": {
            "GET": Case(only(200, VIEWER_UP)),
            "POST": Case(only(201, MAINTAINER_UP), body=lambda ctx: {"name": ctx.unique("sa"), "role": "viewer"}),
        },
        "/projects/{project}/service-accounts/{name}": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_service_account),
            "PATCH": Case(only(200, MAINTAINER_UP), setup=_new_service_account, body=lambda ctx: {"description": "d"}),
            "DELETE": Case(only(204, MAINTAINER_UP), setup=_new_service_account),
        },
        "/projects/{project}/service-accounts/{name}/tokens": {
            "GET": Case(only(200, MAINTAINER_UP), setup=_new_service_account),
            "POST": Case(only(201, MAINTAINER_UP), setup=_new_service_account, body=lambda ctx: {"expires_in": 600}),
        },
        "/projects/{project}/service-accounts/{name}/tokens/{prefix}": {
            "DELETE": Case(only(204, MAINTAINER_UP), setup=_new_service_account_token),
        },
    }
)

# --- webhooks ---------------------------------------------------------------------------------


def _hook_body(ctx: Any) -> dict:
    # port 9 (discard) refuses connections: deliveries stay pending, retried in the background
    return {"url": f"http://127.0.0.1:9/{ctx.unique('h')}", "event_types": ["RunFinished"]}


def _new_webhook(ctx: Any, values: dict) -> dict:
    r = ctx.api("POST", f"/projects/{ctx.project}/webhooks", ctx.tokens["owner"], json=_hook_body(ctx))
    assert r.status_code == 201, r.text
    return {"webhook_id": str(r.json()["id"])}


def _new_delivery(ctx: Any, values: dict) -> dict:
    hook = _new_webhook(ctx, values)
    r = ctx.api("POST", f"/projects/{ctx.project}/webhooks/{hook['webhook_id']}/ping", ctx.tokens["owner"])
    assert r.status_code == 202, r.text
    return {**hook, "delivery_id": str(r.json()["id"])}


# --- sessions and forced logout ------------------------------------------------------


def _hub_user(ctx: Any, values: dict) -> dict:
    name = ctx.unique("person")
    assert ctx.stack.hub("POST", f"/users/{name}").status_code == 201
    return {"name": name}


EXPECTED.update(
    {
        "/event-types": {"GET": Case(platform(200, EVERYONE))},
        "/projects/{project}/webhooks": {
            "GET": Case(only(200, MAINTAINER_UP)),
            "POST": Case(only(201, MAINTAINER_UP), body=_hook_body),
        },
        "/projects/{project}/webhooks/{webhook_id}": {
            "GET": Case(only(200, MAINTAINER_UP), setup=_new_webhook),
            "PATCH": Case(only(200, MAINTAINER_UP), setup=_new_webhook, body=lambda ctx: {"description": "d"}),
            "DELETE": Case(only(204, MAINTAINER_UP), setup=_new_webhook),
        },
        "/projects/{project}/webhooks/{webhook_id}/ping": {"POST": Case(only(202, MAINTAINER_UP), setup=_new_webhook)},
        "/projects/{project}/webhooks/{webhook_id}/deliveries": {
            "GET": Case(only(200, MAINTAINER_UP), setup=_new_webhook),
        },
        "/projects/{project}/webhooks/{webhook_id}/deliveries/{delivery_id}": {
            "GET": Case(only(200, MAINTAINER_UP), setup=_new_delivery),
        },
        # the ping is still being retried: callers who may redeliver get the 409 that says so
        "/projects/{project}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver": {
            "POST": Case(only(409, MAINTAINER_UP), setup=_new_delivery),
        },
        "/users/{name}/sessions": {"GET": Case(platform(200, ADMIN), setup=_hub_user)},
        "/users/{name}/logout": {
            "POST": Case(platform(200, ADMIN), setup=_hub_user, body=lambda ctx: {"reason": "rbac matrix"})
        },
    }
)


# --- workspace SSH ----------------------------------------------------------------------------


def _ssh_public_key(ctx: Any) -> dict:
    import asyncssh

    return {"public_key": asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()}


def _owners_ssh_key(ctx: Any, values: dict) -> dict:
    """A key of the owner's: everyone else gets the 404 of a key that is not theirs."""
    r = ctx.api("POST", "/users/me/ssh-keys", ctx.tokens["owner"], json=_ssh_public_key(ctx))
    assert r.status_code == 201, r.text
    return {"key_id": str(r.json()["id"])}


OWNER_ONLY_KEY = {"anonymous": 401, **{c: 404 for c in CALLERS[1:]}, "owner": None}

EXPECTED.update(
    {
        "/users/me/ssh-keys": {
            "GET": Case(platform(200, EVERYONE)),
            "POST": Case(platform(201, EVERYONE), body=_ssh_public_key),
        },
        "/users/me/ssh-keys/{key_id}": {
            "GET": Case({**OWNER_ONLY_KEY, "owner": 200}, setup=_owners_ssh_key),
            "DELETE": Case({**OWNER_ONLY_KEY, "owner": 204}, setup=_owners_ssh_key),
        },
        # only the SSH gateway service (animus-ssh) may ask and report
        "/ssh/authorize": {
            "POST": Case(
                platform(200, set()),
                body=lambda ctx: {
                    "user": "u",
                    "project": ctx.project,
                    "public_key": _ssh_public_key(ctx)["public_key"],
                },
            )
        },
        "/ssh/events": {"POST": Case(platform(200, set()), body=lambda ctx: {"event": "login", "user": "u"})},
    }
)


# --- model registry ---------------------------------------------------------------------------


def _new_model(ctx: Any, values: dict) -> dict:
    name = ctx.unique("m")
    r = ctx.api("POST", f"/projects/{ctx.project}/models", ctx.tokens["owner"], json={"name": name})
    assert r.status_code == 201, r.text
    return {"model": name}


def _run_with_artifact(ctx: Any) -> str:
    """A run with one content-addressed artifact, m.bin (its blob uploaded through the presigned URL)."""
    import hashlib

    import requests

    run_id = _new_run(ctx, {})["run_id"]
    data = b"model-bytes"
    files = {"files": [{"path": "m.bin", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}]}
    base = f"/projects/{ctx.project}/runs/{run_id}/artifacts"
    for item in ctx.api("POST", base + "/upload", ctx.tokens["owner"], json=files).json()["uploads"]:
        assert requests.put(item["url"], data=data, headers=item["headers"], timeout=30).status_code < 300
    assert ctx.api("POST", base + "/commit", ctx.tokens["owner"], json=files).status_code == 200
    return run_id


def _new_model_and_run(ctx: Any, values: dict) -> dict:
    return {**_new_model(ctx, values), "run_id": _run_with_artifact(ctx)}


def _new_model_version(ctx: Any, values: dict) -> dict:
    v = _new_model_and_run(ctx, values)
    r = ctx.api(
        "POST",
        f"/projects/{ctx.project}/models/{v['model']}/versions",
        ctx.tokens["owner"],
        json={"run_id": v["run_id"], "path": "m.bin", "aliases": ["a"]},
    )
    assert r.status_code == 201, r.text
    return {"model": v["model"], "version": "1", "alias": "a"}


def _new_policy_version(ctx: Any, values: dict) -> dict:
    r = ctx.api("PUT", f"/projects/{ctx.project}/promotion-policy", ctx.tokens["owner"], json=_policy_body(ctx))
    assert r.status_code == 201, r.text
    return {"policy_version": str(r.json()["version"])}


def _policy_body(ctx: Any) -> dict:
    # every transition keeps its built-in default: later cases see the same rules
    return {"source": "version: 1\ntransitions: {}\n"}


EXPECTED.update(
    {
        "/projects/{project}/models": {
            "GET": Case(only(200, VIEWER_UP)),
            "POST": Case(only(201, CONTRIBUTOR_UP), body=lambda ctx: {"name": ctx.unique("m")}),
        },
        "/projects/{project}/models/{model}": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_model),
            "PATCH": Case(only(200, CONTRIBUTOR_UP), setup=_new_model, body=lambda ctx: {"description": "d"}),
        },
        "/projects/{project}/models/{model}/history": {"GET": Case(only(200, VIEWER_UP), setup=_new_model)},
        "/projects/{project}/models/{model}/aliases/{alias}": {
            "PUT": Case(only(200, CONTRIBUTOR_UP), setup=_new_model_version, body=lambda ctx: {"version": 1}),
            "DELETE": Case(only(204, CONTRIBUTOR_UP), setup=_new_model_version),
        },
        "/projects/{project}/models/{model}/versions": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_model),
            "POST": Case(
                only(201, CONTRIBUTOR_UP),
                setup=_new_model_and_run,
                extra={"body_from_values": lambda v: {"run_id": v["run_id"], "path": "m.bin"}},
            ),
        },
        "/projects/{project}/models/{model}/versions/{version}": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_model_version),
        },
        # the built-in policy lets contributors and up validate a draft
        "/projects/{project}/models/{model}/versions/{version}/transitions": {
            "POST": Case(only(200, CONTRIBUTOR_UP), setup=_new_model_version, body=lambda ctx: {"to": "validated"}),
        },
        # nothing was requested: members who may approve get the 409 that says so
        "/projects/{project}/models/{model}/versions/{version}/approvals": {
            "POST": Case(only(409, CONTRIBUTOR_UP), setup=_new_model_version, body=lambda ctx: {}),
        },
        "/projects/{project}/models/{model}/versions/{version}/history": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_model_version),
        },
        "/projects/{project}/models/{model}/versions/{version}/actions": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_model_version),
        },
        # a draft is not exported without force: members who may export get the 409 that says so
        "/projects/{project}/models/{model}/versions/{version}/exports": {
            "POST": Case(only(409, CONTRIBUTOR_UP), setup=_new_model_version, body=lambda ctx: {"format": "oci"}),
        },
        "/projects/{project}/models/{model}/versions/{version}/exports/{export_id}/manifest": {
            "POST": Case(
                only(404, CONTRIBUTOR_UP),
                setup=lambda ctx, v: {**_new_model_version(ctx, v), "export_id": "0"},
                body=lambda ctx: {"size": 1},
            ),
        },
        "/projects/{project}/export-targets": {"GET": Case(only(200, VIEWER_UP))},
        "/projects/{project}/promotion-policy": {
            "GET": Case(only(200, VIEWER_UP)),
            "PUT": Case(only(201, OWNER_UP), body=_policy_body),
        },
        "/projects/{project}/promotion-policy/versions": {"GET": Case(only(200, VIEWER_UP))},
        "/projects/{project}/promotion-policy/versions/{policy_version}": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_policy_version),
        },
        "/projects/{project}/lineage": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_run, params=lambda ctx, v: {"node": f"run:{v['run_id']}"}),
        },
    }
)


# --- environments and batch runs ----------------------------------------------------------------


def _new_environment(ctx: Any, values: dict) -> dict:
    name = ctx.unique("env")
    r = ctx.api("POST", f"/projects/{ctx.project}/environments", ctx.tokens["owner"], json={"name": name})
    assert r.status_code == 201, r.text
    r = ctx.api(
        "POST", f"/projects/{ctx.project}/environments/{name}/versions", ctx.tokens["owner"], json={"image": "py:3.11"}
    )
    assert r.status_code == 201, r.text
    return {"environment": name, "version": "1"}


NOBODY: set[str] = set()
# a file:// repository is refused before any git runs: callers who may submit get that 422
_SUBMIT = {"repo": "file:///etc", "commit": "0" * 40, "command": ["true"]}

EXPECTED.update(
    {
        "/projects/{project}/environments": {
            "GET": Case(only(200, VIEWER_UP)),
            "POST": Case(only(201, CONTRIBUTOR_UP), body=lambda ctx: {"name": ctx.unique("env")}),
        },
        "/projects/{project}/environments/{environment}": {"GET": Case(only(200, VIEWER_UP), setup=_new_environment)},
        "/projects/{project}/environments/{environment}/versions": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_environment),
            "POST": Case(only(201, CONTRIBUTOR_UP), setup=_new_environment, body=lambda ctx: {"image": "py:3.12"}),
        },
        "/projects/{project}/environments/{environment}/versions/{version}": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_environment),
        },
        "/projects/{project}/runs/submit": {"POST": Case(only(422, CONTRIBUTOR_UP), body=lambda ctx: _SUBMIT)},
        # an interactive run is not a batch run: callers who may act on it get the 409 that says so
        "/projects/{project}/runs/{run_id}/job": {"GET": Case(only(409, VIEWER_UP), setup=_new_run)},
        "/projects/{project}/runs/{run_id}/cancel": {"POST": Case(only(409, CONTRIBUTOR_UP), setup=_new_run)},
        "/projects/{project}/runs/{run_id}/logs": {
            "GET": Case(only(409, VIEWER_UP), setup=_new_run),
            # only the run's own runner (a run token) may append output or report: people get 403
            "POST": Case(only(403, NOBODY), setup=_new_run, body=lambda ctx: {"attempt": 1, "text": "x"}),
        },
        "/projects/{project}/runs/{run_id}/report": {
            "POST": Case(only(403, NOBODY), setup=_new_run, body=lambda ctx: {"attempt": 1, "state": "heartbeat"}),
        },
    }
)


def _new_pipeline(ctx: Any, values: dict) -> dict:
    """A running pipeline run, written straight to the database (no git server needed).

    Its one step is running without a run to wait for, so the scheduler leaves the
    pipeline active (a pipeline without steps would finish at the scheduler's next
    round, before a cancel could reach it on a loaded machine).
    """
    from sqlalchemy import select

    from animus_hub import db as dbmod
    from animus_hub.orm import PipelineRun, PipelineStep, Project

    with dbmod.make_session_factory(dbmod.make_engine(ctx.stack.db_url))() as db:
        project = db.scalar(select(Project).where(Project.slug == ctx.project))
        p = PipelineRun(
            project_id=project.id,
            spec_digest="sha256:" + "0" * 64,
            created_by="rbac",
            status="running",
            spec={"steps": {"hold": {"needs": [], "outputs": []}}},
        )
        db.add(p)
        db.flush()
        db.add(PipelineStep(pipeline_run_id=p.id, project_id=project.id, name="hold", position=0, status="running"))
        db.commit()
        return {"pipeline_id": p.id}


# a spec that fails the schema: callers who may submit get that 422, before any git runs
_PIPELINE = {"spec": "version: 2\nsteps: {}\n", "repo": "file:///etc", "commit": "0" * 40}

EXPECTED.update(
    {
        "/projects/{project}/pipelines": {
            "GET": Case(only(200, VIEWER_UP)),
            "POST": Case(only(422, CONTRIBUTOR_UP), body=lambda ctx: _PIPELINE),
        },
        "/projects/{project}/pipelines/{pipeline_id}": {"GET": Case(only(200, VIEWER_UP), setup=_new_pipeline)},
        "/projects/{project}/pipelines/{pipeline_id}/cancel": {
            "POST": Case(only(200, CONTRIBUTOR_UP), setup=_new_pipeline)
        },
        # an interactive run cannot be reproduced: callers who may act on it get the 409 that says so
        "/projects/{project}/runs/{run_id}/reproduce": {"POST": Case(only(409, CONTRIBUTOR_UP), setup=_new_run)},
        "/projects/{project}/runs/{run_id}/artifact-diff": {
            "GET": Case(only(200, VIEWER_UP), setup=_new_run, params=lambda ctx, values: {"other": values["run_id"]})
        },
    }
)


# --- secrets and "who can access X and why" ----------------------------------------------------


def _secret_value(ctx: Any) -> dict:
    import secrets as pysecrets

    import leakscan

    return {"value": leakscan.register("matrix-" + pysecrets.token_hex(12))}


def _new_secret(ctx: Any, values: dict) -> dict:
    name = ctx.unique("sec")
    r = ctx.api("PUT", f"/projects/{ctx.project}/secrets/{name}", ctx.tokens["owner"], json=_secret_value(ctx))
    assert r.status_code == 201, r.text
    return {"name": name}


EXPECTED.update(
    {
        # contributors see names (they can use a secret in a run anyway); maintainers set and delete
        "/projects/{project}/secrets": {"GET": Case(only(200, CONTRIBUTOR_UP))},
        "/projects/{project}/secrets/{name}": {
            "GET": Case(only(200, CONTRIBUTOR_UP), setup=_new_secret),
            "PUT": Case(only(201, MAINTAINER_UP), setup=lambda ctx, v: {"name": ctx.unique("sec")}, body=_secret_value),
            "DELETE": Case(only(204, MAINTAINER_UP), setup=_new_secret),
        },
        # only the run's own runner (a run token) fetches its secrets: people get 403
        "/projects/{project}/runs/{run_id}/secrets": {
            "POST": Case(only(403, NOBODY), setup=_new_run, body=lambda ctx: {"attempt": 1})
        },
        # everyone in the project may ask about themselves (principal=...); the listing needs maintainer
        "/projects/{project}/access": {"GET": Case(only(200, MAINTAINER_UP))},
        # the hub's spawner asks before a project's workspace starts: every member may open it
        "/projects/{project}/workspaces/open": {"POST": Case(only(200, VIEWER_UP), body=lambda ctx: {})},
    }
)


def served_routes() -> list[tuple[str, type[APIHandler]]]:
    """The routes the application serves, as templates relative to the API prefix."""
    app = AnimusAPI()
    prefix = app.base_url + "api/v1"
    out = []
    for pattern, cls, _ in app.make_handlers():
        if pattern.rstrip("?") == app.base_url:
            out.append(("ROOT", cls))
            continue
        if pattern.startswith(app.base_url + "mlflow"):
            continue  # the MLflow protocol layer: tests/test_mlflow_protocol.py covers its authorisation
        assert pattern.startswith(prefix), pattern
        rel = pattern[len(prefix) :]
        rel = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", rel)
        rel = "/(.*)" if rel == "(?:/.*)?" else rel
        out.append((rel, cls))
    return out


def implemented_methods(cls: type) -> set[str]:
    return {m.upper() for m in HTTP_METHODS if getattr(cls, m) is not getattr(RequestHandler, m)}


def test_every_served_route_and_method_has_an_expected_status_for_every_caller():
    missing = []
    for route, cls in served_routes():
        for method in sorted(implemented_methods(cls)):
            case = EXPECTED.get(route, {}).get(method)
            if case is None:
                missing.append(f"{method} {route} ({cls.__name__})")
            elif set(case.expected) != set(CALLERS):
                missing.append(f"{method} {route}: callers {set(CALLERS) - set(case.expected)}")
    assert not missing, "routes without an authorisation expectation in EXPECTED: " + ", ".join(missing)
    served = {(r, m) for r, cls in served_routes() for m in implemented_methods(cls)}
    declared = {(r, m) for r, methods in EXPECTED.items() for m in methods}
    assert declared <= served, f"EXPECTED names routes the app does not serve: {declared - served}"


def test_every_implemented_method_declares_an_authorisation_action():
    for route, cls in served_routes():
        assert implemented_methods(cls) == set(cls.actions), (
            f"{cls.__name__} ({route}) implements {sorted(implemented_methods(cls))} "
            f"but declares actions for {sorted(cls.actions)}"
        )


class Ctx:
    def __init__(self, stack, unique):
        self.stack = stack
        self.unique = unique
        self.api = stack.api
        self.tokens: dict[str, str | None] = {"anonymous": None}


@pytest.fixture(scope="module")
def ctx(stack, unique):
    c = Ctx(stack, unique)
    c.project = unique("alpha")
    other = unique("beta")
    for caller in ["owner", "viewer", "contributor", "maintainer", "outsider"]:
        c.tokens[caller] = stack.user_token(unique(caller))
    c.names = {}
    for caller in ["owner", "viewer", "contributor", "maintainer", "outsider"]:
        c.names[caller] = stack.api("GET", "/whoami", c.tokens[caller]).json()["name"]
    c.tokens["admin"] = stack.user_token(unique("admin"), admin=True)
    assert stack.api("POST", "/projects", c.tokens["owner"], json={"slug": c.project}).status_code == 201
    assert stack.api("POST", "/projects", c.tokens["outsider"], json={"slug": other}).status_code == 201
    for role in ["viewer", "contributor", "maintainer"]:
        r = stack.api(
            "POST",
            f"/projects/{c.project}/members",
            c.tokens["owner"],
            json={"kind": "user", "name": c.names[role], "role": role},
        )
        assert r.status_code == 201, r.text
    return c


def _path(route: str, ctx: Ctx, values: dict, case: Case) -> str:
    if route == "ROOT":
        return None  # type: ignore[return-value]
    if "path" in case.extra:
        return case.extra["path"]
    return route.format(project=ctx.project, **values)


def test_route_role_matrix(ctx):
    failures = []
    denials = []
    for route, methods in EXPECTED.items():
        for method, case in methods.items():
            for caller in CALLERS:
                values = case.setup(ctx, {}) if case.setup else {}
                body = case.body(ctx) if case.body else None
                if "body_from_values" in case.extra:
                    body = case.extra["body_from_values"](values)
                token = ctx.tokens[caller]
                if route == "ROOT":
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    r = ctx.stack.http.request(method, ctx.stack.url + "/services/animus/", headers=headers, timeout=30)
                    path = "/services/animus/"
                else:
                    path = _path(route, ctx, values, case)
                    params = case.params(ctx, values) if case.params else None
                    r = ctx.api(method, path, token, json=body, params=params)
                want = case.expected[caller]
                if r.status_code != want:
                    failures.append(
                        f"{method} {route} as {caller}: got {r.status_code}, expected {want}: {r.text[:200]}"
                    )
                elif r.status_code >= 400:
                    err = r.json()
                    assert set(err) == {"status", "reason", "message", "details"} and err["status"] == want
                    if want in (401, 403) or (want == 404 and caller == "outsider" and "{project}" in route):
                        denials.append((caller, method, path))
                if case.cleanup and r.status_code < 300:
                    case.cleanup(ctx, values)
    assert not failures, "\n".join(failures)
    # every denial is in the audit trail, with outcome "denied"
    denied = ctx.api("GET", "/audit/events", ctx.tokens["admin"], params={"outcome": "denied", "limit": 5000}).json()[
        "items"
    ]
    seen = {(e["actor"] or "", e["details"].get("method"), e["resource"]) for e in denied}
    name_of = {**ctx.names, "anonymous": "", "admin": None}
    missing = [
        d
        for d in denials
        if (name_of.get(d[0]) or "", d[1], "/services/animus/api/v1" + d[2]) not in seen and d[0] != "admin"
    ]
    assert not missing, f"denied requests not audited: {missing[:10]}"


# --- a workspace's token, bound to another project ------------------------------------------------

# platform routes a workspace's token may not use although its person may: creating a project (the
# token could not act in it) and platform administration (an admin's workspace would reach everything)
BOUND_REFUSED = {
    ("/projects", "POST"),
    ("/audit/events", "GET"),
    ("/audit/head", "GET"),
    ("/role-mappings", "GET"),
    ("/role-mappings", "POST"),
    ("/role-mappings/{rule_id}", "DELETE"),
    ("/users/{name}/sessions", "GET"),
    ("/users/{name}/logout", "POST"),
}


def _workspace_token(ctx: Ctx, user: str, server: str) -> str:
    """A token with the server scopes the hub gives the workspace `server` of `user`."""
    scopes = [f"access:servers!server={user}/{server}", "access:services!service=animus"]
    r = ctx.stack.hub("POST", f"/users/{user}/tokens", json={"scopes": scopes, "expires_in": 3600})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_a_workspace_token_of_another_project_gets_404_on_every_project_route(ctx):
    """The owner's and an admin's workspace tokens for another project: every route of this project
    answers the 404 a non-member gets, audited as a denial; outside projects each may do what its
    person may, except BOUND_REFUSED."""
    elsewhere = ctx.unique("elsewhere")
    names = {"owner": ctx.names["owner"], "admin": ctx.api("GET", "/whoami", ctx.tokens["admin"]).json()["name"]}
    bound = {who: _workspace_token(ctx, name, elsewhere) for who, name in names.items()}
    failures = []
    denials = []
    for route, methods in EXPECTED.items():
        if route in ("ROOT", "/health"):
            continue  # public
        for method, case in methods.items():
            values = case.setup(ctx, {}) if case.setup else {}
            path = _path(route, ctx, values, case)
            params = case.params(ctx, values) if case.params else None
            for who, token in bound.items():
                body = case.body(ctx) if case.body else None
                if "body_from_values" in case.extra:
                    body = case.extra["body_from_values"](values)
                r = ctx.api(method, path, token, json=body, params=params)
                in_project = "{project}" in route
                person_may = case.expected[who] < 400
                if in_project:
                    want, reason = 404, "project_not_found"
                elif (route, method) in BOUND_REFUSED:
                    want, reason = 403, "token_bound_to_project" if person_may else "forbidden"
                else:
                    want, reason = case.expected[who], None
                got = r.json().get("reason") if r.status_code >= 400 else None
                if r.status_code != want or (reason and got != reason):
                    failures.append(
                        f"{method} {route} as {who}'s workspace token: got {r.status_code} {got}, expected {want} "
                        f"{reason}: {r.text[:200]}"
                    )
                elif in_project:
                    denials.append((names[who], method, path))
                if case.cleanup and r.status_code < 300:
                    case.cleanup(ctx, values)
    assert not failures, "\n".join(failures)
    denied = ctx.api("GET", "/audit/events", ctx.tokens["admin"], params={"outcome": "denied", "limit": 5000}).json()[
        "items"
    ]
    seen = {
        (e["actor"], e["details"].get("method"), e["resource"])
        for e in denied
        if e["details"].get("workspace_project") == elsewhere
    }
    missing = [d for d in denials if (d[0], d[1], "/services/animus/api/v1" + d[2]) not in seen]
    assert not missing, f"denied requests not audited: {missing[:10]}"
