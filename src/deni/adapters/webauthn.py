"""The WebAuthn port on py_webauthn (the `webauthn` package, Duo Labs): options for the browser's
prompts and the verification of its answers. User verification is required in both ceremonies;
attestation is not asked for ("none"), so any authenticator the phone trusts may hold a
passkey, and py_webauthn checks the attestation statement it does send."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import options_to_json_dict, parse_authentication_credential_json
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from deni.domain.passkeys import CREDENTIAL_ID_BYTES_MAX
from deni.services.passkey_ports import (
    CeremonyRefused,
    NewCredential,
    RelyingParty,
    VerifiedAssertion,
)

PROMPT_TIMEOUT_MS = 60_000


class PyWebAuthn:
    """`WebAuthn` (services/passkey_ports.py) on py_webauthn."""

    def registration_options(
        self,
        *,
        rp: RelyingParty,
        user_handle: bytes,
        user_name: str,
        display_name: str,
        challenge: bytes,
        exclude: Sequence[bytes],
    ) -> dict[str, object]:
        options = generate_registration_options(
            rp_id=rp.id,
            rp_name=rp.name,
            user_id=user_handle,
            user_name=user_name,
            user_display_name=display_name,
            challenge=challenge,
            timeout=PROMPT_TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                require_resident_key=True,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in exclude],
        )
        return dict(options_to_json_dict(options))

    def verify_registration(
        self, *, rp: RelyingParty, response: Mapping[str, object], challenge: bytes
    ) -> NewCredential:
        try:
            verified = verify_registration_response(
                credential=dict(response),
                expected_challenge=challenge,
                expected_rp_id=rp.id,
                expected_origin=rp.origin,
                require_user_verification=True,
            )
        except Exception as error:  # a malformed answer raises what its parser meets
            raise CeremonyRefused(f"{type(error).__name__}: {error}") from None
        if len(verified.credential_id) > CREDENTIAL_ID_BYTES_MAX:
            raise CeremonyRefused("credential id too long")
        return NewCredential(
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
        )

    def authentication_options(
        self, *, rp: RelyingParty, challenge: bytes, allow: Sequence[bytes]
    ) -> dict[str, object]:
        options = generate_authentication_options(
            rp_id=rp.id,
            challenge=challenge,
            timeout=PROMPT_TIMEOUT_MS,
            allow_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in allow],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return dict(options_to_json_dict(options))

    def credential_of(self, response: Mapping[str, object]) -> tuple[bytes, bytes | None]:
        try:
            parsed = parse_authentication_credential_json(_plain(response))
        except Exception as error:
            raise CeremonyRefused(f"{type(error).__name__}: {error}") from None
        if parsed.raw_id == b"" or len(parsed.raw_id) > CREDENTIAL_ID_BYTES_MAX:
            raise CeremonyRefused("no usable credential id")
        handle = parsed.response.user_handle
        return bytes(parsed.raw_id), None if handle is None else bytes(handle)

    def verify_authentication(
        self,
        *,
        rp: RelyingParty,
        response: Mapping[str, object],
        challenge: bytes,
        public_key: bytes,
        sign_count: int,
    ) -> VerifiedAssertion:
        try:
            verified = verify_authentication_response(
                credential=_plain(response),
                expected_challenge=challenge,
                expected_rp_id=rp.id,
                expected_origin=rp.origin,
                credential_public_key=public_key,
                credential_current_sign_count=sign_count,
                require_user_verification=True,
            )
        except Exception as error:
            raise CeremonyRefused(f"{type(error).__name__}: {error}") from None
        return VerifiedAssertion(sign_count=verified.new_sign_count)


def _plain(response: Mapping[str, object]) -> dict[str, Any]:
    return dict(response)
