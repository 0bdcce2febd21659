"""Retention archives to S3-compatible storage (a real moto server process) before deleting:
what is read back is the bundle the API served and ``cogumi verify-bundle`` accepts; a failed
upload keeps the run, says why, never shows the secret, and the next pass catches up."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cogumi.config import Settings
from cogumi.quotas import archive, retention
from cogumi.runs.models import Run, RunStatus
from cogumi.tenancy.models import AuditLog
from tests.factories import Account, Accounts
from tests.quotas.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server, s3_server
from tests.quotas.test_retention import Org, Seeder, assert_survivors, expected_counts

PREFIX = "cogumi/archive/"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def s3_settings(settings: Settings, s3: S3Server, bucket: str, **extra: Any) -> Settings:
    values = {
        "retention_archive_s3_bucket": bucket,
        "retention_archive_s3_prefix": "/cogumi/archive",  # slashes trimmed, one added
        "retention_archive_s3_endpoint_url": s3.endpoint_url,
        "retention_archive_s3_region": REGION,
        "retention_archive_s3_access_key_id": ACCESS_KEY_ID,
        "retention_archive_s3_secret_access_key": SECRET_ACCESS_KEY,
        **extra,
    }
    return Settings.model_validate({**settings.model_dump(), **values})


def new_bucket(s3: S3Server) -> str:
    name = f"archive-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


async def seed_org(accounts: Accounts) -> tuple[Account, Org]:
    """One org, one 7-day project: two runs past the cutoff, one inside it, one old but running."""
    owner = await accounts.signup()
    org, seeder = Org(owner.org_id), Seeder(accounts)
    project = await seeder.project(org, retention_days=7)
    await seeder.run(org, project, age_days=10, status=RunStatus.completed, events=3, doomed=True)
    await seeder.run(org, project, age_days=8, status=RunStatus.failed, events=2, doomed=True)
    await seeder.run(org, project, age_days=2, status=RunStatus.completed, events=1, doomed=False)
    await seeder.run(org, project, age_days=20, status=RunStatus.running, events=1, doomed=False)
    return owner, org


def keys_of(s3: S3Server, bucket: str, org: Org) -> set[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}{org.org_id}/")
    return {item["Key"] for item in listed.get("Contents", [])}


def mine(problems: list[str], org: Org) -> list[str]:
    """The problems about this org's runs (other tests' leftovers share the database)."""
    ids = {str(r) for r in org.doomed | org.kept}
    return [p for p in problems if any(i in p for i in ids)]


async def test_runs_go_to_the_bucket_then_are_deleted(
    accounts: Accounts, settings: Settings, s3: S3Server, tmp_path: Path
) -> None:
    owner, org = await seed_org(accounts)
    served = {}
    for run_id in org.doomed:
        response = await owner.client.get(f"/api/runs/{run_id}/bundle")
        assert response.status_code == 200, response.text
        served[run_id] = response.json()
    bucket = new_bucket(s3)

    result = await retention.cleanup(
        sessionmaker=accounts.sessionmaker, settings=s3_settings(settings, s3, bucket)
    )

    counts = result.as_json()["orgs"][str(org.org_id)]
    assert counts == {**expected_counts(org), "archived": 2, "archive_failed": 0}
    assert mine(result.problems, org) == []
    await assert_survivors(accounts, org)
    key_of = {run_id: _key(bundle) for run_id, bundle in served.items()}
    assert keys_of(s3, bucket, org) == set(key_of.values())
    client = s3.client()
    for run_id, expected in served.items():
        obj = client.get_object(Bucket=bucket, Key=key_of[run_id])
        assert obj["ContentType"] == "application/json"
        body = obj["Body"].read()
        stored = json.loads(body)
        assert stored.pop("generated_at") and expected.pop("generated_at")
        assert stored == expected  # the bundle the API served, item for item
        path = tmp_path / f"{run_id}.json"
        path.write_bytes(body)
        root = expected["manifest"]["root"]
        checked = subprocess.run(
            [sys.executable, "-m", "cogumi", "verify-bundle", str(path), "--root", root],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("OK:"), checked.stdout


def _key(bundle: dict[str, Any]) -> str:
    run = bundle["run"]
    return f"{PREFIX}{run['org_id']}/{run['project_id']}/{run['id']}.json"


async def test_a_failed_upload_keeps_the_run_and_is_reported(
    accounts: Accounts,
    settings: Settings,
    s3: S3Server,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, org = await seed_org(accounts)
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    # The directory store succeeds, the bucket does not: a run must be in *every* store.
    both = s3_settings(settings, s3, missing, retention_archive_dir=tmp_path / "archive")
    caplog.set_level(logging.DEBUG)

    result = await retention.cleanup(sessionmaker=accounts.sessionmaker, settings=both)

    counts = result.as_json()["orgs"][str(org.org_id)]
    assert counts == {"runs": 0, "events": 0, "findings": 0, "reports": 0,
                      "archived": 0, "archive_failed": 2}  # fmt: skip
    problems = mine(result.problems, org)
    assert len(problems) == 2
    assert all("NoSuchBucket" in p and f"s3://{missing}/{PREFIX}" in p for p in problems)
    async with accounts.sessionmaker() as session:
        left = set((await session.scalars(select(Run.id).where(Run.org_id == org.org_id))).all())
        audit = (await session.scalars(select(AuditLog.detail).where(
            AuditLog.org_id == org.org_id, AuditLog.action == "retention.deleted"))).all()  # fmt: skip
    assert left == org.doomed | org.kept  # nothing deleted
    assert audit == [counts]
    text = json.dumps(result.as_json()) + caplog.text + repr(both)
    assert SECRET_ACCESS_KEY not in text
    assert any("keeping it" in r.getMessage() for r in caplog.records)

    bucket = new_bucket(s3)
    again = await retention.cleanup(
        sessionmaker=accounts.sessionmaker, settings=s3_settings(settings, s3, bucket)
    )
    counts = again.as_json()["orgs"][str(org.org_id)]
    assert counts == {**expected_counts(org), "archived": 2, "archive_failed": 0}
    assert len(keys_of(s3, bucket, org)) == 2
    await assert_survivors(accounts, org)


async def test_without_boto3_the_s3_archive_keeps_every_run(
    accounts: Accounts, settings: Settings, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment that set a bucket but lacks the ``s3`` extra loses nothing."""
    _, org = await seed_org(accounts)
    configured = s3_settings(settings, s3, "any-bucket")
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without the extra sees
    assert archive.check_available(configured) == archive.INSTALL_HINT
    result = await retention.cleanup(sessionmaker=accounts.sessionmaker, settings=configured)
    assert result.as_json()["orgs"][str(org.org_id)]["archive_failed"] == 2
    assert all("pip install 'cogumi[s3]'" in p for p in mine(result.problems, org))
    async with accounts.sessionmaker() as session:
        left = set((await session.scalars(select(Run.id).where(Run.org_id == org.org_id))).all())
    assert left == org.doomed | org.kept


def test_prefix_and_keys() -> None:
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    for given, expected in (("", ""), ("/", ""), ("a/b/", "a/b/"), ("/a", "a/")):
        assert (
            archive.s3_prefix(base.model_copy(update={"retention_archive_s3_prefix": given}))
            == expected
        )
    assert archive.stores_from_settings(base) == []
    run = Run(id=uuid.uuid4(), org_id=uuid.uuid4(), project_id=uuid.uuid4())
    assert archive.object_key(run) == f"{run.org_id}/{run.project_id}/{run.id}.json"
