"""The embedded profile's JupyterHub settings, as JupyterHub will read them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from traitlets.config import Config

from animus_hub import workspaces as ws
from animus_hub.hubconfig import SERVER_TOKEN_SCOPES, EmbeddedSettings, check_workspace_templates, configure_embedded


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
    assert set(services) == {"animus", "animus-objects", "animus-ssh", "idle-culler"}
    # the object gateway gets no hub token scopes: URL signatures are its only access control
    assert not any("animus-objects" in str(r.get("services", [])) for r in c.JupyterHub.load_roles)


def test_the_default_profile_logs_in_from_the_users_file_with_session_control(tmp_path):
    c = configured(tmp_path)
    assert c.JupyterHub.authenticator_class == "animus_hub.devauth.FileAuthenticator"
    assert c.SessionControl.db_url == f"sqlite:///{tmp_path / 'animus.sqlite'}"
    assert c.JupyterHub.tornado_settings["cookie_options"]["samesite"] == "Lax"
    assert "custom:animus:sessions:revoke" in c.JupyterHub.custom_scopes
    # only the animus service may force a logout through the hub
    holders = [r for r in c.JupyterHub.load_roles if "custom:animus:sessions:revoke" in r.get("scopes", [])]
    assert holders == [{"name": "animus-sessions", "scopes": ["custom:animus:sessions:revoke"], "services": ["animus"]}]
    assert env_of(c, name="", api_token="t")["JUPYTERHUB_COOKIE_OPTIONS"] == '{"samesite": "Lax"}'


def test_an_oidc_issuer_selects_single_sign_on_with_an_encrypted_auth_state(tmp_path):
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret\n")
    c = Config()
    configure_embedded(
        c,
        EmbeddedSettings(
            data_dir=str(tmp_path),
            port=8123,
            proxy_cmd="/bin/true",
            oidc_issuer="https://idp.example.test/realms/ml",
            oidc_client_id="animus",
            oidc_client_secret_file=str(secret),
        ),
    )
    assert c.JupyterHub.authenticator_class == "animus_hub.auth.oidc.AnimusOIDCAuthenticator"
    a = c.AnimusOIDCAuthenticator
    assert (a.issuer, a.client_id, a.client_secret) == ("https://idp.example.test/realms/ml", "animus", "s3cret")
    assert a.oauth_callback_url == "http://127.0.0.1:8123/hub/oauth_callback"
    key_file = tmp_path / "secrets" / "jupyterhub_crypt_key"
    assert c.CryptKeeper["keys"] == [bytes.fromhex(key_file.read_text())] and len(c.CryptKeeper["keys"][0]) == 32
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    # the key is made once: a restart decrypts what the last run stored
    again = Config()
    configure_embedded(
        again,
        EmbeddedSettings(data_dir=str(tmp_path), oidc_issuer="https://x", oidc_client_id="a", proxy_cmd="/bin/true"),
    )
    assert again.CryptKeeper["keys"] == c.CryptKeeper["keys"]


def test_the_ssh_gateway_and_the_culler_are_services_with_only_the_scopes_they_need(tmp_path):
    c = configured(tmp_path)
    services = {s["name"]: s for s in c.JupyterHub.services}
    ssh = services["animus-ssh"]
    assert "url" not in ssh, "the gateway speaks SSH on its own port: nothing to route through the proxy"
    assert ssh["environment"]["ANIMUS_SSH_PORT"] == "8022" and ssh["environment"]["ANIMUS_SSH_HOST"] == "127.0.0.1"
    assert ssh["environment"]["ANIMUS_SSH_HOST_KEY_FILE"] == str(tmp_path / "secrets" / "ssh_host_ed25519_key")
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["animus-ssh"]["services"] == ["animus-ssh"]
    assert not any(s in roles["animus-ssh"]["scopes"] for s in ("admin:users", "tokens", "admin-ui"))
    assert "--timeout=3600" in services["idle-culler"]["command"]
    assert set(roles["idle-culler"]["scopes"]) == {
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    }
    assert c.JupyterHub.spawner_class == "animus_hub.spawner.AnimusLocalSpawner"


def test_the_embedded_profile_offers_two_cpu_templates_with_the_small_one_by_default(tmp_path):
    c = configured(tmp_path)
    templates = c.AnimusLocalSpawner.workspace_templates
    assert [(t.name, t.cpu, t.memory_bytes) for t in ws.parse_templates(templates).values()] == [
        ("cpu-small", 1.0, 2 * 1024**3),
        ("cpu-large", 2.0, 8 * 1024**3),
    ]
    # a start without a choice (the API, the SSH gateway) gets cpu-small; the spawn form pre-selects it
    assert ws.select_template(templates, {}, "any-project", []).name == "cpu-small"
    assert ws.select_template(templates, {}, "", []).name == "cpu-small"


def test_a_mistake_in_the_workspace_templates_is_caught_when_the_configuration_loads(tmp_path):
    c = configured(tmp_path)
    check_workspace_templates(c)
    c.AnimusLocalSpawner.project_templates = {"vision": ["cpu-small", "gpu"]}
    with pytest.raises(ValueError, match="project 'vision' offers workspace template 'gpu', which is not defined"):
        check_workspace_templates(c)
    c.AnimusKubeSpawner.workspace_templates = {"gpu": {"gpus": 1}}
    with pytest.raises(ValueError, match="workspace template 'gpu': unknown keys"):
        check_workspace_templates(c, "AnimusKubeSpawner")


def test_port_zero_and_timeout_zero_leave_the_gateway_and_the_culler_out(tmp_path):
    c = Config()
    configure_embedded(
        c, EmbeddedSettings(data_dir=str(tmp_path), port=8123, proxy_cmd="/bin/true", ssh_port=0, idle_timeout=0)
    )
    assert {s["name"] for s in c.JupyterHub.services} == {"animus", "animus-objects"}
    # a role naming a service that does not exist would stop the hub
    assert not any(set(r.get("services", [])) & {"animus-ssh", "idle-culler"} for r in c.JupyterHub.load_roles)
