"""animus-api REST handlers, one module per resource, each ending with ``default_handlers``."""

from . import (
    audit,
    datasets,
    members,
    meta,
    models,
    projects,
    rolemappings,
    service_accounts,
    tracking,
    users,
    webhooks,
)

MODULES = [meta, projects, members, tracking, audit, rolemappings, datasets]
MODULES.append(service_accounts)
MODULES.append(webhooks)
MODULES.append(users)
MODULES.append(models)


def default_handlers() -> list[tuple[str, type]]:
    """(route relative to /api/v1, handler class) for every resource."""
    routes: list[tuple[str, type]] = []
    for module in MODULES:
        routes.extend(module.default_handlers)
    return routes
