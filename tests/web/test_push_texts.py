"""Every event that can be pushed has its words on the Settings screen in both languages, and
the service worker ships with the app (sw.js caches and imports it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deni.domain import push as rules

STATIC = Path(__file__).parents[2] / "src/deni/entrypoints/web/static"


def _dictionary(language: str) -> dict[str, str]:
    source = (STATIC / "js/i18n.js").read_text()
    block = re.search(rf"^const {language} = \{{\n(.*?)^\}};", source, re.S | re.M)
    assert block is not None, language
    pairs = re.findall(r'^\s*"([\w.-]+)":\s*\n?\s*"((?:[^"\\]|\\.)*)",', block.group(1), re.M)
    return dict(pairs)


@pytest.mark.parametrize("language", ["en", "sw"])
def test_every_pushed_event_and_group_has_its_words(language: str) -> None:
    words = _dictionary(language)
    wanted = [f"push.kind.{kind}" for kind in rules.PUSH_KINDS]
    wanted += [f"push.group.{group}" for group, _ in rules.PUSH_KIND_GROUPS]
    missing = [key for key in wanted if not words.get(key)]
    assert missing == []


def test_english_and_swahili_say_different_things() -> None:
    en, sw = _dictionary("en"), _dictionary("sw")
    push_keys = [key for key in en if key.startswith("push.")]
    assert sorted(push_keys) == sorted(key for key in sw if key.startswith("push."))
    assert all(en[key] != sw[key] for key in push_keys)


def test_the_service_worker_imports_and_caches_the_push_handlers() -> None:
    worker = (STATIC / "sw.js").read_text()
    assert 'importScripts("js/push-sw.js")' in worker
    assert '"js/push-sw.js"' in worker.split("];")[0]
    assert '"js/push.js"' in worker.split("];")[0]
