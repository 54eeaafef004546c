"""The audit hash chain: any edited, deleted, inserted or reordered row is found."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from deni.domain.audit import GENESIS_HASH, ChainRow, chain_hash, verify_chain

START = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def build_chain(count: int, *, first_seq: int = 1, prev: str = GENESIS_HASH) -> list[ChainRow]:
    rows: list[ChainRow] = []
    for seq in range(first_seq, first_seq + count):
        at = START + timedelta(seconds=seq)
        fields = {
            "at": at,
            "actor_id": f"user-{seq % 3}",
            "channel": "api",
            "command": "repay_loan",
            "details": f'{{"amount_cents":{seq * 100}}}',
        }
        digest = chain_hash(prev_hash=prev, seq=seq, **fields)  # type: ignore[arg-type]
        rows.append(ChainRow(seq=seq, prev_hash=prev, hash=digest, **fields))  # type: ignore[arg-type]
        prev = digest
    return rows


def test_chain_hash_covers_every_field() -> None:
    base = {
        "prev_hash": GENESIS_HASH,
        "seq": 1,
        "at": START,
        "actor_id": "a",
        "channel": "api",
        "command": "c",
        "details": "{}",
    }
    digest = chain_hash(**base)  # type: ignore[arg-type]
    assert len(digest) == 64
    changes: dict[str, object] = {
        "prev_hash": "f" * 64,
        "seq": 2,
        "at": START + timedelta(microseconds=1),
        "actor_id": "b",
        "channel": "ussd",
        "command": "d",
        "details": "{ }",
    }
    for name, value in changes.items():
        assert chain_hash(**{**base, name: value}) != digest, name  # type: ignore[arg-type]


def test_fields_cannot_be_shifted_into_each_other() -> None:
    one = chain_hash(
        prev_hash=GENESIS_HASH, seq=1, at=START, actor_id="ab", channel="c", command="x", details=""
    )
    two = chain_hash(
        prev_hash=GENESIS_HASH, seq=1, at=START, actor_id="a", channel="bc", command="x", details=""
    )
    assert one != two


def test_chain_hash_refuses_bad_links() -> None:
    with pytest.raises(AssertionError):
        chain_hash(
            prev_hash="short", seq=1, at=START, actor_id="a", channel="c", command="x", details=""
        )
    with pytest.raises(AssertionError):
        chain_hash(
            prev_hash=GENESIS_HASH,
            seq=0,
            at=START,
            actor_id="a",
            channel="c",
            command="x",
            details="",
        )


def test_an_intact_chain_verifies_and_reports_its_end() -> None:
    rows = build_chain(5)
    problems, last_seq, last_hash = verify_chain(rows)
    assert problems == []
    assert (last_seq, last_hash) == (5, rows[-1].hash)


def test_an_empty_chain_ends_at_genesis() -> None:
    assert verify_chain([]) == ([], 0, GENESIS_HASH)


def test_a_chain_can_be_verified_in_pages() -> None:
    rows = build_chain(7)
    first, seq, last = verify_chain(rows[:3])
    second, seq, last = verify_chain(rows[3:], start_seq=seq, start_hash=last)
    assert first == second == []
    assert (seq, last) == (7, rows[-1].hash)


@pytest.mark.parametrize("field", ["actor_id", "channel", "command", "details"])
def test_an_edited_row_is_found(field: str) -> None:
    rows = build_chain(5)
    rows[2] = dataclasses.replace(rows[2], **{field: "tampered"})  # type: ignore[arg-type]
    problems, _, _ = verify_chain(rows)
    assert [(p.seq, p.problem) for p in problems] == [
        (3, "content was changed after it was written")
    ]


def test_an_edited_time_is_found() -> None:
    rows = build_chain(5)
    rows[1] = dataclasses.replace(rows[1], at=rows[1].at + timedelta(hours=1))
    problems, _, _ = verify_chain(rows)
    assert [p.seq for p in problems] == [2]


def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link() -> None:
    rows = build_chain(5)
    forged = dataclasses.replace(rows[2], details='{"amount_cents":1}')
    forged = dataclasses.replace(
        forged,
        hash=chain_hash(
            prev_hash=forged.prev_hash,
            seq=forged.seq,
            at=forged.at,
            actor_id=forged.actor_id,
            channel=forged.channel,
            command=forged.command,
            details=forged.details,
        ),
    )
    rows[2] = forged
    problems, _, _ = verify_chain(rows)
    assert [(p.seq, p.problem) for p in problems] == [(4, "does not link to the row before it")]


def test_a_deleted_middle_row_is_found() -> None:
    rows = build_chain(5)
    del rows[2]
    problems, _, _ = verify_chain(rows)
    assert (3, "rows 3..3 missing") in [(p.seq, p.problem) for p in problems]
    assert (4, "does not link to the row before it") in [(p.seq, p.problem) for p in problems]


def test_a_deleted_first_row_is_found() -> None:
    rows = build_chain(3)
    problems, _, _ = verify_chain(rows[1:])
    assert problems


def test_a_deleted_last_row_shows_as_a_shorter_chain() -> None:
    # The chain alone cannot know it lost its tail; the caller compares the end with the head.
    rows = build_chain(4)
    problems, last_seq, last_hash = verify_chain(rows[:-1])
    assert problems == []
    assert (last_seq, last_hash) != (4, rows[-1].hash)


def test_swapped_rows_are_found() -> None:
    rows = build_chain(5)
    rows[1], rows[2] = rows[2], rows[1]
    problems, _, _ = verify_chain(rows)
    assert problems


def test_rows_whose_sequence_numbers_were_swapped_are_found() -> None:
    rows = build_chain(5)
    rows[1], rows[2] = (
        dataclasses.replace(rows[2], seq=2),
        dataclasses.replace(rows[1], seq=3),
    )
    problems, _, _ = verify_chain(rows)
    assert {p.seq for p in problems} >= {2, 3}


def test_an_inserted_row_is_found() -> None:
    rows = build_chain(4)
    extra = build_chain(1, first_seq=3, prev=rows[1].hash)[0]
    problems, _, _ = verify_chain([*rows[:2], extra, *rows[2:]])
    assert problems


@given(
    count=st.integers(min_value=1, max_value=12),
    data=st.data(),
)
def test_any_single_tampering_is_found(count: int, data: st.DataObject) -> None:
    rows = build_chain(count)
    index = data.draw(st.integers(min_value=0, max_value=count - 1))
    action = data.draw(st.sampled_from(["edit", "delete", "swap", "rehash"]))
    if action == "edit":
        rows[index] = dataclasses.replace(rows[index], details=rows[index].details + " ")
    elif action == "delete":
        assume(index != count - 1)  # the tail: covered by comparing with the stored head
        del rows[index]
    elif action == "swap":
        assume(count >= 2)
        other = (index + 1) % count
        rows[index], rows[other] = rows[other], rows[index]
    else:
        rows[index] = dataclasses.replace(rows[index], hash="e" * 64)
    problems, _, _ = verify_chain(rows)
    assert problems
