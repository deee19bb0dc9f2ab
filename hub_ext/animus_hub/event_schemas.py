"""JSON Schemas (2020-12) of the webhook payloads, one per event type.

Every delivery body is the same envelope — ``id`` (the event id, the idempotency key),
``type``, ``created_at``, ``project`` and ``data`` — and ``data`` depends on the type.
Served by ``GET /event-types`` and listed in docs/reference/webhook-events.md;
``tests/test_webhooks.py`` validates every event the stack emits against them.
Fields may be added to ``data`` in later versions (receivers ignore what they do not
know); fields are not removed or changed within API v1.
"""

from __future__ import annotations

from typing import Any

from .events import EVENT_TYPES

DRAFT = "https://json-schema.org/draft/2020-12/schema"

_str = {"type": "string"}
_nullable_str = {"type": ["string", "null"]}
_time = {"type": "string", "format": "date-time"}
_nullable_time = {"type": ["string", "null"], "format": "date-time"}
_count = {"type": "integer", "minimum": 0}
_model_status = {"type": "string", "enum": ["draft", "validated", "approved", "deprecated"]}


def _data(description: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": True,
    }


# event type → (what it means, the schema of its `data`)
DATA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ProjectCreated": _data("A project was created.", {"created_by": _str}),
    "ProjectArchived": _data("A project was archived (read-only).", {"by": _str}),
    "ProjectUnarchived": _data("An archived project was made writable again.", {"by": _str}),
    "RunFinished": _data(
        "A run reached a terminal status (succeeded, failed or cancelled).",
        {
            "run_id": _str,
            "experiment_id": _str,
            "status": {"type": "string", "enum": ["succeeded", "failed", "cancelled"]},
            "start_time": _nullable_time,
            "end_time": _time,
            "user": _str,
        },
    ),
    "DatasetVersionCreated": _data(
        "A dataset version was committed (it is immutable from now on).",
        {
            "dataset": _str,
            "version": {"type": "integer", "minimum": 1},
            "digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
            "file_count": _count,
            "total_size": _count,
            "produced_by_run_id": _nullable_str,
            "user": _str,
        },
    ),
    "ModelApproved": _data(
        "A model version was approved (under the project's promotion policy).",
        {
            "model": _str,
            "version": {"type": "integer", "minimum": 1},
            "run_id": _nullable_str,
            "by": _str,
            "reason": _str,
            "requested_by": _str,
            "approvers": {"type": "array", "items": _str},
            "policy_version": {"type": ["integer", "null"]},
            "break_glass": {"type": "boolean"},
            "digest": _str,
        },
        required=["model", "version"],
    ),
    "ModelVersionStatusChanged": _data(
        "A model version moved between statuses (draft → validated → approved → deprecated, or back to draft).",
        {
            "model": _str,
            "version": {"type": "integer", "minimum": 1},
            "from_status": _model_status,
            "to_status": _model_status,
            "by": _str,
            "reason": _str,
            "run_id": _nullable_str,
            "policy_version": {"type": ["integer", "null"]},
            "break_glass": {"type": "boolean"},
            "digest": _str,
        },
        required=["model", "version", "to_status"],
    ),
    "Ping": _data(
        "A test event sent by `POST .../webhooks/{id}/ping`, to this webhook only.",
        {"webhook_id": {"type": "integer"}, "requested_by": _str},
    ),
}

assert set(DATA_SCHEMAS) == set(EVENT_TYPES) | {"Ping"}, "every event type needs a payload schema"


def event_schema(event_type: str) -> dict[str, Any]:
    """The schema of a whole delivery body of `event_type`."""
    data = DATA_SCHEMAS[event_type]
    return {
        "$schema": DRAFT,
        "title": f"Animus webhook: {event_type}",
        "description": data["description"],
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "The event id: dedupe on it (idempotency key)."},
            "type": {"const": event_type},
            "created_at": {**_time, "description": "When the change happened (UTC)."},
            "project": {**_nullable_str, "description": "The project's slug."},
            "data": {k: v for k, v in data.items() if k != "description"},
        },
        "required": ["id", "type", "created_at", "project", "data"],
        "additionalProperties": False,
    }


def all_schemas() -> list[dict[str, Any]]:
    return [
        {"type": t, "description": DATA_SCHEMAS[t]["description"], "schema": event_schema(t)}
        for t in sorted(DATA_SCHEMAS)
    ]


def markdown_reference() -> str:
    """docs/reference/webhook-events.md, generated from the schemas (a test keeps the file in step)."""
    import json

    parts = [
        "# Webhook events and payload schemas\n",
        "Generated from `animus_hub/event_schemas.py` (a test fails when this file is out of date);",
        "a running server serves the same schemas at `GET /services/animus/api/v1/event-types`.",
        "How deliveries are signed and retried: [webhooks](../how-to/webhooks.md).\n",
        "Every body is one JSON object, the same envelope for every type:\n",
        "| field | meaning |",
        "|---|---|",
        "| `id` | The event id (UUID). Also in the `Animus-Event-Id` and `Idempotency-Key` headers. "
        "Redeliveries and retries carry the same id: dedupe on it. |",
        "| `type` | The event type (below); also in `Animus-Event-Type`. |",
        "| `created_at` | When the change happened, ISO 8601 UTC. |",
        "| `project` | The project's slug. |",
        "| `data` | What happened; depends on `type`. New fields may appear in `data`: ignore what you do not know. |",
        "",
        "| type | when |",
        "|---|---|",
    ]
    parts += [f"| [`{t}`](#{t.lower()}) | {DATA_SCHEMAS[t]['description']} |" for t in sorted(DATA_SCHEMAS)]
    for t in sorted(DATA_SCHEMAS):
        parts += [
            "",
            f"## {t}",
            "",
            DATA_SCHEMAS[t]["description"],
            "",
            "```json",
            json.dumps(event_schema(t), indent=2, ensure_ascii=False),
            "```",
        ]
    return "\n".join(parts) + "\n"
