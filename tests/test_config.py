"""Config file: ${ENV} interpolation and errors that name the key."""
from __future__ import annotations

import pytest

from service.config import ConfigError, load_config
from service.settings import SettingsError, load_settings

GOOD = """
api_token: ${API_TOKEN}
tenants:
  acme:
    webhook_secret: ${ACME_SECRET}
    timezone: Asia/Yekaterinburg
    phone_region: ru
    providers:
      mango: {api_key: k, api_salt: "${MANGO_SALT:-default-salt}"}
"""


def write(tmp_path, text):
    path = tmp_path / "calltag.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_interpolates_environment_and_fills_defaults(tmp_path):
    env = {"API_TOKEN": "t" * 20, "ACME_SECRET": "s" * 20}
    config = load_config(write(tmp_path, GOOD), env)
    acme = config["tenants"]["acme"]
    assert config["api_token"] == "t" * 20
    assert acme["webhook_secrets"] == ["s" * 20]
    assert acme["phone_region"] == "RU" and acme["channels"] == ["operator", "client"]
    assert acme["providers"]["mango"]["api_salt"] == "default-salt"
    assert acme["crm"] == {"kind": "none"}


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("${API_TOKEN}", "short"), "api_token"),
    (GOOD.replace("Asia/Yekaterinburg", "Mars/Olympus"), "tenants.acme.timezone: unknown time zone 'Mars/Olympus'"),
    (GOOD.replace("phone_region: ru", "phone_region: XX"), "tenants.acme.phone_region"),
    (GOOD.replace("phone_region: ru", "phone_regoin: RU"), "tenants.acme.phone_regoin: unknown key"),
    (GOOD.replace("${ACME_SECRET}", "${MISSING_VAR}"), "tenants.acme.webhook_secret: environment variable ${MISSING_VAR}"),
    ("tenants: [1, 2]", "tenants: must be a mapping"),
    ("api_token: [unclosed", "not valid YAML"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    env = {"API_TOKEN": "t" * 20, "ACME_SECRET": "s" * 20}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env)
    assert message in str(err.value)


def test_config_error_never_echoes_secret_values(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace("${ACME_SECRET}", "tooshort")), {"API_TOKEN": "t" * 20})
    assert "tooshort" not in str(err.value)


def test_invalid_config_stops_app_start(tmp_path, monkeypatch):
    from service import create_app
    monkeypatch.setenv("CALLTAG_CONFIG", str(write(tmp_path, "tenants: {BAD NAME: {}}")))
    with pytest.raises(ConfigError, match="tenants.BAD NAME"):
        create_app({"DATA_DIR": tmp_path / "d"})


def test_settings_are_typed_and_errors_name_the_variable():
    s = load_settings({"CALLTAG_WHISPER_BEAM": "3", "CALLTAG_LOG_PII": "yes"})
    assert s["WHISPER_BEAM"] == 3 and s["LOG_PII"] is True
    with pytest.raises(SettingsError, match="CALLTAG_WORKERS='many'"):
        load_settings({"CALLTAG_WORKERS": "many"})
    with pytest.raises(SettingsError) as err:
        load_settings({"CALLTAG_SECRET_KEY": "x", "CALLTAG_WORKERS": "1", "CALLTAG_LOG_PII": "maybe"})
    assert "CALLTAG_LOG_PII" in str(err.value)
