"""The test harness's port picker: below the kernel's ephemeral range, and a share
of its own for each pytest-xdist process."""

from __future__ import annotations

import pytest

from tests import servers


def test_each_test_process_picks_from_its_own_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert servers._share(16_000, 31_999) == (16_000, 31_999)  # without xdist: all of it
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    low = servers._ephemeral_low()
    picked = []
    for worker, share in (("gw0", (16_000, 23_999)), ("gw1", (24_000, 31_999))):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        assert servers._share(16_000, 31_999) == share
        first, last = servers._share(max(1024, low - 16_000), low - 1)
        ports = {servers.free_port() for _ in range(50)}
        assert all(first <= port <= last for port in ports)
        picked.append(ports)
    assert not picked[0] & picked[1]


def test_ports_are_below_the_ephemeral_range() -> None:
    low = servers._ephemeral_low()
    assert all(servers.free_port() < low for _ in range(50))


def test_a_port_is_not_handed_out_twice_before_its_server_binds_it() -> None:
    """Forty servers of one cluster pick their ports before any of them binds one."""
    ports = [servers.free_port() for _ in range(1_000)]
    assert len(set(ports)) == len(ports)
