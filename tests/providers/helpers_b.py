"""Test helpers for the Sipuni, Roistat, Binotel, Twilio and CallRail adapter tests."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterable

from service import storage

REPO = Path(__file__).resolve().parents[2]
LOCAL_FIXTURES = REPO / "tests" / "fixtures" / "providers"


# -- app -----------------------------------------------------------------------------------------

def build_app(app_factory, config: dict[str, Any], data_dir: Path | None = None):
    """The real app with a SqliteHuey queue nobody consumes: calls stop at state "queued".

    ``data_dir`` is accepted for tests that build several apps; app_factory owns the data dir.
    """
    if data_dir is None:
        return app_factory(config=config, QUEUE_IMMEDIATE=False)
    return app_factory(config=config, QUEUE_IMMEDIATE=False, DATA_DIR=Path(data_dir))


def app_db(app):
    return app.extensions["calltag"]["runtime"].db()


def stored(app, provider: str, call_id: str, tenant: str = "acme") -> dict | None:
    """The stored call row (with ``record`` decoded), or None."""
    return storage.get_call_by_key(app_db(app), storage.call_key(provider, tenant, call_id))


def counts(app) -> tuple[int, int]:
    db = app_db(app)
    return db["calls"].count, db["events"].count


def comparable(record: dict) -> dict:
    """A record without what legitimately differs between deliveries."""
    return {k: v for k, v in record.items() if k not in ("raw_events", "received_at")}


# -- fixtures ------------------------------------------------------------------------------------

def load_fixture(slug: str, name: str) -> dict[str, Any]:
    """tests/fixtures/providers/<slug>/<name>.json (copies of the shared fixtures and our variants)."""
    return json.loads((LOCAL_FIXTURES / slug / f"{name}.json").read_text(encoding="utf-8"))


def form_body(pairs: Iterable[tuple[str, str]] | dict[str, str]) -> str:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return urllib.parse.urlencode(list(items))


def twilio_signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """X-Twilio-Signature exactly as Twilio computes it (URL + sorted key/value pairs)."""
    data = url + "".join(k + params[k] for k in sorted(params or {}))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def callrail_signature(signing_key: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(signing_key.encode(), body, hashlib.sha1).digest()).decode()


# -- fuzz ----------------------------------------------------------------------------------------

def fuzz_bodies(seed: int, samples: list[bytes], n: int = 200,
                field_names: Iterable[str] = ()) -> list[tuple[bytes, str]]:
    """(body, content type) cases: random bytes, truncated samples, random form fields, junk JSON."""
    rnd = random.Random(seed)
    names = list(field_names) or ["id", "call_id", "event"]
    cases: list[tuple[bytes, str]] = []
    ctypes = ["application/x-www-form-urlencoded", "application/json", "text/plain", "multipart/form-data"]
    for i in range(n):
        kind = i % 5
        if kind == 0:
            body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
        elif kind == 1:
            src = rnd.choice(samples)
            body = src[: rnd.randint(0, len(src))]
        elif kind == 2:
            pairs = [(rnd.choice(names + ["x", "CallSid", "resource_id", "callDetails[a][b]", "callDetails["]),
                      _rand_text(rnd)) for _ in range(rnd.randint(0, 8))]
            body = urllib.parse.urlencode(pairs).encode()
        elif kind == 3:
            src = bytearray(rnd.choice(samples))
            for _ in range(rnd.randint(1, 6)):
                if src:
                    src[rnd.randrange(len(src))] = rnd.getrandbits(8)
            body = bytes(src)
        else:
            value = rnd.choice([None, 1, -5, 1e308, "x", [], [1, 2], {}, {"id": {"a": 1}}, True,
                                {k: rnd.choice([None, 0, "", "abc", [1], {"a": None}, 10 ** 30]) for k in names}])
            body = json.dumps(value).encode()
        cases.append((body, rnd.choice(ctypes)))
    return cases


def _rand_text(rnd: random.Random) -> str:
    alphabet = "0123456789+-_.:/@ abcXYZ%&=[]тест\x00\u202e"
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))


def assert_never_500(post: Callable[[bytes, str], Any], cases: list[tuple[bytes, str]]) -> None:
    for body, ctype in cases:
        resp = post(body, ctype)
        assert resp.status_code < 500, (resp.status_code, body[:200], ctype, resp.get_data()[:300])
        assert 200 <= resp.status_code < 500
