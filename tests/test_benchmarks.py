"""The instruction benchmark's bookkeeping: cells are means over hash seeds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmarks.instructions import _combine, _print
from benchmarks.run import _check


def test_a_cell_is_the_mean_of_its_seeds_and_keeps_their_counts():
    jobs = [("bare", 100, 0), ("guard", 100, 0), ("bare", 100, 1), ("guard", 100, 1)]
    runs = [
        {"per_request": 100.0, "problem": None},
        {"per_request": 104.0, "problem": None},
        {"per_request": 102.0, "problem": None},
        {"per_request": 108.0, "problem": None},
    ]
    cells = _combine(jobs, runs)
    assert cells[("bare", 100)]["per_request"] == 101.0
    assert cells[("guard", 100)]["per_request"] == 106.0
    assert cells[("guard", 100)]["runs"] == [104.0, 108.0]


def test_a_failed_seed_does_not_hide_the_others_but_a_problem_is_kept():
    jobs = [("guard", 1, 0), ("guard", 1, 1), ("zeal", 1, 0), ("zeal", 1, 1)]
    runs: list[dict[str, object]] = [
        {"error": "worker failed (1): boom"},
        {"per_request": 50.0, "problem": "page returned 500"},
        {"skipped": "django-zeal is not installed"},
        {"skipped": "django-zeal is not installed"},
    ]
    cells = _combine(jobs, runs)
    assert cells[("guard", 1)] == {
        "per_request": 50.0,
        "runs": [50.0],
        "problem": "page returned 500",
    }
    assert cells[("zeal", 1)] == {"skipped": "django-zeal is not installed"}


def test_the_table_shows_ratios_of_the_means(capsys):
    jobs = [
        (name, q, seed) for seed in (0, 1) for name in ("bare", "guard") for q in (100, 1, 1000)
    ]
    counts = {"bare": (100.0, 10.0, 1000.0), "guard": (104.0, 10.4, 1040.0)}
    runs = []
    for name, q, seed in jobs:
        value = counts[name][(100, 1, 1000).index(q)] * (1 + 0.01 * seed)
        runs.append({"per_request": value, "problem": None})
    _print(["bare", "guard"], _combine(jobs, runs))
    out = capsys.readouterr().out
    assert "| guard middleware | 1.040x | 1.040x | 1.040x |" in out
    assert "guard / bare <= 1.05: met" in out


def _table(counts: dict[str, float], capsys: pytest.CaptureFixture[str]) -> str:
    """The printed table for one run per variant and page, ``counts`` per query."""
    jobs = [(name, q, 0) for name in counts for q in (100, 1, 1000)]
    runs: list[dict[str, object]] = [{"per_request": counts[name] * q} for name, q, _ in jobs]
    _print(list(counts), _combine(jobs, runs))
    return capsys.readouterr().out


def test_panel_variants_are_shown_against_the_toolbar_alone(capsys):
    counts = {"bare": 10.0, "toolbar": 20.0, "toolbar-panel": 21.0, "toolbar-empty-panel": 20.5}
    out = _table(counts, capsys)
    assert "| toolbar + our panel / toolbar | 1.050x | 1.050x | 1.050x |" in out
    assert "| toolbar + an empty panel / toolbar | 1.025x | 1.025x | 1.025x |" in out
    assert "toolbar-panel / toolbar <= 1.1: met" in out


def test_the_stock_toolbar_panel_is_shown_against_the_stock_toolbar(capsys):
    counts = {
        "bare": 10.0,
        "toolbar": 20.0,
        "toolbar-panel": 23.0,
        "toolbar-stock": 100.0,
        "toolbar-stock-panel": 104.0,
    }
    out = _table(counts, capsys)
    assert "| toolbar + our panel / toolbar | 1.150x | 1.150x | 1.150x |" in out
    assert "| default toolbar + our panel / default toolbar | 1.040x | 1.040x | 1.040x |" in out
    assert "toolbar-panel / toolbar <= 1.1: NOT MET" in out
    assert "toolbar-stock-panel / toolbar-stock <= 1.1: met" in out


def _page(*panel_ids: str) -> SimpleNamespace:
    buttons = "".join(f'<li id="djdt-{panel_id}">' for panel_id in panel_ids)
    return SimpleNamespace(status_code=200, content=f'<div id="djDebug">{buttons}'.encode())


@pytest.mark.parametrize(
    ("variant", "shown", "problem"),
    [
        ("toolbar-panel", ("SQLPanel", "NPlusOnePanel"), None),
        ("toolbar-panel", ("SQLPanel",), "the toolbar has no NPlusOnePanel"),
        ("toolbar-stock", ("SQLPanel",), "the toolbar has no HistoryPanel"),
        ("toolbar-stock-panel", ("SQLPanel", "HistoryPanel"), "the toolbar has no NPlusOnePanel"),
        ("toolbar-stock-panel", ("SQLPanel", "HistoryPanel", "NPlusOnePanel"), None),
    ],
)
def test_a_toolbar_variant_without_its_panels_is_flagged(variant, shown, problem):
    assert _check(variant, 1, _page(*shown)) == problem


def test_the_same_process_view_reports_median_and_quartiles():
    from benchmarks.run import _fmt_quartiles

    # Extremes are left out: one noisy pair must not widen the reported range.
    assert _fmt_quartiles([0.5, 1.0, 1.02, 1.04, 1.06, 1.08, 3.0]) == "1.040x (1.000-1.080)"
    assert _fmt_quartiles([1.25]) == "1.250x"


def test_a_stock_toolbar_variant_keeps_its_panels_and_shows_them():
    from benchmarks.variants import OUR_PANEL, _toolbar

    variant = _toolbar("toolbar-stock-x", "a stock toolbar", OUR_PANEL, stock=True)
    assert "DEBUG_TOOLBAR_PANELS" not in variant.settings
    assert variant.settings["BENCH_EXTRA_PANELS"] == [OUR_PANEL]
    assert variant.after_setup == "benchmarks.panels.use_stock_panels"
    assert variant.panels_shown == ("SQLPanel", "HistoryPanel", "NPlusOnePanel")
