"""The Web Push use cases with a fake sender (tests/fakes/push.py) over the real store: what a
subscription must be, the bound per member, who a browser belongs to, the chosen events,
retries with their bound, gone and expired subscriptions, and that nothing secret is pushed."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import pytest
from tests.fakes.clock import ManualClock
from tests.fakes.push import FakePushSender
from tests.support.builders import register
from tests.support.push import Browser

from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain import push as rules
from deni.domain.errors import ValidationFailed
from deni.domain.users import User
from deni.services import loans, push
from deni.services.push_ports import PushNotSent

ENDPOINT = "https://fcm.googleapis.com/fcm/send/abc123"


@pytest.fixture
def sender() -> FakePushSender:
    return FakePushSender()


@pytest.fixture
def deni(
    settings: Settings, clock: ManualClock, hasher: object, sender: FakePushSender
) -> Iterator[Deni]:
    wired = bootstrap(settings, clock=clock, hasher=hasher, push_sender=sender)  # type: ignore[arg-type]
    yield wired
    wired.close()


def subscribe(
    deni: Deni, user: User, endpoint: str = ENDPOINT, **changes: object
) -> push.PushSettings:
    browser = Browser()
    values: dict[str, object] = {
        "user_id": user.id,
        "endpoint": endpoint,
        "p256dh": browser.p256dh,
        "auth": browser.auth,
        "expiration_time_ms": None,
    }
    values.update(changes)
    return push.subscribe(deni.push, **values)  # type: ignore[arg-type]


def ask(deni: Deni, borrower: User, lender: User) -> str:
    loan = loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=100_000,
        fee_cents=5_000,
        term_days=7,
    )
    return loan.id


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://fcm.googleapis.com/fcm/send/abc",  # plain http to the world
        "http://10.0.0.5:8080/push",  # plain http, not loopback
        "ftp://127.0.0.1:21/push",
        "https://user:pw@push.example/x",
        "https:///nohost",
        "https://push.example/x#frag",
        "https://push.example/" + "a" * 1100,
        "https://push.example/a b",
        "https://push.example/not-a-push-service",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/push",
        "https://fcm.googleapis.com.evil.example/x",
        "https://evilfcm.googleapis.com.example/x",
        "https://fcm.googleapis.com:8443/fcm/send/x",
        "http://127.0.0.1/push",  # loopback, but no port: not the test's service
        "javascript:alert(1)",
        "",
    ],
)
def test_an_endpoint_that_is_no_push_service_is_refused(deni: Deni, endpoint: str) -> None:
    user = register(deni)
    with pytest.raises(ValidationFailed) as refused:
        subscribe(deni, user, endpoint)
    assert refused.value.code == "invalid_push_endpoint"
    assert push.settings_of(deni.push, user_id=user.id).subscriptions == 0


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://fcm.googleapis.com/fcm/send/dGVzdA:APA91b",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA",
        "https://web.push.apple.com/QGuQyavXutnMH",
    ],
)
def test_the_browsers_push_services_are_taken(deni: Deni, endpoint: str) -> None:
    assert subscribe(deni, register(deni), endpoint).subscriptions == 1


def test_plain_http_to_loopback_is_for_the_test_environment_only(deni: Deni) -> None:
    user = register(deni)
    local = "http://127.0.0.1:18399/push/x"
    assert subscribe(deni, user, local).subscriptions == 1
    production_like = dataclasses.replace(deni.push, allow_loopback_http=False)
    browser = Browser()
    with pytest.raises(ValidationFailed) as refused:
        push.subscribe(
            production_like,
            user_id=user.id,
            endpoint="http://127.0.0.1:18399/push/y",
            p256dh=browser.p256dh,
            auth=browser.auth,
            expiration_time_ms=None,
        )
    assert refused.value.code == "invalid_push_endpoint"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("p256dh", base64.urlsafe_b64encode(b"\x04" + b"x" * 63).decode()),  # 64 bytes
        ("p256dh", base64.urlsafe_b64encode(b"\x03" + b"x" * 64).decode()),  # not uncompressed
        ("p256dh", "not base64 !!"),
        ("auth", base64.urlsafe_b64encode(b"x" * 15).decode()),
        ("auth", ""),
    ],
)
def test_keys_that_cannot_encrypt_are_refused(deni: Deni, field: str, value: str) -> None:
    user = register(deni)
    with pytest.raises(ValidationFailed) as refused:
        subscribe(deni, user, **{field: value})
    assert refused.value.code == "invalid_push_subscription"


def test_a_member_keeps_at_most_five_browsers_the_newest(deni: Deni, clock: ManualClock) -> None:
    user = register(deni)
    for number in range(rules.SUBSCRIPTIONS_PER_MEMBER_MAX + 2):
        subscribe(deni, user, f"{ENDPOINT}/{number}")
        clock.advance(timedelta(seconds=1))
    kept = [s.endpoint for s in deni.push.store.subscriptions_of(user.id)]
    assert kept == [f"{ENDPOINT}/{n}" for n in range(2, 7)]


def test_subscribing_again_keeps_the_browser_and_what_waits_for_it(
    deni: Deni, clock: ManualClock, sender: FakePushSender
) -> None:
    lender, borrower = register(deni), register(deni)
    subscribe(deni, lender)
    [first] = deni.push.store.subscriptions_of(lender.id)
    ask(deni, borrower, lender)
    clock.advance(timedelta(seconds=5))
    newer = Browser()
    subscribe(deni, lender, p256dh=newer.p256dh, auth=newer.auth)
    [kept] = deni.push.store.subscriptions_of(lender.id)
    assert (kept.id, kept.created_at) == (first.id, first.created_at)
    assert (kept.p256dh, kept.auth) == (newer.p256dh, newer.auth)
    push.deliver(deni.push)
    assert [p.message["kind"] for p in sender.sent] == ["loan_requested"]


def test_a_browser_belongs_to_whoever_subscribed_it_last(
    deni: Deni, sender: FakePushSender
) -> None:
    first, second, borrower = register(deni), register(deni), register(deni)
    subscribe(deni, first)
    subscribe(deni, second)  # the same browser, another member signed in
    assert push.settings_of(deni.push, user_id=first.id).subscriptions == 0
    assert push.settings_of(deni.push, user_id=second.id).subscriptions == 1
    ask(deni, borrower, first)
    push.deliver(deni.push)
    assert sender.sent == []  # the first member's request does not reach the second's phone


def test_only_the_chosen_events_are_pushed_and_unknown_ones_are_refused(
    deni: Deni, sender: FakePushSender
) -> None:
    lender, borrower = register(deni), register(deni)
    subscribe(deni, lender)
    with pytest.raises(ValidationFailed) as refused:
        push.choose_kinds(deni.push, user_id=lender.id, kinds=["loan_requested", "pin_reset_code"])
    assert refused.value.code == "invalid_push_kind"
    chosen = push.choose_kinds(deni.push, user_id=lender.id, kinds=["due_today", "pin_locked"])
    assert chosen.kinds == ("due_today", "pin_locked")
    ask(deni, borrower, lender)
    report = push.deliver(deni.push)
    assert (report.enqueued, report.sent) == (0, 0)
    push.choose_kinds(deni.push, user_id=lender.id, kinds=list(rules.PUSH_KINDS))
    push.deliver(deni.push)
    assert sender.sent == []  # a choice made later does not reach back to what was skipped
    ask(deni, borrower, lender)
    push.deliver(deni.push)
    assert [p.message["kind"] for p in sender.sent] == ["loan_requested"]


def test_a_notification_made_before_the_browser_subscribed_is_not_pushed(
    deni: Deni, clock: ManualClock, sender: FakePushSender
) -> None:
    lender, borrower = register(deni), register(deni)
    ask(deni, borrower, lender)
    clock.advance(timedelta(seconds=1))
    subscribe(deni, lender)
    assert push.deliver(deni.push).sent == 0
    assert sender.sent == []


def test_retries_are_bounded_and_each_carries_the_same_topic(
    deni: Deni, clock: ManualClock, sender: FakePushSender
) -> None:
    lender, borrower = register(deni), register(deni)
    subscribe(deni, lender)
    sender.failures[ENDPOINT] = [PushNotSent("503") for _ in range(10)]
    ask(deni, borrower, lender)
    reports = []
    for _ in range(push.ATTEMPTS_MAX + 2):
        reports.append(push.deliver(deni.push))
        clock.advance(timedelta(seconds=push.BACKOFF_S_MAX + 1))
    assert sender.attempts == push.ATTEMPTS_MAX
    assert sum(r.retrying for r in reports) == push.ATTEMPTS_MAX - 1
    assert sum(r.failed for r in reports) == 1
    assert sender.sent == []


def test_a_lapsed_lease_is_claimed_again_and_two_claims_never_share_a_push(
    deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = register(deni), register(deni)
    subscribe(deni, lender)
    ask(deni, borrower, lender)
    store = deni.push.store
    now = clock.now()
    store.enqueue_new(now=now, since=now - timedelta(minutes=1), default_kinds=rules.PUSH_KINDS)
    [claimed] = store.claim_due(now=now, limit=10, lease_s=60)
    assert store.claim_due(now=now, limit=10, lease_s=60) == []  # leased
    [again] = store.claim_due(now=now + timedelta(seconds=61), limit=10, lease_s=60)
    assert again.notification_id == claimed.notification_id
    assert again.attempts == 1


def test_the_push_service_saying_gone_drops_the_browser(deni: Deni, sender: FakePushSender) -> None:
    lender, borrower = register(deni), register(deni)
    subscribe(deni, lender)
    sender.failures[ENDPOINT] = [PushNotSent("410", gone=True)]
    ask(deni, borrower, lender)
    assert push.deliver(deni.push).gone == 1
    assert push.settings_of(deni.push, user_id=lender.id).subscriptions == 0


def test_no_code_is_ever_pushed() -> None:
    for kind in rules.NEVER_PUSHED:
        with pytest.raises(AssertionError):
            rules.payload(
                notification_id="0190", kind=kind, language="en", body="Code 123456", loan_id=None
            )
    assert not rules.NEVER_PUSHED & set(rules.PUSH_KINDS)
