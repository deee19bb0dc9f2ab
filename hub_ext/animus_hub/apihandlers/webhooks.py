"""/projects/{project}/webhooks: signed event subscriptions, their delivery log, redelivery and pings;
/event-types: the payload schemas."""

from __future__ import annotations

from ..errors import AnimusError
from ..event_schemas import all_schemas
from ..schemas import WebhookCreate, WebhookUpdate
from ..services import webhooks as svc
from ..webhook_delivery import WebhookDelivery, check_resolved
from .base import APIHandler
from .projects import PROJECT

WEBHOOK = r"(?P<webhook_id>[^/]+)"
DELIVERY = r"(?P<delivery_id>[^/]+)"


def _resource(project: str, webhook_id: int | str, delivery_id: int | str | None = None) -> str:
    base = f"project/{project}/webhooks/{webhook_id}"
    return f"{base}/deliveries/{delivery_id}" if delivery_id is not None else base


class WebhookBaseHandler(APIHandler):
    @property
    def delivery_settings(self) -> WebhookDelivery:
        settings = self.settings.get("webhook_delivery")
        if settings is None:
            raise AnimusError(503, "webhooks_unavailable", "Webhooks are not configured on this server")
        return settings

    def wake_scheduler(self) -> None:
        wake = self.settings.get("scheduler_wake")
        if wake is not None:
            wake()


class WebhookListAPIHandler(WebhookBaseHandler):
    actions = {"GET": "webhooks:read", "POST": "webhooks:write"}

    def get(self, project: str) -> None:
        rows, next_cursor = svc.list_webhooks(
            self.db, self.project, self.limit_arg(), self.get_query_argument("cursor", None)
        )
        self.write_json({"items": [svc.webhook_json(w, project) for w in rows], "next_cursor": next_cursor})

    async def post(self, project: str) -> None:
        data = self.json_body(WebhookCreate)
        settings = self.delivery_settings
        box = settings.secret_box()
        policy = settings.policy
        await check_resolved(data.url, policy)
        w, secret = svc.create_webhook(self.db, self.project, data, self.principal.name, box, policy)
        meta = svc.webhook_json(w, project)
        self.commit_and_write(
            {**meta, "secret": secret},
            201,
            audit_action="webhook.create",
            resource=_resource(project, w.id),
            details={"event_types": meta["event_types"], "enabled": w.enabled, "encryption_key_id": box.primary_key_id},
            # a retry with the same Idempotency-Key gets the metadata, never the secret again
            replay_body={**meta, "secret": None},
        )


class WebhookAPIHandler(WebhookBaseHandler):
    actions = {"GET": "webhooks:read", "PATCH": "webhooks:write", "DELETE": "webhooks:write"}

    def get(self, project: str, webhook_id: str) -> None:
        self.write_json(svc.webhook_json(svc.find_webhook(self.db, self.project, webhook_id), project))

    async def patch(self, project: str, webhook_id: str) -> None:
        data = self.json_body(WebhookUpdate)
        policy = self.delivery_settings.policy
        if data.url is not None:
            await check_resolved(data.url, policy)
        w = svc.find_webhook(self.db, self.project, webhook_id)
        changes = svc.update_webhook(self.db, self.project, w, data, policy)
        self.commit_and_write(
            svc.webhook_json(w, project),
            audit_action="webhook.update",
            resource=_resource(project, w.id),
            details={"changes": changes, "changed": bool(changes)},
        )
        if changes.get("enabled") == [False, True]:
            self.wake_scheduler()

    def delete(self, project: str, webhook_id: str) -> None:
        w = svc.find_webhook(self.db, self.project, webhook_id)
        details = {"event_types": list(w.event_types or []), "enabled": w.enabled}
        svc.delete_webhook(self.db, self.project, w)
        self.commit_and_write(
            None, 204, audit_action="webhook.delete", resource=_resource(project, webhook_id), details=details
        )


class WebhookPingAPIHandler(WebhookBaseHandler):
    actions = {"POST": "webhooks:write"}

    def post(self, project: str, webhook_id: str) -> None:
        w = svc.find_webhook(self.db, self.project, webhook_id)
        d = svc.ping(self.db, self.project, w, self.principal.name)
        self.commit_and_write(
            svc.delivery_json(d),
            202,
            audit_action="webhook.ping",
            resource=_resource(project, w.id, d.id),
            details={"event_id": d.event_id},
        )
        self.wake_scheduler()


class DeliveryListAPIHandler(WebhookBaseHandler):
    actions = {"GET": "webhooks:read"}

    def get(self, project: str, webhook_id: str) -> None:
        w = svc.find_webhook(self.db, self.project, webhook_id)
        rows, next_cursor = svc.list_deliveries(
            self.db,
            w,
            self.limit_arg(),
            self.get_query_argument("cursor", None),
            self.get_query_argument("state", None),
        )
        self.write_json({"items": [svc.delivery_json(d) for d in rows], "next_cursor": next_cursor})


class DeliveryAPIHandler(WebhookBaseHandler):
    actions = {"GET": "webhooks:read"}

    def get(self, project: str, webhook_id: str, delivery_id: str) -> None:
        w = svc.find_webhook(self.db, self.project, webhook_id)
        d = svc.find_delivery(self.db, w, delivery_id)
        self.write_json(svc.delivery_json(d, svc.delivery_attempts(self.db, d)))


class RedeliverAPIHandler(WebhookBaseHandler):
    actions = {"POST": "webhooks:write"}

    def post(self, project: str, webhook_id: str, delivery_id: str) -> None:
        w = svc.find_webhook(self.db, self.project, webhook_id)
        original = svc.find_delivery(self.db, w, delivery_id)
        d = svc.redeliver(self.db, self.project, w, original, self.principal.name)
        self.commit_and_write(
            svc.delivery_json(d),
            202,
            audit_action="webhook.redeliver",
            resource=_resource(project, w.id, d.id),
            details={"event_id": d.event_id, "redelivery_of": original.id},
        )
        self.wake_scheduler()


class EventTypesAPIHandler(APIHandler):
    actions = {"GET": "event_types:read"}

    def get(self) -> None:
        self.write_json({"items": all_schemas()})


default_handlers = [
    ("/event-types", EventTypesAPIHandler),
    (f"/projects/{PROJECT}/webhooks", WebhookListAPIHandler),
    (f"/projects/{PROJECT}/webhooks/{WEBHOOK}", WebhookAPIHandler),
    (f"/projects/{PROJECT}/webhooks/{WEBHOOK}/ping", WebhookPingAPIHandler),
    (f"/projects/{PROJECT}/webhooks/{WEBHOOK}/deliveries", DeliveryListAPIHandler),
    (f"/projects/{PROJECT}/webhooks/{WEBHOOK}/deliveries/{DELIVERY}", DeliveryAPIHandler),
    (f"/projects/{PROJECT}/webhooks/{WEBHOOK}/deliveries/{DELIVERY}/redeliver", RedeliverAPIHandler),
]
