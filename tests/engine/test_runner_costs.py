"""What a campaign costs the database, counted in statements (not timed): a script's
variants in at most three statements, a turn in one transaction of two, and the
variant store kept within its bound at the end of every campaign."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cogumi.db.engine import make_engine, make_sessionmaker, transaction
from cogumi.engine import variants
from cogumi.engine.library.styles import Variant
from cogumi.engine.models import PromptVariant
from cogumi.engine.runner import execute_run
from cogumi.events.models import Event
from tests.engine.test_runner import agent_app, never, start_run
from tests.factories import Accounts
from tests.servers import serve_app

REFUSAL = "I'm sorry, but I can't help with that request."


@contextmanager
def counted(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine's connections send while the block runs."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split())[:60])

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


def data(statements: list[str]) -> list[str]:
    """Statements that read or write rows (no BEGIN/SAVEPOINT/pragma bookkeeping)."""
    return [s for s in statements if s.split(" ", 1)[0].upper() in {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}]  # fmt: skip


async def test_a_scripts_variants_take_three_statements(app: Any, accounts: Accounts) -> None:
    owner = await accounts.signup()
    _, project_id = await start_run(accounts, owner.org_id, "http://127.0.0.1:9", ["S1"])
    engine = make_engine(app.state.settings.effective_database_url)
    sessionmaker = make_sessionmaker(engine)
    rendered = {
        f"S1.{i}": [Variant("incident_urgent", f"ask {i}"), Variant("polite_persistent", f"plea {i}")]
        for i in range(1, 4)
    }  # fmt: skip
    try:
        with counted(engine) as first:
            async with transaction(sessionmaker) as session:
                chosen = await variants.choose_for_script(
                    session, org_id=owner.org_id, project_id=project_id, script_id="S1",
                    rendered=rendered, styles=[],
                )  # fmt: skip
        with counted(engine) as second:
            async with transaction(sessionmaker) as session:
                again = await variants.choose_for_script(
                    session, org_id=owner.org_id, project_id=project_id, script_id="S1",
                    rendered={k: v[:1] for k, v in rendered.items()}, styles=[],
                )  # fmt: skip
    finally:
        await engine.dispose()
    assert [s.split(" ", 1)[0] for s in data(first)] == ["SELECT", "INSERT", "UPDATE"]
    assert [s.split(" ", 1)[0] for s in data(second)] == ["SELECT", "UPDATE"]  # nothing new
    assert chosen == rendered  # fresh: every rendered phrasing, in rendering order
    assert again == {k: v[1:] for k, v in rendered.items()}  # the one not used yet comes first


async def test_turns_cost_one_reservation_and_no_reads(app: Any, accounts: Accounts) -> None:
    """Per turn: one seq reservation (the bulk insert of both messages goes through the
    driver, below SQLAlchemy); no window read, since no sidecar ever shipped to the
    project. Reads happen only when the campaign loads, once per script (its variants)
    and when it finishes."""
    owner = await accounts.signup()
    scripts = ["S1", "P01", "P02"]
    engine = make_engine(app.state.settings.effective_database_url)
    sessionmaker = make_sessionmaker(engine)
    try:
        async with serve_app(agent_app(lambda m: REFUSAL)) as url:
            run_id, _ = await start_run(accounts, owner.org_id, url, scripts)
            with counted(engine) as seen:
                await execute_run(
                    sessionmaker=sessionmaker, settings=app.state.settings,
                    bus=app.state.live_bus, run_id=run_id, should_stop=never,
                )  # fmt: skip
        async with sessionmaker() as session:
            messages = await session.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.run_id == run_id, Event.type == "agent.message")
            )
    finally:
        await engine.dispose()
    turns = int(messages or 0) // 2
    reservations = [s for s in seen if s.startswith("UPDATE runs SET last_seq=")]
    reads = [s for s in data(seen) if s.startswith("SELECT")]
    assert turns > len(scripts)
    assert len(reservations) == turns + 2 * len(scripts)  # + each script's start and end marker
    assert len(reads) == 3 + len(scripts) + 3, reads  # load, variants per script, finish


async def test_the_variant_store_is_pruned_when_a_campaign_ends(
    app: Any, accounts: Accounts
) -> None:
    owner = await accounts.signup()
    async with serve_app(agent_app(lambda m: REFUSAL)) as url:
        run_id, project_id = await start_run(accounts, owner.org_id, url, ["P01"])
        async with accounts.sessionmaker() as session, session.begin():
            await variants.store(
                session, org_id=owner.org_id, project_id=project_id, script_id="S1",
                step_id="S1.1", variants=[Variant("incident_urgent", f"old {i}") for i in range(505)],
            )  # fmt: skip
        await execute_run(
            sessionmaker=accounts.sessionmaker, settings=app.state.settings,
            bus=app.state.live_bus, run_id=run_id, should_stop=never,
        )  # fmt: skip
    async with accounts.sessionmaker() as session:
        left = (
            await session.scalars(
                select(PromptVariant).where(PromptVariant.project_id == project_id)
            )
        ).all()
    assert len(left) == variants.MAX_VARIANTS_PER_PROJECT
    assert any(v.script_id == "P01" and v.use_count == 1 for v in left)  # what the run used stays
