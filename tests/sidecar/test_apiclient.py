"""The sidecar's own small API client, over HTTPS and on failures."""

from __future__ import annotations

import hashlib
import json
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cogumi.sidecar import apiclient
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


async def test_posts_encoded_json_as_given(origin: tuple[Origin, Served]) -> None:
    body = b'{"b": 2,  "a": "\xc3\xbc"}'
    url = f"http://127.0.0.1:{origin[1].port}/echo"
    response = await ApiClient().request("POST", url, headers={}, content=body)
    assert response.json() == {
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "chunked": False,
    }
    with pytest.raises(ValueError, match="payload or content"):
        await ApiClient().request("POST", url, headers={}, payload={"a": 1}, content=body)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text()
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_a_payload_is_sent_as_compact_json_of_the_same_value(payload: object) -> None:
    """msgspec writes it; what msgspec refuses (a lone surrogate) the stdlib writes."""
    body = apiclient._encode(payload)
    assert json.loads(body) == payload


def test_a_lone_surrogate_is_written_by_the_stdlib() -> None:
    assert apiclient._encode({"a": "\ud800"}) == b'{"a":"\\ud800"}'
