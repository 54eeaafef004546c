"""Ledger rules: balanced drafts, the content hash behind idempotency, signs and overdraft."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from deni.domain.errors import InsufficientFunds
from deni.domain.ledger import (
    POSTINGS_PER_ENTRY_MAX,
    EntryCode,
    EntryDraft,
    NormalSide,
    PlatformAccount,
    Posting,
    balance_delta,
    movement,
    require_non_negative,
    reversal_postings,
    wallet_account_id,
)

ALICE, BOB = wallet_account_id("alice"), wallet_account_id("bob")
PAYBILL = PlatformAccount.MPESA_PAYBILL.value


def draft(postings: tuple[Posting, ...], **changes: object) -> EntryDraft:
    fields: dict[str, object] = {
        "idempotency_key": "key-1",
        "code": EntryCode.TRANSFER,
        "postings": postings,
        "cause_type": "test",
        "cause_id": "cause-1",
    }
    fields.update(changes)
    return EntryDraft(**fields)  # type: ignore[arg-type]


def test_wallet_account_id() -> None:
    assert wallet_account_id("u-1") == "wallet:u-1"


def test_platform_normal_sides() -> None:
    debit_normal = {PlatformAccount.MPESA_PAYBILL, PlatformAccount.MPESA_B2C_FLOAT}
    for account in PlatformAccount:
        expected = NormalSide.DEBIT if account in debit_normal else NormalSide.CREDIT
        assert account.normal_side is expected, account
        assert account.value.startswith("platform:")


def test_movement_debits_the_first_and_credits_the_second() -> None:
    debit, credit = movement(debit_account_id=ALICE, credit_account_id=BOB, amount_cents=500)
    assert debit == Posting(ALICE, 500)
    assert credit == Posting(BOB, -500)


@pytest.mark.parametrize("amount", [0, -1])
def test_movement_refuses_non_positive_amounts(amount: int) -> None:
    with pytest.raises(AssertionError):
        movement(debit_account_id=ALICE, credit_account_id=BOB, amount_cents=amount)


def test_movement_refuses_the_same_account_on_both_sides() -> None:
    with pytest.raises(AssertionError):
        movement(debit_account_id=ALICE, credit_account_id=ALICE, amount_cents=1)


def test_a_credit_raises_a_wallet_and_a_debit_raises_mpesa_cash() -> None:
    # Deposit of 700: paybill is debited (+700), the wallet credited (-700); both balances grow.
    assert balance_delta(NormalSide.CREDIT, -700) == 700
    assert balance_delta(NormalSide.DEBIT, 700) == 700
    assert balance_delta(NormalSide.CREDIT, 700) == -700
    assert balance_delta(NormalSide.DEBIT, -700) == -700


def test_a_balanced_draft_is_accepted() -> None:
    entry = draft(movement(debit_account_id=PAYBILL, credit_account_id=ALICE, amount_cents=100))
    assert sum(p.amount_cents for p in entry.postings) == 0


@pytest.mark.parametrize(
    "postings",
    [
        (Posting(ALICE, 100), Posting(BOB, -99)),  # does not balance
        (Posting(ALICE, 100),),  # one posting
        (),
        (Posting(ALICE, 0), Posting(BOB, 0)),  # zero postings
        (Posting(ALICE, 100), Posting(ALICE, -100)),  # the same account twice
        (Posting(ALICE, 1.5), Posting(BOB, -1.5)),  # type: ignore[arg-type]  # not cents
        (Posting(ALICE, True), Posting(BOB, -1)),  # bool is not int
    ],
)
def test_malformed_drafts_are_programmer_errors(postings: tuple[Posting, ...]) -> None:
    with pytest.raises(AssertionError):
        draft(postings)


def fan_out(count: int) -> tuple[Posting, ...]:
    """`count` postings: count - 1 debits of 1 and one credit that balances them."""
    return (*(Posting(f"a{i}", 1) for i in range(count - 1)), Posting("z", -(count - 1)))


def test_at_most_the_maximum_postings_per_entry() -> None:
    assert len(draft(fan_out(POSTINGS_PER_ENTRY_MAX)).postings) == POSTINGS_PER_ENTRY_MAX
    with pytest.raises(AssertionError):
        draft(fan_out(POSTINGS_PER_ENTRY_MAX + 1))


@pytest.mark.parametrize("changes", [{"idempotency_key": ""}, {"cause_type": ""}, {"cause_id": ""}])
def test_key_and_cause_are_required(changes: dict[str, object]) -> None:
    with pytest.raises(AssertionError):
        draft(movement(debit_account_id=ALICE, credit_account_id=BOB, amount_cents=1), **changes)


def test_reversal_postings_negate_every_posting() -> None:
    postings = (Posting(ALICE, 300), Posting(BOB, -200), Posting(PAYBILL, -100))
    assert reversal_postings(postings) == (
        Posting(ALICE, -300),
        Posting(BOB, 200),
        Posting(PAYBILL, 100),
    )


def test_require_non_negative() -> None:
    assert require_non_negative(account_id=ALICE, balance_cents=100, delta_cents=-100) == 0
    assert require_non_negative(account_id=ALICE, balance_cents=0, delta_cents=50) == 50
    with pytest.raises(InsufficientFunds) as caught:
        require_non_negative(account_id=ALICE, balance_cents=100, delta_cents=-101)
    assert caught.value.code == "insufficient_funds"


# --- content hash (what makes a replay a replay) -------------------------------------------------

accounts = st.sampled_from([ALICE, BOB, PAYBILL, "wallet:carol", "platform:fees"])


@st.composite
def balanced_postings(draw: st.DrawFn) -> tuple[Posting, ...]:
    ids = draw(st.lists(accounts, min_size=2, max_size=5, unique=True))
    amounts = draw(
        st.lists(
            st.integers(min_value=-(10**9), max_value=10**9).filter(bool),
            min_size=len(ids) - 1,
            max_size=len(ids) - 1,
        )
    )
    last = -sum(amounts)
    if last == 0:  # keep every posting non-zero: push the first one further
        amounts[0] += 1 if amounts[0] > 0 else -1
        last = -sum(amounts)
    return tuple(Posting(a, c) for a, c in zip(ids, [*amounts, last], strict=True))


@given(balanced_postings(), st.randoms(use_true_random=False), st.text(max_size=20))
def test_content_hash_ignores_posting_order_memo_and_key(
    postings: tuple[Posting, ...], rnd: object, memo: str
) -> None:
    shuffled = list(postings)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first = draft(postings)
    second = draft(tuple(shuffled), memo=memo, idempotency_key="another-key")
    assert first.content_hash() == second.content_hash()
    assert len(first.content_hash()) == 64


@given(balanced_postings(), st.integers(min_value=1, max_value=10**6))
def test_content_hash_changes_with_any_amount(postings: tuple[Posting, ...], extra: int) -> None:
    first, second = postings[0], postings[1]
    changed = (
        Posting(first.account_id, first.amount_cents + extra),
        Posting(second.account_id, second.amount_cents - extra),
        *postings[2:],
    )
    assume(all(p.amount_cents != 0 for p in changed))  # a zero posting is not a valid entry
    assert draft(postings).content_hash() != draft(changed).content_hash()


@given(
    balanced_postings(),
    st.sampled_from(["code", "cause_type", "cause_id", "reverses_entry_id", "account"]),
)
def test_content_hash_changes_with_every_field_but_memo(
    postings: tuple[Posting, ...], field: str
) -> None:
    original = draft(postings)
    if field == "code":
        other = dataclasses.replace(original, code=EntryCode.DEPOSIT)
    elif field == "cause_type":
        other = dataclasses.replace(original, cause_type="other")
    elif field == "cause_id":
        other = dataclasses.replace(original, cause_id="cause-2")
    elif field == "reverses_entry_id":
        other = dataclasses.replace(original, reverses_entry_id="entry-9")
    else:
        renamed = (Posting("wallet:zed", postings[0].amount_cents), *postings[1:])
        other = dataclasses.replace(original, postings=renamed)
    assert original.content_hash() != other.content_hash()


def test_content_hash_is_stable_across_processes() -> None:
    # A stored hash must still match after a restart: no Python hash randomisation inside.
    entry = draft(movement(debit_account_id=PAYBILL, credit_account_id=ALICE, amount_cents=100))
    assert (
        entry.content_hash()
        == (
            draft(movement(debit_account_id=PAYBILL, credit_account_id=ALICE, amount_cents=100))
        ).content_hash()
    )
    canonical = (
        '{"cause":["test","cause-1"],"code":"transfer",'
        '"postings":[["platform:mpesa_paybill",100],["wallet:alice",-100]],"reverses":null}'
    )
    assert entry.content_hash() == hashlib.sha256(canonical.encode()).hexdigest()
