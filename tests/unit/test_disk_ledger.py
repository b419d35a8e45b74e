"""The space ledger and the admission decision (pure).

Aspects: a download is admitted when what it needs fits in free less promised less the
reserve, waits otherwise, and can never fit when it needs more than the capacity less the
reserve; promises add up per filesystem and are independent across filesystems; a promise
released frees its bytes; two downloads that each fit alone are not both admitted into the
same free space; needs on the same filesystem are summed; the footprint rounds to blocks;
the reserve takes a size or a percent; the messages name needed and available bytes."""

from __future__ import annotations

import pytest

from model_agent import errors, settings
from model_agent.disk import ledger

MB = 1_000_000


def need(nbytes: int, key: str = "fs") -> ledger.Need:
    return ledger.Need(key, f"/{key}", nbytes)


@pytest.mark.parametrize(
    ("needed", "free", "capacity", "promised", "reserve", "verdict"),
    [
        (10, 100, 200, 0, 0, ledger.ADMIT),
        (100, 100, 200, 0, 0, ledger.ADMIT),
        (101, 100, 200, 0, 0, ledger.WAIT),
        (50, 100, 200, 60, 0, ledger.WAIT),
        (40, 100, 200, 60, 0, ledger.ADMIT),
        (40, 100, 200, 50, 20, ledger.WAIT),
        (30, 100, 200, 50, 20, ledger.ADMIT),
        (190, 100, 200, 0, 20, ledger.NEVER),
        (180, 100, 200, 0, 20, ledger.WAIT),
        (201, 300, 200, 0, 0, ledger.NEVER),
    ],
)
def test_admit_wait_or_never(needed, free, capacity, promised, reserve, verdict) -> None:
    book = ledger.Ledger()
    if promised:
        book.promise([need(promised)])
    decision = book.decide(need(needed), ledger.Space(free, capacity), reserve=reserve)
    assert decision.verdict == verdict


def test_two_downloads_are_never_admitted_into_the_same_free_space() -> None:
    book = ledger.Ledger()
    space = ledger.Space(free=10 * MB, capacity=20 * MB)
    first = book.decide(need(6 * MB), space, reserve=0)
    assert first.verdict == ledger.ADMIT
    token = book.promise([need(6 * MB)])
    second = book.decide(need(6 * MB), space, reserve=0)
    assert second.verdict == ledger.WAIT
    assert second.promised == 6 * MB and second.running == 1 and second.available == 4 * MB
    book.release(token)
    assert book.decide(need(6 * MB), space, reserve=0).verdict == ledger.ADMIT
    assert book.total() == 0


def test_promises_are_kept_per_filesystem_and_every_change_bumps_the_version() -> None:
    book = ledger.Ledger()
    version = book.version
    token = book.promise([need(5, "a"), need(7, "b"), need(1, "b")])
    assert book.version != version
    assert (book.promised("a"), book.promised("b"), book.promised("c")) == (5, 8, 0)
    before = book.version
    book.release(token)
    assert book.version != before and book.total() == 0


def test_needs_on_one_filesystem_are_summed_and_the_worst_verdict_rules() -> None:
    book = ledger.Ledger()
    spaces = {"a": ledger.Space(100, 200), "b": ledger.Space(1000, 2000)}
    decisions = book.decide_all(
        [need(60, "a"), need(60, "a"), need(10, "b")], spaces, {"a": 0, "b": 0}
    )
    assert [d.needed for d in decisions] == [120, 10]
    ruling = ledger.verdict_of(decisions)
    assert ruling is not None and ruling.verdict == ledger.WAIT and ruling.directory == "/a"
    assert ledger.verdict_of(book.decide_all([need(10, "b")], spaces, {"b": 0})) is None


def test_the_messages_name_needed_and_available_bytes() -> None:
    book = ledger.Ledger()
    book.promise([need(30)])
    waiting = book.decide(need(80), ledger.Space(100, 200), reserve=10)
    assert "80 bytes needed" in waiting.message and "60 available" in waiting.message
    assert "30 promised to 1 running download" in waiting.message
    never = book.decide(need(500), ledger.Space(100, 200), reserve=10)
    assert "never fit" in never.message and "500 bytes needed, 190 available" in never.message
    assert isinstance(errors.NoSpaceError(never.message), errors.PermanentError)


def test_the_footprint_covers_block_rounding_and_sidecars() -> None:
    assert ledger.footprint(0, 3, 4096) == 0
    assert ledger.footprint(1, 1, 4096) >= 4096 + 1
    assert ledger.footprint(10 * 4096, 10, 4096) == 10 * 4096 + 2 * 10 * 4096


@pytest.mark.parametrize(
    ("text", "capacity", "reserve"),
    [
        ("0", 1000, 0),
        ("100", 1000, 100),
        ("1Ki", 10**6, 1024),
        ("5%", 1000, 50),
        ("0.5%", 10**6, 5000),
    ],
)
def test_min_free_space_is_a_size_or_a_percent(text, capacity, reserve) -> None:
    assert settings.parse_free_space(text).of(capacity) == reserve


@pytest.mark.parametrize("text", ["-1", "100%", "x%", "ten", "5 %%"])
def test_a_bad_min_free_space_names_the_flag(text) -> None:
    with pytest.raises(errors.ConfigError, match="--min-free-space"):
        settings.resolve({"min_free_space": text}, {})


def test_min_free_space_comes_from_its_environment_variable() -> None:
    config = settings.resolve({}, {"MODEL_AGENT_MIN_FREE_SPACE": "10%"})
    assert config.min_free_space.of(1000) == 100
    assert settings.resolve({}, {}).min_free_space.of(10**12) == 0


@pytest.mark.parametrize(
    ("text", "value"), [("off", None), ("Never", None), ("0", 0.0), ("90s", 90.0), ("24h", 86400.0)]
)
def test_cleanup_durations_are_off_or_a_duration(text, value) -> None:
    assert settings.parse_optional_duration(text) == value
