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


def test_chromium_finds_the_app_installable(page: Page) -> None:
    """What Chrome on Android checks before it offers "Install app": a manifest with a name,
    start URL, standalone display and large icons that load, served over a secure origin."""
    page.goto("/app/")
    assert page.evaluate(SERVICE_WORKER_ACTIVE) is True
    devtools = page.context.new_cdp_session(page)
    manifest = devtools.send("Page.getAppManifest")
    assert manifest["url"].endswith("/app/manifest.webmanifest")
    assert manifest["errors"] == []
    parsed = manifest["manifest"]  # as Chromium read it: URLs resolved, keys in camelCase
    assert parsed["startUrl"].endswith("/app/")
    assert parsed["display"] == "kStandalone"  # Chromium's own name for it
    answer = devtools.send("Page.getInstallabilityErrors")
    errors = [error["errorId"] for error in answer["installabilityErrors"]]
    # Playwright's contexts are incognito profiles, where nothing installs: that one is the
    # browser's, not the app's ("manifest-missing-suitable-icon", "no-manifest" would be ours).
    assert [error for error in errors if error != "in-incognito"] == []
