"""The *383# journey, as data: every screen, what it shows and where each answer leads.

Texts are message ids in the en/sw catalogs. Navigation that works on every screen (0 back,
00 main menu, 98 more on lists) is the engine's, not repeated here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from deni.entrypoints.ussd import flows as f
from deni.entrypoints.ussd.screens import Kind, Option, Screen

MENU, INPUT, LIST = Kind.MENU, Kind.INPUT, Kind.LIST
WELCOME, MAIN, RESUME, CLAIM = "welcome", "main", "resume", "claim"

_SCREENS = (
    # Someone whose number is not on Deni yet: language first, so the rest is in it.
    Screen(
        WELCOME,
        MENU,
        "ussd.welcome",
        field="language",
        options=(
            Option("ussd.english", "reg_name", value="en"),
            Option("ussd.swahili", "reg_name", value="sw"),
        ),
        root=True,
    ),
    Screen("reg_name", INPUT, "ussd.reg_name", field="name", parse=f.parse_name, next="reg_pin"),
    Screen(
        "reg_pin",
        INPUT,
        "ussd.reg_pin",
        field="pin",
        parse=f.parse_new_pin,
        next="reg_pin2",
        secret=True,
    ),
    Screen("reg_pin2", INPUT, "ussd.reg_pin2", submit=f.submit_register, secret=True),
    # A number whose account was made online and never proven: the account's PIN proves it is
    # the dialler's; or the SIM's holder opens their own account, which takes the number.
    Screen(
        CLAIM,
        MENU,
        "ussd.claim",
        view=f.view_claim,
        options=(
            Option("ussd.opt_claim_mine", "claim_pin"),
            Option("ussd.opt_claim_new", action=f.action_claim_new),
        ),
        root=True,
    ),
    Screen(
        "claim_pin",
        INPUT,
        "ussd.claim_pin",
        submit=f.submit_claim,
        next=MAIN,
        secret=True,
        resumable=False,
    ),
    # Registered.
    Screen(
        MAIN,
        MENU,
        "ussd.main",
        view=f.view_main,
        options=(
            Option("ussd.opt_request", "loan_phone"),
            Option("ussd.opt_my_loans", "my_loans"),
            Option("ussd.opt_gave", "gave_list"),
            Option("ussd.opt_asks", "ask_list"),
            Option("ussd.opt_wallet", "wallet"),
            Option("ussd.opt_statement", "statement"),
            Option("ussd.opt_settings", "settings"),
        ),
        root=True,
    ),
    Screen(
        RESUME,
        MENU,
        "ussd.resume",
        options=(
            Option("ussd.yes", action=f.action_resume),
            Option("ussd.no", action=f.action_fresh_start),
        ),
        resumable=False,
    ),
    # 1 Request a loan: lender, amount, days, fee; then the cost of credit, confirmed by PIN.
    Screen(
        "loan_phone",
        INPUT,
        "ussd.loan_phone",
        field="lender",
        parse=f.parse_lender,
        next="loan_amount",
    ),
    Screen(
        "loan_amount",
        INPUT,
        "ussd.loan_amount",
        view=f.view_lender,
        field="principal",
        parse=f.parse_principal,
        next="loan_days",
    ),
    Screen("loan_days", INPUT, "ussd.loan_days", field="days", parse=f.parse_days, next="loan_fee"),
    Screen(
        "loan_fee",
        INPUT,
        "ussd.loan_fee",
        view=f.view_lender,
        field="fee",
        parse=f.parse_fee,
        next="loan_confirm",
        zero_is_back=False,  # 0 is a fee
    ),
    Screen(
        "loan_confirm",
        INPUT,
        "ussd.loan_confirm",
        view=f.view_quote,
        submit=f.submit_request_loan,
        secret=True,
    ),
    # 2 My loans, as borrower: what I owe, my requests waiting for the lender, past loans.
    Screen(
        "my_loans",
        MENU,
        "ussd.my_loans",
        options=(
            Option("ussd.opt_owe", "owe_list"),
            Option("ussd.opt_mine", "mine_list"),
            Option("ussd.opt_past", "past_list"),
        ),
    ),
    Screen(
        "mine_list",
        LIST,
        "ussd.mine_list",
        items=f.items_mine,
        line="ussd.line_mine",
        field="loan_id",
        next="mine_detail",
    ),
    Screen(
        "mine_detail",
        MENU,
        "ussd.mine_detail",
        view=f.view_mine,
        options=(Option("ussd.opt_cancel_request", "mine_cancel"),),
    ),
    Screen(
        "mine_cancel",
        MENU,
        "ussd.mine_cancel",
        view=f.view_mine,
        options=(Option("ussd.opt_yes_cancel", action=f.action_cancel),),
    ),
    Screen(
        "past_list",
        LIST,
        "ussd.past_list",
        items=f.items_past,
        line="ussd.line_past",
        field="loan_id",
        next="past_detail",
    ),
    Screen("past_detail", MENU, "ussd.past_detail", view=f.view_past),
    # 2 1 Loans I owe: list, detail, repay from the wallet or by M-PESA.
    Screen(
        "owe_list",
        LIST,
        "ussd.owe_list",
        items=f.items_owed,
        line="ussd.line_owed",
        field="loan_id",
        next="owe_detail",
    ),
    Screen(
        "owe_detail",
        MENU,
        "ussd.owe_detail",
        view=f.view_owed_loan,
        options=(
            Option("ussd.opt_repay_wallet", "repay_amount"),
            Option("ussd.opt_repay_mpesa", "repay_mpesa"),
        ),
    ),
    Screen(
        "repay_amount",
        INPUT,
        "ussd.repay_amount",
        view=f.view_repay_wallet_amount,
        field="amount",
        parse=f.parse_repay_amount,
        next="repay_pin",
    ),
    Screen(
        "repay_pin",
        INPUT,
        "ussd.repay_pin",
        view=f.view_repay_wallet_pin,
        submit=f.submit_repay_wallet,
        secret=True,
    ),
    Screen(
        "repay_mpesa",
        INPUT,
        "ussd.repay_mpesa",
        view=f.view_repay_mpesa,
        submit=f.submit_repay_mpesa,
    ),
    # 3 Loans I gave: list, detail, remind, write off.
    Screen(
        "gave_list",
        LIST,
        "ussd.gave_list",
        items=f.items_lent,
        line="ussd.line_lent",
        field="loan_id",
        next="gave_detail",
    ),
    Screen(
        "gave_detail",
        MENU,
        "ussd.gave_detail",
        view=f.view_lent_loan,
        options=(
            Option("ussd.opt_remind", action=f.action_remind),
            Option("ussd.opt_write_off", "write_off_pin"),
        ),
    ),
    Screen(
        "write_off_pin",
        INPUT,
        "ussd.write_off_pin",
        view=f.view_lent_loan,
        submit=f.submit_write_off,
        secret=True,
    ),
    # 4 Requests waiting for me: approve with PIN, or decline.
    Screen(
        "ask_list",
        LIST,
        "ussd.ask_list",
        items=f.items_asks,
        line="ussd.line_ask",
        field="loan_id",
        next="ask_detail",
    ),
    Screen(
        "ask_detail",
        MENU,
        "ussd.ask_detail",
        view=f.view_ask,
        options=(
            Option("ussd.opt_approve", "approve_pin"),
            Option("ussd.opt_decline", action=f.action_decline),
        ),
    ),
    Screen(
        "approve_pin",
        INPUT,
        "ussd.approve_pin",
        view=f.view_approve_pin,
        submit=f.submit_approve,
        secret=True,
    ),
    # 5 Wallet: balance, top up by STK push, withdraw to M-PESA, my book.
    Screen(
        "wallet",
        MENU,
        "ussd.wallet",
        view=f.view_wallet,
        options=(
            Option("ussd.opt_top_up", "top_up"),
            Option("ussd.opt_withdraw", "withdraw_amount"),
            # The main menu has no room for an 8th line: in Swahili, under a refusal, 7
            # characters are left. "My account" (the wallet) holds the book instead.
            Option("ussd.opt_book", "book"),
        ),
    ),
    Screen("top_up", INPUT, "ussd.top_up", submit=f.submit_top_up),
    Screen(
        "withdraw_amount",
        INPUT,
        "ussd.withdraw_amount",
        view=f.view_withdraw_amount,
        field="amount",
        parse=f.parse_withdraw_amount,
        next="withdraw_pin",
    ),
    Screen(
        "withdraw_pin",
        INPUT,
        "ussd.withdraw_pin",
        view=f.view_withdraw_pin,
        submit=f.submit_withdraw,
        secret=True,
    ),
    # 6 Mini-statement: the last five movements.
    Screen("statement", MENU, "ussd.statement", view=f.view_statement),
    # 5 3 My book: what I lent adds up to; 1 my history as borrower (docs/ussd.md).
    Screen(
        "book",
        MENU,
        "ussd.book",
        view=f.view_book,
        options=(Option("ussd.opt_history", "history"),),
    ),
    Screen("history", MENU, "ussd.history", view=f.view_history),
    # 7 Settings: change PIN, language, a forgotten PIN, closing the account, where loans go.
    Screen(
        "settings",
        MENU,
        "ussd.settings",
        options=(
            Option("ussd.opt_change_pin", "pin_old"),
            Option("ussd.opt_language", "language"),
            Option("ussd.opt_forgot_pin", "reset_new"),
            Option("ussd.opt_close", "close_pin"),
            Option("ussd.opt_payout", "payout"),
        ),
    ),
    # 7 5 Where the loans I borrow go: M-PESA or the Deni wallet, with the PIN.
    Screen(
        "payout",
        MENU,
        "ussd.payout",
        view=f.view_payout,
        field="payout",
        options=(
            Option("ussd.opt_to_mpesa", "payout_pin", value="mpesa"),
            Option("ussd.opt_to_wallet", "payout_pin", value="wallet"),
        ),
    ),
    Screen(
        "payout_pin",
        INPUT,
        "ussd.payout_pin",
        view=f.view_payout_pin,
        submit=f.submit_payout,
        secret=True,
    ),
    Screen("close_pin", INPUT, "ussd.close_pin", submit=f.submit_close, secret=True),
    Screen(
        "reset_new",
        INPUT,
        "ussd.reset_new",
        field="reset_pin",
        parse=f.parse_new_pin,
        next="reset_new2",
        secret=True,
    ),
    Screen("reset_new2", INPUT, "ussd.pin_new2", submit=f.submit_reset_pin, secret=True),
    Screen("pin_old", INPUT, "ussd.pin_old", submit=f.submit_old_pin, next="pin_new", secret=True),
    Screen(
        "pin_new",
        INPUT,
        "ussd.pin_new",
        field="new_pin",
        parse=f.parse_new_pin,
        next="pin_new2",
        secret=True,
    ),
    Screen("pin_new2", INPUT, "ussd.pin_new2", submit=f.submit_change_pin, secret=True),
    Screen(
        "language",
        MENU,
        "ussd.language",
        options=(
            Option("ussd.english", action=f.action_english),
            Option("ussd.swahili", action=f.action_swahili),
        ),
    ),
)

SCREENS: Mapping[str, Screen] = MappingProxyType({screen.id: screen for screen in _SCREENS})
assert len(SCREENS) == len(_SCREENS), "screen ids are unique"


def check_journey(screens: Mapping[str, Screen]) -> list[str]:
    """Every target names a screen; every screen but the roots is reachable. [] when sound."""
    problems = []
    targets = {o.target for s in screens.values() for o in s.options if o.target}
    targets |= {s.next for s in screens.values() if s.next}
    for target in sorted(targets - set(screens)):
        problems.append(f"unknown screen {target!r}")
    # Reached from code (flows return Goto to these) or by the engine itself.
    reached_elsewhere = {WELCOME, MAIN, RESUME, CLAIM}
    for screen_id in sorted(set(screens) - targets - reached_elsewhere):
        problems.append(f"nothing leads to {screen_id!r}")
    return problems


assert not check_journey(SCREENS), check_journey(SCREENS)
