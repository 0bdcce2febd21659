"""The reliability suite's shared scale-out cluster, its log reports and its test order.

One cluster (see :mod:`tests.reliability.cluster`) serves every scenario of the
package: starting forty processes costs more than any one scenario. The
package's other tests (which bring their own servers) run first, so the
cluster is not up while they measure; then the scenarios in a fixed order
(campaigns, worker loss, Redis outage, serve restart) and, last, the audit of
the cluster's database, after everything the suite did to it. When a test that used the cluster fails,
the tails of the process logs are added to its report and every log is copied
into that test's tmp dir.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.reliability.cluster import Cluster, start_cluster, stop_cluster

PACKAGE = Path(__file__).parent
ORDER = {"test_campaigns": 0, "test_worker_loss": 1, "test_redis_outage": 2,
         "test_serve_restart": 3, "test_audit": 99}  # fmt: skip
OTHERS = -1


@pytest.fixture(scope="package")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """2 serve + 2 worker processes, PostgreSQL and a Redis of their own, 5 orgs, 20 agents."""
    started = await start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        await stop_cluster(started)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order this package's tests by scenario, in place, keeping them contiguous."""
    slots = [i for i, item in enumerate(items) if Path(item.path).parent == PACKAGE]
    ours = sorted((items[i] for i in slots), key=lambda item: ORDER.get(item.path.stem, OTHERS))
    for slot, item in zip(slots, ours, strict=True):
        items[slot] = item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield  # type: ignore[misc]
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and isinstance(cluster, Cluster):
        report.sections.append(("cluster process logs", cluster.log_report()))
        item.stash[_FAILED] = True
    return report  # type: ignore[return-value]


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _keep_logs_of_failures(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """A failed test that used the cluster gets a copy of every process log in its tmp dir."""
    yield
    if request.node.stash.get(_FAILED, False) and "cluster" in request.fixturenames:
        cluster: Cluster = request.getfixturevalue("cluster")
        shutil.copytree(cluster.tmp / "logs", tmp_path / "cluster-logs", dirs_exist_ok=True)
