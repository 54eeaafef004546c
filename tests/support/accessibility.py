"""axe-core on a page (axe-playwright-python bundles it): what it finds, one line per rule and
element, so a failure says what to fix."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

# Every rule axe-core runs by default (WCAG 2 A and AA, best practices), none switched off.
AXE_OPTIONS = {"resultTypes": ["violations"]}
_AXE = Axe()


def violations(page: Page) -> list[str]:
    results = _AXE.run(page, options=AXE_OPTIONS)
    found = []
    for violation in results.response["violations"]:
        for node in violation["nodes"]:
            found.append(f"{violation['id']}: {node['target']} {node['failureSummary']}")
    return found
