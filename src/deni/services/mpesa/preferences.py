"""A member's M-PESA preferences: whether loans pay out to M-PESA and repayments go straight out
to the lender's M-PESA (auto-payout)."""

from __future__ import annotations

from deni.services.common import audit, require_user
from deni.services.mpesa.ports import (
    MpesaPreferences,
)
from deni.services.passkeys import PasskeyProof, preferences_binding, prove_member
from deni.services.ports import Deps, PinDeps

# --- Preferences -------------------------------------------------------------------------------


def set_preferences(
    deps: PinDeps,
    *,
    user_id: str,
    pin: str | None = None,
    disburse_to_mpesa: bool | None = None,
    auto_payout: bool | None = None,
    channel: str = "api",
    passkey: PasskeyProof | None = None,
) -> tuple[bool, bool]:
    """Where a member's money goes without asking each time (a loan's principal, a lender's
    repayments: straight on to M-PESA). It decides future payouts, so it takes the PIN, or a
    passkey bound to these very choices."""
    now = deps.clock.now()
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        prove_member(
            uow,
            hasher=deps.hasher,
            user=user,
            pin=pin,
            passkey=passkey,
            binding=preferences_binding(
                disburse_to_mpesa=disburse_to_mpesa, auto_payout=auto_payout
            ),
            now=now,
            channel=channel,
        )
        current = uow.mpesa_preferences.get(user_id)
        updated = MpesaPreferences(
            user_id,
            current.disburse_to_mpesa if disburse_to_mpesa is None else disburse_to_mpesa,
            current.auto_payout if auto_payout is None else auto_payout,
        )
        uow.mpesa_preferences.set(updated, now)
        audit(
            uow,
            actor_id=user_id,
            channel=channel,
            command="set_preferences",
            details={
                "disburse_to_mpesa": updated.disburse_to_mpesa,
                "auto_payout": updated.auto_payout,
            },
            now=now,
        )
        uow.commit()
    return updated.disburse_to_mpesa, updated.auto_payout


def loans_pay_out_to_mpesa(deps: Deps, *, user_id: str) -> bool:
    """Whether a loan this member borrows is sent on to their M-PESA (the default) or stays in
    their Deni wallet: what a screen says about where the money went or goes."""
    with deps.uow.read_only() as uow:
        return uow.mpesa_preferences.get(user_id).disburse_to_mpesa
