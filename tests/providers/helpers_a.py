"""Shared helpers for the Calltouch, UIS, Mango and Zadarma adapter tests."""
from __future__ import annotations

import json
import random
import urllib.parse
from pathlib import Path
from typing import Any

from support import API_TOKEN, make_config, webhook_url

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers"


def load_fixture(slug: str, name: str) -> dict[str, Any]:
    """One stored HTTP request: {method, url, headers, body, fake_secrets}."""
    return json.loads((FIXTURES / slug / f"{name}.json").read_text(encoding="utf-8"))


def form_of(body: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body, keep_blank_values=True))


def build_app(app_factory, monkeypatch, providers: dict[str, Any], **tenant: Any):
    """The real app with a real (unconsumed) SQLite queue: finished calls stay 'queued'."""
    config = make_config(providers=providers, **tenant)
    return app_factory(config=config, QUEUE_IMMEDIATE=False, REDIS_URL="")


def post_fixture(client, provider: str, fx: dict[str, Any], *, body: str | bytes | None = None,
                 headers: dict[str, str] | None = None, secret: str | None = None, query: str = ""):
    """Send a stored request to our webhook URL (same method, headers and raw body)."""
    url = webhook_url(provider) if secret is None else webhook_url(provider, secret=secret)
    if query:
        url += "?" + query
    hdrs = dict(fx.get("headers") or {}) if headers is None else headers
    data = fx["body"] if body is None else body
    if isinstance(data, str):
        data = data.encode("utf-8")
    return client.open(url, method=fx.get("method", "POST"), data=data, headers=hdrs)


def get_record(app, provider: str, call_id: str) -> dict[str, Any] | None:
    from service import storage
    db = app.extensions["calltag"]["runtime"].db()
    row = storage.get_call_by_key(db, f"{provider}:acme:{call_id}")
    return row["record"] if row else None


def get_row(app, provider: str, call_id: str) -> dict[str, Any] | None:
    from service import storage
    db = app.extensions["calltag"]["runtime"].db()
    return storage.get_call_by_key(db, f"{provider}:acme:{call_id}")


def counts(app) -> tuple[int, int]:
    db = app.extensions["calltag"]["runtime"].db()
    return db["calls"].count, db["events"].count


def api_get_call(client, call_id: int) -> dict[str, Any]:
    resp = client.get(f"/calls/{call_id}", headers={"Authorization": "Bearer " + API_TOKEN})
    assert resp.status_code == 200, resp.data
    return resp.get_json()["call"]


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without fields that legitimately depend on arrival order (none today)."""
    return json.loads(json.dumps(record, sort_keys=True))


def fuzz_bodies(seed: int, fixtures: list[dict[str, Any]], n: int = 200) -> list[tuple[bytes, dict[str, str]]]:
    """Random bytes, fixtures cut at random points, random form fields, mangled JSON values."""
    rng = random.Random(seed)
    out: list[tuple[bytes, dict[str, str]]] = []
    ctypes = ["application/x-www-form-urlencoded", "application/json", "text/plain", "multipart/form-data",
              "application/octet-stream", ""]
    for i in range(n):
        fx = rng.choice(fixtures)
        raw = fx["body"].encode("utf-8")
        headers = dict(fx.get("headers") or {})
        mode = i % 6
        if mode == 0:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
            headers["Content-Type"] = rng.choice(ctypes)
        elif mode == 1:
            body = raw[: rng.randint(0, len(raw))]
        elif mode == 2:
            pairs = form_of(fx["body"]) if "=" in fx["body"] and not fx["body"].startswith("{") else {}
            keys = list(pairs) + ["json", "event", "sign", "vpbx_api_key", "pbx_call_id", "callerphone", "x"]
            for _ in range(rng.randint(1, 6)):
                k = rng.choice(keys)
                pairs[k] = rng.choice(["", "0", "-1", "null", "{", "[]", "{}", '{"a":1}', "😀" * 3, "9" * 40,
                                       "NOTIFY_END", "NOTIFY_RECORD", "2024-13-45 99:99:99", "\x00\xff"])
            body = urllib.parse.urlencode(pairs).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif mode == 3:
            pos = rng.randint(0, max(0, len(raw) - 1))
            body = raw[:pos] + bytes([rng.getrandbits(8)]) + raw[pos + 1:]
        elif mode == 4:
            body = _mangle_json(rng, fx)
        else:
            body = raw
            headers = {k: v for k, v in headers.items() if rng.random() < 0.5}
            if rng.random() < 0.5:
                headers["Signature"] = rng.choice(["", "x", "=====", "MTIz"])
        out.append((body, headers))
    return out


def _mangle_json(rng: random.Random, fx: dict[str, Any]) -> bytes:
    """Replace a value inside the JSON document (the body, or Mango's `json` form field)."""
    weird = [None, "", 0, -1, 1e308, True, [], {}, "abc", "2024-06-03", "+7 999", {"number": None}, [1, 2]]
    body = fx["body"]
    if body.startswith("{"):
        try:
            doc = json.loads(body)
        except ValueError:
            return body.encode()
        if doc:
            doc[rng.choice(list(doc))] = rng.choice(weird)
        return json.dumps(doc, ensure_ascii=False).encode()
    form = form_of(body)
    if "json" in form:
        try:
            doc = json.loads(form["json"])
            doc[rng.choice(list(doc))] = rng.choice(weird)
            form["json"] = json.dumps(doc)
        except (ValueError, TypeError):
            pass
    elif form:
        form[rng.choice(list(form))] = str(rng.choice(weird))
    return urllib.parse.urlencode(form).encode()
