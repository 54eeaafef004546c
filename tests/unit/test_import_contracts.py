"""The import contract that keeps adapters to the ports names every other service module.

import-linter cannot say "everything under deni.services except the ports modules", so the
contract lists the modules; this test fails when a new service module is missing from it."""

from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "src" / "deni" / "services"


def _service_modules() -> set[str]:
    found = set()
    for path in SERVICES.rglob("*.py"):
        # ports.py, ussd_ports.py, ...; not reports.py, a use case module like any other
        if path.name == "__init__.py" or path.stem == "ports" or path.stem.endswith("_ports"):
            continue
        relative = path.relative_to(REPO / "src").with_suffix("")
        found.add(".".join(relative.parts))
    return found


def _forbidden_to_adapters() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    section = config["importlinter:contract:adapters-see-ports"]
    assert section["source_modules"].split() == ["deni.adapters"]
    return set(section["forbidden_modules"].split())


def test_every_service_module_but_the_ports_is_forbidden_to_adapters() -> None:
    services = _service_modules()
    assert "deni.services.loans" in services  # the walk found the package
    assert "deni.services.reports" in services  # "...ports" in its name, and no port
    assert "deni.services.report_ports" not in services
    assert services == _forbidden_to_adapters()
