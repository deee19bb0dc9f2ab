"""animus-api REST handlers, one module per resource, each ending with ``default_handlers``."""

from . import (
    access,
    audit,
    batchruns,
    datasets,
    members,
    meta,
    models,
    pipelines,
    projects,
    rolemappings,
    secrets,
    service_accounts,
    ssh,
    tracking,
    users,
    webhooks,
    workspaces,
)

# batchruns before tracking: its /runs/submit must not be taken for /runs/{run_id}
MODULES = [meta, projects, members, batchruns, tracking, audit, rolemappings, datasets]
MODULES.append(service_accounts)
MODULES.append(webhooks)
MODULES.append(users)
MODULES.append(models)
MODULES.append(pipelines)
MODULES.append(ssh)
# secrets before tracking too: /runs/{run_id}/secrets is the runner's fetch
MODULES.insert(MODULES.index(tracking), secrets)
MODULES.append(access)
MODULES.append(workspaces)


def default_handlers() -> list[tuple[str, type]]:
    """(route relative to /api/v1, handler class) for every resource."""
    routes: list[tuple[str, type]] = []
    for module in MODULES:
        routes.extend(module.default_handlers)
    return routes
