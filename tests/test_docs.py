"""The docs stay in step with the code they describe."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from django_nplusone_guard import conf
from django_nplusone_guard.management.commands import nplusone_audit

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_settings_reference_documents_every_key_and_nothing_else():
    text = (DOCS / "settings.md").read_text()
    documented = set(re.findall(r"^### `([A-Z_]+)`$", text, flags=re.MULTILINE))
    keys = {f.name for f in dataclasses.fields(conf.Config) if f.name != "raw"}
    assert documented == keys
    assert set(conf._TYPES) == keys


def test_settings_reference_gives_each_default():
    text = (DOCS / "settings.md").read_text()
    defaults = conf.Config()
    for key in ("THRESHOLD", "EXPLAIN_TIMEOUT_MS", "MAX_QUERIES", "ANALYSIS_BUDGET_MS"):
        section = text.split(f"### `{key}`", 1)[1].split("###", 1)[0]
        assert f"default `{getattr(defaults, key)}`" in section, key


def test_audit_reference_lists_every_option_and_fail_on_kind():
    text = (DOCS / "audit.md").read_text()
    command = nplusone_audit.Command()
    parser = command.create_parser("manage.py", "nplusone_audit")
    django_base = set(command.base_stealth_options) | {
        "-h", "--help", "--version", "-v", "--verbosity", "--settings", "--pythonpath",
        "--traceback", "--no-color", "--force-color", "--skip-checks",
    }  # fmt: skip
    options = {s for action in parser._actions for s in action.option_strings} - django_base
    assert {"--all", "--format", "--fail-on", "--user", "--explain", "--no-explain"} <= options
    for option in options:
        assert f"`{option}" in text, option
    for kind in nplusone_audit.FAIL_ON_KINDS:
        assert f"`{kind}`" in text, kind


def test_the_pytest_extra_installs_what_the_plugin_needs():
    import tomllib

    pyproject = tomllib.loads((DOCS.parent / "pyproject.toml").read_text(encoding="utf-8"))
    extra = pyproject["project"]["optional-dependencies"]["pytest"]
    names = {re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0] for requirement in extra}
    assert names == {"pytest", "pytest-django"}
    assert 'pip install "django-nplusone-guard[pytest]"' in (DOCS / "testing.md").read_text()
