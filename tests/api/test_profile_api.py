"""PATCH /me: a member changes their name, their language or both."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.support.api import assert_error
from tests.support.builders import api_user

from deni.bootstrap import Deni
from deni.services import users

ME = "/api/v1/me"


def test_a_member_changes_their_name_then_their_language(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni, name="Wanjiku Kamau")
    renamed = client.patch(ME, json={"name": "  Wanjiku   Otieno "}, headers=member.with_key())
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["language"]) == ("Wanjiku Otieno", "en")
    swahili = client.patch(ME, json={"language": "sw"}, headers=member.with_key())
    assert (swahili.json()["name"], swahili.json()["language"]) == ("Wanjiku Otieno", "sw")
    me = client.get(ME, headers=member.headers).json()
    assert (me["name"], me["language"]) == ("Wanjiku Otieno", "sw")
    stored = users.get_user(deni, user_id=member.user.id)
    assert (stored.name, stored.language) == ("Wanjiku Otieno", "sw")


def test_a_replayed_change_answers_the_same_and_bad_input_changes_nothing(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni, name="Baraka Mwangi")
    headers = member.with_key()
    first = client.patch(ME, json={"name": "Baraka M"}, headers=headers)
    again = client.patch(ME, json={"name": "Baraka M"}, headers=headers)
    assert first.json() == again.json()
    assert_error(client.patch(ME, json={}, headers=member.with_key()), 422, "validation_failed")
    assert_error(
        client.patch(ME, json={"name": "B"}, headers=member.with_key()), 422, "invalid_name"
    )
    bad_language = client.patch(ME, json={"language": "fr"}, headers=member.with_key())
    assert bad_language.status_code == 422
    assert client.patch(ME, json={"name": "X Y"}, headers=member.headers).status_code == 422
    assert users.get_user(deni, user_id=member.user.id).name == "Baraka M"
