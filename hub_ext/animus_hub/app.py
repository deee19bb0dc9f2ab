"""animus-api: the Animus REST service, run as a JupyterHub service.

``AnimusAPI.initialize()`` runs ordered ``init_*`` steps as JupyterHub's app does;
handlers reach shared objects through ``self.settings``. When started by the hub
(a hub-managed service) the hub's environment supplies the listen URL, the URL
prefix, the hub API URL and the service's token.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubAuth
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Dict, Float, Integer, List, Set, Type, Unicode, default, validate
from traitlets.config import Application

from . import db as dbmod
from . import mlflow as mlflow_api
from ._version import __version__
from .apihandlers import default_handlers
from .apihandlers.base import NotFoundHandler
from .apihandlers.meta import ServiceRootHandler
from .auth.hubapi import HubAPI
from .auth.identity import Identifier
from .auth.rbac import PROJECT_PLACEHOLDER, Authorizer, RuleSpec, validate_group_pattern
from .errors import AnimusError
from .executors.local import LocalExecutor
from .logsetup import configure_logging
from .metrics import observe_request
from .orm import Role
from .pipelinequeue import PipelineStepper
from .runqueue import RunQueue, RunQueueStep
from .scheduler import Scheduler, WebhookDeliveryStep
from .secrets.local import LocalSecretStore
from .secrets.vault import VaultSecretStore
from .storage.export_targets import load_export_targets
from .storage.external import load_external_sources
from .webhook_delivery import WebhookDelivery

API_PREFIX = "api/v1"


class AnimusAPI(Application):
    name = "animus-api"
    version = __version__
    description = "The Animus Datalab REST API (runs as a JupyterHub service)."
    classes = [Scheduler, WebhookDelivery, RunQueue, LocalExecutor, LocalSecretStore, VaultSecretStore]

    config_file = Unicode(
        "animus_api_config.py", help="A Python configuration file (traitlets), read if it exists."
    ).tag(config=True)

    @default("log_level")
    def _log_level_default(self) -> int:
        return logging.INFO

    db_url = Unicode(help="SQLAlchemy URL of the Animus database (SQLite or PostgreSQL).").tag(config=True)

    @default("db_url")
    def _db_url_default(self) -> str:
        return os.environ.get("ANIMUS_DB_URL", "sqlite:///animus.sqlite")

    service_url = Unicode(help="URL this service listens on; the hub passes it as JUPYTERHUB_SERVICE_URL.").tag(
        config=True
    )

    @default("service_url")
    def _service_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8090")

    base_url = Unicode(help="URL prefix the proxy routes to this service (JUPYTERHUB_SERVICE_PREFIX).").tag(config=True)

    @default("base_url")
    def _base_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/animus/")

    @validate("base_url")
    def _normalise_base_url(self, proposal: Any) -> str:
        value = "/" + proposal["value"].strip("/") + "/"
        return value.replace("//", "/")

    role_mapping_rules = List(
        Dict(),
        help="""Rules mapping IdP / JupyterHub group names to project roles, e.g.
        [{"group": "ml-{project}-admins", "role": "owner"},
         {"group": "data-platform", "project": "fraud", "role": "viewer"}].
        A pattern with {project} applies to every project it names; an exact group
        name needs "project". More rules can be added at run time through
        /role-mappings.""",
    ).tag(config=True)

    @validate("role_mapping_rules")
    def _check_rules(self, proposal: Any) -> list[dict]:
        for rule in proposal["value"]:
            unknown = set(rule) - {"group", "role", "project"}
            if unknown or "group" not in rule or rule.get("role") not in Role.__members__:
                raise ValueError(f"Invalid role mapping rule {rule!r}: needs 'group' and a valid 'role'")
            validate_group_pattern(rule["group"])
            if (PROJECT_PLACEHOLDER in rule["group"]) == bool(rule.get("project")):
                raise ValueError(f"Rule {rule!r}: give 'project' exactly when the group has no {{project}}")
        return proposal["value"]

    admin_users = Set(Unicode(), help="Users who are platform admins (besides JupyterHub admins).").tag(config=True)
    admin_groups = Set(Unicode(), help="Groups whose members are platform admins.").tag(config=True)

    auth_cache_max_age = Integer(
        30,
        help="Seconds a JupyterHub token's identity (name, groups, admin) is cached; "
        "group changes and revocations take effect within this time.",
    ).tag(config=True)

    read_cache_seconds = Float(
        1.0,
        help="Seconds a read (GET) may reuse a project snapshot and the caller's role in it. "
        "Changes made through this process apply at once; changes made through another "
        "replica apply within this time. Writes always check the database. 0 disables.",
    ).tag(config=True)

    storage_class = Type(
        default_value="animus_hub.storage.local.LocalObjectStore",
        klass="animus_hub.storage.base.ObjectStore",
        help="Where objects (dataset blobs, artifacts) live: LocalObjectStore (embedded) or S3ObjectStore.",
    ).tag(config=True)

    executor_class = Type(
        default_value="animus_hub.executors.local.LocalExecutor",
        klass="animus_hub.executors.base.Executor",
        help="Where batch runs execute: LocalExecutor (embedded: local process groups) or a cluster executor.",
    ).tag(config=True)

    secret_store_class = Type(
        default_value="animus_hub.secrets.local.LocalSecretStore",
        klass="animus_hub.secrets.base.SecretStore",
        help="Where project secret values live: LocalSecretStore (embedded: encrypted files) or "
        "VaultSecretStore (Vault / OpenBao; configure c.VaultSecretStore.*). Values never enter the Animus database.",
    ).tag(config=True)

    external_sources = Dict(
        help="""Read-only external S3 sources datasets may import from, by name, e.g.
        {"lake": {"endpoint_url": "https://s3.example.com", "region": "eu-west-1",
                  "bucket": "corp-lake", "prefixes": ["curated/"], "projects": ["fraud", "churn"],
                  "access_key_id_env": "LAKE_ACCESS_KEY_ID",
                  "secret_access_key_env": "LAKE_SECRET_ACCESS_KEY"}}.
        "projects" is required (slugs, or ["*"] for every project); "bucket" and
        "prefixes" restrict where the source may read (empty: anywhere its credentials
        reach). Credentials are never written here: *_env keys name the environment
        variables that hold them (without them, boto3's default credential chain).
        Other keys: presign_endpoint_url, session_token_env, addressing_style,
        description. Give the credentials read-only rights.""",
    ).tag(config=True)

    export_targets = Dict(
        help="""Writable S3 targets model versions may be exported to as bundles, by name, e.g.
        {"releases": {"endpoint_url": "https://s3.example.com", "bucket": "ml-releases",
                      "prefix": "models/", "projects": ["fraud"],
                      "access_key_id_env": "RELEASES_ACCESS_KEY_ID",
                      "secret_access_key_env": "RELEASES_SECRET_ACCESS_KEY"}}.
        "bucket" and "projects" (slugs, or ["*"]) are required; a bundle goes under
        <prefix>/<project>/<model>/<version>/. animus-api only signs PUT URLs: the
        exporting client moves the bytes. Credentials are never written here: *_env
        keys name the environment variables that hold them. Other keys:
        presign_endpoint_url, region, session_token_env, addressing_style, description.""",
    ).tag(config=True)

    presign_expires = Integer(300, help="Seconds a presigned upload or download URL stays valid.").tag(config=True)

    service_account_token_max_expires_in = Integer(
        365 * 24 * 3600,
        help="Longest lifetime, in seconds, of a service-account token (expires_in above it answers 422).",
    ).tag(config=True)

    forced_logout_stops_servers = Bool(
        True,
        help="Whether a forced logout (POST /users/{name}/logout) stops the person's running workspaces "
        "when the request does not say; kept workspaces keep running with their own server tokens.",
    ).tag(config=True)

    max_request_body = Integer(1024 * 1024, help="Largest accepted request body, in bytes (413 above).").tag(
        config=True
    )

    log_json = Bool(False, help="Write log lines as JSON objects (for log shippers) instead of text.").tag(config=True)

    flags = {"log-json": ({"AnimusAPI": {"log_json": True}}, "Write log lines as JSON objects.")}

    aliases = {
        "db-url": "AnimusAPI.db_url",
        "config": "AnimusAPI.config_file",
        "log-level": "Application.log_level",
    }

    # --- initialisation ---------------------------------------------------------------

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if os.path.exists(self.config_file):
            self.load_config_file(self.config_file)
            self.update_config(self.cli_config)
        self.init_logging()
        self.init_db()
        self.init_auth()
        self.init_storage()
        self.init_secrets()
        self.init_scheduler()
        self.init_tornado_application()

    def init_logging(self) -> None:
        configure_logging(self.log_level, self.log_json)
        self.log = logging.getLogger("animus")

    def init_db(self) -> None:
        self.engine = dbmod.make_engine(self.db_url)
        try:
            dbmod.ensure_schema(self.engine, self.db_url)
        except dbmod.DatabaseRevisionError as e:
            self.log.critical("%s", e)
            sys.exit(1)
        self.session_factory = dbmod.make_session_factory(self.engine)
        self.readonly_session_factory = dbmod.make_session_factory(
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    def init_auth(self) -> None:
        self.hub_auth = HubAuth(cache_max_age=self.auth_cache_max_age)
        self.identifier = Identifier(self.hub_auth, set(self.admin_users), set(self.admin_groups))
        self.hub_api = HubAPI(self.hub_auth.api_url, self.hub_auth.api_token or "")
        self.config_rules = [
            RuleSpec(r["group"], Role[r["role"]], r.get("project"), source="config") for r in self.role_mapping_rules
        ]
        self.authorizer = Authorizer(self.config_rules, read_cache_seconds=self.read_cache_seconds)

    def init_storage(self) -> None:
        self.object_store = self.storage_class(parent=self)
        # a bad source definition (or a missing credential variable) stops start-up: ValueError
        self.external_source_readers = load_external_sources(self.external_sources)
        if self.external_source_readers:
            self.log.info("External sources: %s", ", ".join(sorted(self.external_source_readers)))
        self.model_export_targets = load_export_targets(self.export_targets)
        if self.model_export_targets:
            self.log.info("Export targets: %s", ", ".join(sorted(self.model_export_targets)))

    def init_secrets(self) -> None:
        from .apihandlers.secrets import LogScrubber

        self.secret_store = self.secret_store_class(parent=self)
        self.log_scrubber = LogScrubber()
        self.log.info("Secret store: %s", self.secret_store.kind)

    def init_scheduler(self) -> None:
        """The background loop (webhook delivery first; later issues add their steps)."""
        self.webhook_delivery = WebhookDelivery(parent=self)
        self.scheduler = Scheduler(
            parent=self,
            session_factory=self.session_factory,
            steps=[WebhookDeliveryStep(self.session_factory, self.webhook_delivery)],
        )
        self.run_queue = RunQueue(parent=self)
        self.executor = self.executor_class(parent=self)
        runner_api_url = self.run_queue.runner_api_url or (self.service_url.rstrip("/") + self.base_url + API_PREFIX)
        self.scheduler.add_step(PipelineStepper(self.session_factory, self.run_queue))
        self.scheduler.add_step(
            RunQueueStep(self.session_factory, self.run_queue, self.executor, runner_api_url, self.secret_store)
        )

    def make_handlers(self) -> list[tuple[str, type, dict]]:
        prefix = self.base_url + API_PREFIX
        routes: list[tuple[str, type, dict]] = [(prefix + path, cls, {}) for path, cls in default_handlers()]
        routes.append((prefix + r"(?:/.*)?", NotFoundHandler, {}))
        routes += mlflow_api.make_handlers(self.base_url)
        routes.append((self.base_url + "?", ServiceRootHandler, {}))
        return routes

    def init_tornado_application(self) -> None:
        settings = {
            "session_factory": self.session_factory,
            "readonly_session_factory": self.readonly_session_factory,
            "authorizer": self.authorizer,
            "identifier": self.identifier,
            "hub_api": self.hub_api,
            "forced_logout_stops_servers": self.forced_logout_stops_servers,
            "max_request_body": self.max_request_body,
            "api_url_path": self.base_url + API_PREFIX,
            "object_store": self.object_store,
            "external_sources": self.external_source_readers,
            "export_targets": self.model_export_targets,
            "presign_expires": self.presign_expires,
            "service_account_token_max_expires_in": self.service_account_token_max_expires_in,
            "webhook_delivery": self.webhook_delivery,
            "scheduler_wake": self.scheduler.wake,
            "run_queue": self.run_queue,
            "secret_store": self.secret_store,
            "log_scrubber": self.log_scrubber,
            "observe_request": observe_request,
            "log_function": self.log_request,
            "default_handler_class": NotFoundHandler,
            "xsrf_cookies": False,
            "serve_traceback": False,
        }
        self.tornado_app = web.Application(self.make_handlers(), **settings)

    def log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        principal = getattr(handler, "principal", None)
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if handler.request.method in ("GET", "HEAD") and status < 400:
            level = logging.DEBUG  # successful reads: an access log at debug level
        self.log.log(
            level,
            "%s %s %s %.1fms %s [%s]",
            status,
            handler.request.method,
            handler.request.path,  # never the query string: it could carry a token
            1000.0 * handler.request.request_time(),
            f"{principal.kind}:{principal.name}" if principal is not None and principal.name else "-",
            getattr(handler, "request_id", "-"),
        )

    # --- running ----------------------------------------------------------------------

    async def serve(self) -> None:
        url = urlparse(self.service_url)
        host, port = url.hostname or "127.0.0.1", url.port or 8090
        # start-up objects live for the whole process: keep them out of the collector's
        # oldest generation, whose full scans otherwise stall the loop for tens of ms
        await self.object_store.setup()
        gc.collect()
        gc.freeze()
        server = HTTPServer(self.tornado_app, xheaders=True, max_body_size=max(self.max_request_body * 4, 1 << 20))
        server.listen(port, address=host)
        self.log.info("animus-api %s listening on %s:%s%s%s", __version__, host, port, self.base_url, API_PREFIX)
        self.scheduler.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # the hub may start us under nohup (SIGINT ignored): handle both signals ourselves
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.log.info("animus-api stopping")
        server.stop()
        await self.scheduler.stop()
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
        await self.object_store.close()
        for source in self.external_source_readers.values():
            source.close()
        for target in self.model_export_targets.values():
            target.close()
        self.secret_store.close()
        self.engine.dispose()

    def start(self) -> None:
        asyncio.run(self.serve())


def main(argv: list[str] | None = None) -> None:
    app = AnimusAPI.instance()
    try:
        app.initialize(argv)
    except (ValueError, AnimusError) as e:
        print(f"animus-api: configuration error: {e}", file=sys.stderr)
        sys.exit(2)
    app.start()


if __name__ == "__main__":
    main()
