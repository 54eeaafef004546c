"""Keys that rotate: access tokens name their signing key (`kid`), the current key signs and
every key held verifies, so a rotation signs nobody out; a removed or unknown key is refused.
Production refuses a weak or shared key anywhere in a list, as it does for single secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from pydantic import ValidationError
from tests.support.settings import CALLBACK_TOKEN, JWT_SECRET, PIN_PEPPER, USSD_TOKEN, production

from deni.adapters.security import JWT_ALGORITHM, JWT_ISSUER, JwtAccessTokens
from deni.config import Settings, jwt_key_ring
from deni.domain.errors import Unauthorized
from deni.domain.secrecy import derived_key_id

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OLD = "5b0e8d3a6f1c4e7b9a2d5f8c1e4b7a0d3f6c9e2b5a8d1f4c"
NEW = "c7f2a9e4b1d6f3a8c5e2b9d6a3f0c7e4b1a8d5f2c9e6b3a0"
TTL_S = 900


def ring(keys: str, current: str = "") -> JwtAccessTokens:
    kid, held = jwt_key_ring(Settings(jwt_keys=keys, jwt_current_kid=current))
    return JwtAccessTokens(keys=held, current_kid=kid, ttl_s=TTL_S)


def kid_of(token: str) -> Any:
    return jwt.get_unverified_header(token).get("kid")


def test_a_token_issued_before_a_rotation_works_after_it_and_new_ones_use_the_new_key() -> None:
    before = ring(f"k1:{OLD}")
    token, _ = before.issue(user_id="u1", now=NOW)
    assert kid_of(token) == "k1"
    after = ring(f"k1:{OLD},k2:{NEW}", current="k2")
    later = NOW + timedelta(minutes=5)
    assert after.verify(token, now=later) == "u1"
    fresh, _ = after.issue(user_id="u2", now=later)
    assert kid_of(fresh) == "k2"
    assert after.verify(fresh, now=later) == "u2"
    # Every process is rolled at its own pace: one still on the old list verifies the new
    # token only once it holds the new key, which is why the new key is added first.
    assert ring(f"k2:{NEW},k1:{OLD}", current="k1").verify(fresh, now=later) == "u2"


def test_a_token_signed_by_a_removed_key_is_refused() -> None:
    token, _ = ring(f"k1:{OLD}").issue(user_id="u1", now=NOW)
    with pytest.raises(Unauthorized) as refused:
        ring(f"k2:{NEW}").verify(token, now=NOW + timedelta(minutes=1))
    assert refused.value.code == "invalid_token"


def test_an_unknown_kid_is_refused_even_with_a_held_keys_signature() -> None:
    claims = {"sub": "u1", "iss": JWT_ISSUER, "iat": int(NOW.timestamp())}
    claims["exp"] = claims["iat"] + TTL_S
    for kid in ("k9", "K1", ""):
        forged = jwt.encode(claims, OLD, algorithm=JWT_ALGORITHM, headers={"kid": kid})
        with pytest.raises(Unauthorized, match="key is not known"):
            ring(f"k1:{OLD}").verify(forged, now=NOW)


def test_a_token_named_by_one_kid_but_signed_by_another_key_is_refused() -> None:
    claims = {"sub": "u1", "iss": JWT_ISSUER, "iat": int(NOW.timestamp())}
    claims["exp"] = claims["iat"] + TTL_S
    swapped = jwt.encode(claims, NEW, algorithm=JWT_ALGORITHM, headers={"kid": "k1"})
    with pytest.raises(Unauthorized):
        ring(f"k1:{OLD},k2:{NEW}", current="k2").verify(swapped, now=NOW)


def test_a_token_from_before_key_ids_is_verified_against_the_keys_held() -> None:
    claims = {"sub": "u1", "iss": JWT_ISSUER, "iat": int(NOW.timestamp())}
    claims["exp"] = claims["iat"] + TTL_S
    legacy = jwt.encode(claims, OLD, algorithm=JWT_ALGORITHM)
    assert kid_of(legacy) is None
    assert ring(f"k2:{NEW},k1:{OLD}", current="k2").verify(legacy, now=NOW) == "u1"
    with pytest.raises(Unauthorized):
        ring(f"k2:{NEW}").verify(legacy, now=NOW)


def test_jwt_secret_alone_is_one_key_under_a_derived_kid_that_a_list_can_carry_over() -> None:
    single = Settings(jwt_secret=OLD)
    kid, keys = jwt_key_ring(single)
    assert kid == derived_key_id(OLD)
    assert keys == {kid: OLD}
    assert OLD[:8] not in kid
    token, _ = JwtAccessTokens(secret=OLD, ttl_s=TTL_S).issue(user_id="u1", now=NOW)
    assert kid_of(token) == kid
    # The first rotation: the old secret under its derived kid, the new key signing.
    rotated = ring(f"{kid}:{OLD},k2:{NEW}", current="k2")
    assert rotated.verify(token, now=NOW) == "u1"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"jwt_keys": "k1"}, "DENI_JWT_KEYS entry 1 must be kid:secret"),
        ({"jwt_keys": f"k1:{OLD},bad kid:{NEW}"}, "DENI_JWT_KEYS entry 2"),
        ({"jwt_keys": f"k1:{OLD},k1:{NEW}"}, "names the key id 'k1' twice"),
        ({"jwt_keys": f"k1:{OLD},k2:{NEW}"}, "DENI_JWT_CURRENT_KID must name"),
        ({"jwt_keys": f"k1:{OLD}", "jwt_current_kid": "k2"}, "does not hold"),
        ({"jwt_current_kid": "k2"}, "does not hold"),
    ],
)
def test_a_malformed_key_list_is_refused_in_every_environment(
    changes: dict[str, str], named: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**changes)
    assert named in str(refused.value)
    assert OLD not in str(refused.value)
    assert NEW not in str(refused.value)


def test_production_starts_with_a_key_list_and_previous_tokens() -> None:
    settings = production(
        jwt_keys=f"k1:{OLD},k2:{NEW}",
        jwt_current_kid="k2",
        callback_tokens_previous="9d4a7e1f3b8c2a6d0e5f9b3c7a1d4e8f",
        ussd_tokens_previous="Zt4Lm8Qw2Rx6Nv0Bp3Ks7Hd1Fg5Jc9Ya",
    )
    assert jwt_key_ring(settings)[0] == "k2"
    # DENI_JWT_SECRET carried into the list under its own kid is the same key kept.
    carried = f"{derived_key_id(JWT_SECRET)}:{JWT_SECRET},k2:{NEW}"
    assert production(jwt_keys=carried, jwt_current_kid="k2").jwt_keys == carried


def refusal(**changes: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        production(**changes)
    return str(refused.value)


@pytest.mark.parametrize("weak", ["0" * 32, "ab" * 20, "deadbeef" * 4, "short-but-random-Qm7"])
def test_production_refuses_a_weak_key_anywhere_in_a_list(weak: str) -> None:
    message = refusal(jwt_keys=f"k1:{OLD},k2:{weak}", jwt_current_kid="k1")
    assert "DENI_JWT_KEYS[k2]" in message
    assert weak not in message
    message = refusal(callback_tokens_previous=f"9d4a7e1f3b8c2a6d0e5f9b3c7a1d4e8f,{weak}")
    assert "DENI_CALLBACK_TOKENS_PREVIOUS[2]" in message
    assert "DENI_USSD_TOKENS_PREVIOUS[1]" in refusal(ussd_tokens_previous=weak)


@pytest.mark.parametrize(
    ("changes", "first", "second"),
    [
        ({"jwt_keys": f"k1:{PIN_PEPPER}"}, "DENI_JWT_KEYS[k1]", "DENI_PIN_PEPPER"),
        ({"jwt_keys": f"k1:{OLD},k2:{OLD}", "jwt_current_kid": "k2"}, "[k2]", "[k1]"),
        ({"callback_tokens_previous": USSD_TOKEN}, "DENI_CALLBACK_TOKENS_PREVIOUS[1]", "USSD"),
        ({"callback_tokens_previous": CALLBACK_TOKEN}, "PREVIOUS[1]", "DENI_CALLBACK_TOKEN"),
        ({"ussd_tokens_previous": USSD_TOKEN}, "DENI_USSD_TOKENS_PREVIOUS[1]", "USSD_TOKEN"),
    ],
)
def test_production_refuses_a_key_shared_with_another_use(
    changes: dict[str, str], first: str, second: str
) -> None:
    message = refusal(**changes)
    assert "must differ from" in message
    assert first in message
    assert second in message


def test_production_refuses_gateway_tokens_of_the_wrong_shape_or_a_placeholder() -> None:
    assert "PREVIOUS[1] must be hexadecimal" in refusal(
        callback_tokens_previous="Zt4Lm8Qw2Rx6Nv0Bp3Ks7Hd1Fg5Jc9Ya"
    )
    assert "DENI_USSD_TOKENS_PREVIOUS[1] must be letters and digits" in refusal(
        ussd_tokens_previous="Zt4Lm8Qw2Rx6-Nv0Bp3Ks7Hd1Fg5Jc9Ya"
    )
    placeholder = "Zq8change-me-in-production-development-onlyKd2Wp7"
    assert "DENI_JWT_KEYS[k1] contains a public development placeholder" in refusal(
        jwt_keys=f"k1:{placeholder}"
    )
