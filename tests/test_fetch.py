"""Recording download: retryable statuses, error pages, size cap, address filtering."""
from __future__ import annotations

import pytest
import requests
import responses

from integrations.base import PermanentError, TransientError, http_session
from service.fetch import check_host, download, sniff_audio

MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 100
URL = "https://rec.example.com/a.mp3"


@pytest.fixture
def rsps(monkeypatch):
    monkeypatch.setattr("socket.getaddrinfo", lambda host, port, **kw: [(2, 1, 6, "", ("93.184.216.34", port))])
    with responses.RequestsMock() as mock:
        yield mock


def test_download_saves_audio_with_sha256(rsps, tmp_path):
    rsps.get(URL, body=MP3)
    got = download(http_session(), URL, tmp_path)
    assert got.path.read_bytes() == MP3
    assert got.mime == "audio/mpeg" and got.size_bytes == len(MP3)
    assert got.path.name.endswith(".mp3")


@pytest.mark.parametrize("status", [404, 429, 500, 503])
def test_download_not_ready_statuses_are_transient(rsps, tmp_path, status):
    rsps.get(URL, status=status, headers={"Retry-After": "90"} if status == 429 else {})
    with pytest.raises(TransientError) as err:
        download(http_session(), URL, tmp_path)
    assert f"HTTP {status}" in str(err.value)
    if status == 429:
        assert err.value.retry_after_s == 90


def test_download_forbidden_is_permanent(rsps, tmp_path):
    rsps.get(URL, status=403)
    with pytest.raises(PermanentError, match="HTTP 403"):
        download(http_session(), URL, tmp_path)


@pytest.mark.parametrize("body, words", [("<!DOCTYPE html><html>Запись не готова</html>".encode(), "HTML"),
                                         (b'{"error": "not found"}', "JSON"), (b"plain text", "not a known audio")])
def test_download_error_page_with_200_is_rejected(rsps, tmp_path, body, words):
    rsps.get(URL, body=body, content_type="text/html")
    with pytest.raises(TransientError, match=words):
        download(http_session(), URL, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_over_size_cap_is_permanent_and_leaves_no_file(rsps, tmp_path):
    rsps.get(URL, body=MP3 * 50)
    with pytest.raises(PermanentError, match="larger than"):
        download(http_session(), URL, tmp_path, max_bytes=1024)
    assert list(tmp_path.iterdir()) == []


def test_download_timeout_is_transient(rsps, tmp_path):
    rsps.get(URL, body=requests.ConnectTimeout("slow"))
    with pytest.raises(TransientError, match="ConnectTimeout"):
        download(http_session(), URL, tmp_path)


def test_download_redirect_to_private_address_is_refused(monkeypatch, tmp_path):
    def resolve(host, port, **kw):
        return [(2, 1, 6, "", ("10.0.0.5" if host == "internal.example" else "93.184.216.34", port))]
    monkeypatch.setattr("socket.getaddrinfo", resolve)
    with responses.RequestsMock() as mock:
        mock.get(URL, status=302, headers={"Location": "http://internal.example/secret"})
        with pytest.raises(PermanentError, match="private or local"):
            download(http_session(), URL, tmp_path)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/a.mp3", "http://169.254.169.254/latest", "http://[::1]/a",
                                 "http://192.168.1.10/a.mp3", "http://localhost/a.mp3"])
def test_check_host_refuses_local_and_private_addresses(url):
    with pytest.raises(PermanentError):
        check_host(url, [])


def test_check_host_allows_configured_host_and_refuses_other_schemes():
    check_host("http://127.0.0.1:8080/a.mp3", ["127.0.0.1"])
    with pytest.raises(PermanentError, match="http"):
        check_host("file:///etc/passwd", ["*"])
    with pytest.raises(PermanentError, match="http"):
        check_host("ftp://rec.example.com/a.mp3", [])


@pytest.mark.parametrize("head, mime", [(b"ID3\x03", "audio/mpeg"), (b"\xff\xfb\x90\x00", "audio/mpeg"),
                                        (b"RIFF\x00\x00\x00\x00WAVE", "audio/wav"), (b"OggS\x00", "audio/ogg"),
                                        (b"fLaC\x00", "audio/flac"), (b"\xff\xf1\x50\x80", "audio/aac"),
                                        (b"<html>", None), (b"{}", None)])
def test_sniff_audio(head, mime):
    assert sniff_audio(head) == mime


def test_download_redirect_to_another_host_drops_credentials(rsps, tmp_path):
    rsps.get(URL, status=302, headers={"Location": "https://cdn.example.net/a.mp3"})
    rsps.get("https://cdn.example.net/a.mp3", body=MP3)
    download(http_session(), URL, tmp_path, request_kwargs={"auth": ("sid", "token"),
                                                            "headers": {"Authorization": "Token x", "Accept": "audio/*"}})
    first, second = rsps.calls[0].request, rsps.calls[1].request
    assert "Authorization" in first.headers
    assert "Authorization" not in second.headers and second.headers["Accept"] == "audio/*"
