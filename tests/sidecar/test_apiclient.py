"""The sidecar's own small API client, over HTTPS and on failures."""

from __future__ import annotations

import ssl

import pytest

from cogumi.sidecar.apiclient import ApiClient, ApiError
from tests.sidecar.servers import Origin, Served
from tests.sidecar.test_proxy_http import free_port


async def test_posts_json_over_https(
    tls_origin: tuple[Origin, Served], tls_files: tuple[str, str]
) -> None:
    client = ApiClient(tls=ssl.create_default_context(cafile=tls_files[0]))
    url = f"https://localhost:{tls_origin[1].port}/echo"
    response = await client.post(url, headers={"X-Sidecar-Token": "t"}, payload={"a": 1})
    assert response.is_success
    assert response.json()["length"] == len(b'{"a":1}')
    assert response.header("content-type") == "application/json"


async def test_untrusted_certificate_and_refused_port_are_api_errors(
    tls_origin: tuple[Origin, Served],
) -> None:
    with pytest.raises(ApiError):
        await ApiClient().get(f"https://localhost:{tls_origin[1].port}/", headers={})
    with pytest.raises(ApiError):
        await ApiClient().get(f"http://127.0.0.1:{free_port()}/", headers={})
