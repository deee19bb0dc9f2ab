"""JupyterHub configuration of the embedded profile, loaded by `animus up`.

`animus up` passes every choice through ANIMUS_* environment variables; this
file turns them into JupyterHub settings. Put your own settings in
``<data dir>/jupyterhub_config.py``: it is loaded last and may change anything.
"""

# ruff: noqa: F821  (`c` is provided by JupyterHub)
import os

from animus_hub.hubconfig import EmbeddedSettings, check_workspace_templates, configure_embedded

settings = EmbeddedSettings.from_environ(os.environ)
configure_embedded(c, settings)  # type: ignore[name-defined]

_override = os.path.join(settings.data_dir, "jupyterhub_config.py")
if os.path.exists(_override):
    load_subconfig(_override)  # type: ignore[name-defined]

# a mistake in the workspace templates stops the start-up here, naming the template
check_workspace_templates(c)  # type: ignore[name-defined]
