"""calltag: call-tracking webhooks in, transcribed and tagged calls out."""
from __future__ import annotations

import os
from typing import Any, Mapping

from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app: settings, config, storage, queue, rules, blueprints.

    :param test_config: setting overrides by name (e.g. {"DATA_DIR": tmp, "QUEUE_IMMEDIATE": True});
        the key "CONFIG_DATA" passes an already-parsed config mapping instead of a file.
    """
    from service import api, crm_oauth, health, recording_links, webhooks
    from service.config import load_config, validate_config
    from service.logs import setup_logging
    from service.runtime import Runtime
    from service.settings import load_settings

    overrides = dict(test_config or {})
    config_data = overrides.pop("CONFIG_DATA", None)
    settings = load_settings(os.environ, overrides)
    setup_logging(settings)
    config = validate_config(dict(config_data)) if config_data is not None else load_config(settings["CONFIG"])
    app = Flask(__name__)
    app.config.update(TESTING=bool(overrides.get("TESTING")), MAX_CONTENT_LENGTH=settings["MAX_BODY_BYTES"],
                      JSON_AS_ASCII=False)
    app.json.ensure_ascii = False
    runtime = Runtime(settings, config)
    app.extensions["calltag"] = {"settings": settings, "config": config, "runtime": runtime}
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(crm_oauth.bp)
    app.register_blueprint(recording_links.bp)
    return app
