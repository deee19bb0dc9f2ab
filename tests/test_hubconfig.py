"""The embedded profile's JupyterHub settings, as JupyterHub will read them."""

from __future__ import annotations

from types import SimpleNamespace

from traitlets.config import Config

from animus_hub.hubconfig import SERVER_TOKEN_SCOPES, EmbeddedSettings, configure_embedded


def configured(tmp_path) -> Config:
    c = Config()
    configure_embedded(c, EmbeddedSettings(data_dir=str(tmp_path), port=8123, proxy_cmd="/bin/true"))
    return c


def env_of(c: Config, **spawner) -> dict[str, str]:
    sp = SimpleNamespace(**spawner)
    return {k: (v(sp) if callable(v) else v) for k, v in c.Spawner.environment.items()}


def test_a_workspace_named_after_a_project_points_mlflow_and_the_cli_at_it(tmp_path):
    env = env_of(configured(tmp_path), name="fraud", api_token="tok")
    assert env["ANIMUS_PROJECT"] == "fraud"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:8123/services/animus/mlflow/projects/fraud"
    assert env["MLFLOW_TRACKING_TOKEN"] == "tok"
    assert env["ANIMUS_API_URL"] == "http://127.0.0.1:8123/services/animus/api/v1"


def test_the_default_workspace_has_no_project(tmp_path):
    env = env_of(configured(tmp_path), name="", api_token="tok")
    assert env["ANIMUS_PROJECT"] == ""
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:8123/services/animus/mlflow"


def test_workspace_tokens_may_call_animus_and_nothing_more(tmp_path):
    c = configured(tmp_path)
    assert c.Spawner.server_token_scopes == SERVER_TOKEN_SCOPES
    assert "access:services!service=animus" in SERVER_TOKEN_SCOPES
    assert not any(s.startswith(("admin", "tokens")) for s in SERVER_TOKEN_SCOPES)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert set(services) == {"animus", "animus-objects"}
    # the object gateway gets no hub token scopes: URL signatures are its only access control
    assert not any("animus-objects" in str(r.get("services", [])) for r in c.JupyterHub.load_roles)
