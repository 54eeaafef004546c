"""The smallest whole-stack check: Chromium opens /app/ and the service worker takes charge."""

from __future__ import annotations

from playwright.sync_api import Page

# `ready` never settles when no worker registers: race it so the test fails instead of hanging
# (page.evaluate has no timeout of its own).
SERVICE_WORKER_ACTIVE = """
Promise.race([
  navigator.serviceWorker.ready.then(registration => !!registration.active),
  new Promise(resolve => setTimeout(() => resolve(false), 10000)),
])
"""


def test_the_app_opens_and_its_service_worker_activates(page: Page) -> None:
    page.goto("/app/")
    assert "Deni" in page.title()
    assert page.evaluate(SERVICE_WORKER_ACTIVE) is True
