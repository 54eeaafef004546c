"""The domain's refusals and broken rules say what went wrong, in words a member (a refusal) or a
programmer (an assertion) can act on."""

from __future__ import annotations

import pytest

from deni.domain.errors import InsufficientFunds, InvalidAmount
from deni.domain.ledger import EntryCode, EntryDraft, Posting, require_non_negative
from deni.domain.money import require_cents


def test_a_wallet_going_below_zero_is_refused_in_plain_words() -> None:
    with pytest.raises(InsufficientFunds) as caught:
        require_non_negative(account_id="wallet:a", balance_cents=99, delta_cents=-100)
    assert caught.value.message == "There is not enough money in the wallet for this."
    assert require_non_negative(account_id="wallet:a", balance_cents=100, delta_cents=-100) == 0


@pytest.mark.parametrize("amount", [1.5, "100", True, None])
def test_an_amount_that_is_not_whole_cents_is_refused_in_plain_words(amount: object) -> None:
    with pytest.raises(InvalidAmount) as caught:
        require_cents(amount, amount_cents_min=0, amount_cents_max=1_000)
    assert caught.value.message == "Amounts are whole numbers of cents."


def test_bounds_may_allow_exactly_one_amount() -> None:
    assert require_cents(500, amount_cents_min=500, amount_cents_max=500) == 500


@pytest.mark.parametrize(
    ("key", "postings", "rule"),
    [
        ("", (Posting("a", 1), Posting("b", -1)), "every entry carries an idempotency key"),
        ("k", (Posting("a", 2), Posting("b", -1)), "an entry must balance"),
        (
            "k",
            (Posting("a", 1), Posting("a", 1), Posting("b", -2)),
            "one posting per account per entry",
        ),
    ],
)
def test_a_malformed_entry_names_the_rule_it_breaks(
    key: str, postings: tuple[Posting, ...], rule: str
) -> None:
    with pytest.raises(AssertionError, match=f"^{rule}$"):
        EntryDraft(key, EntryCode.TRANSFER, postings, "test", "c-1")
