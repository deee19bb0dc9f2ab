"""Notebook widgets (animus.widgets): the runs table and the metric chart, against the real stack."""

from __future__ import annotations

import math
import re
from html import unescape

import pytest

from animus.client import AnimusAPIError, Client
from animus.widgets import (
    MetricChart,
    RunsTable,
    Series,
    nice_ticks,
    parse_columns,
    render_chart,
    render_error,
    show_runs,
)

# --- pure rendering, no kernel and no server --------------------------------------------


def polylines(svg: str) -> list[str]:
    return re.findall(r'<polyline [^>]*points="([^"]*)"', svg)


def test_chart_skips_non_finite_points_and_draws_one_line_per_series():
    series = [
        Series("a", [(0, 1.0), (1, math.nan), (2, 3.0), (3, math.inf)]),
        Series("b", [(0, 2.0), (5, 0.5)]),
        Series("empty", []),
    ]
    svg = render_chart(series, "val loss")
    lines = polylines(svg)
    assert len(lines) == 2  # the series without points draws nothing
    assert len(lines[0].split()) == 2 and len(lines[1].split()) == 2
    assert all(re.fullmatch(r"[-\d.]+,[-\d.]+", p) for line in lines for p in line.split())
    assert "nan" not in svg.lower().replace("non-finite", "")
    assert ">val loss<" in svg and ">step<" in svg  # title / axis labels
    assert "2 non-finite skipped" in svg and "empty" in svg and "(no points)" in svg
    assert "var(--jp-ui-font-color1" in svg  # follows the JupyterLab theme


def test_chart_of_a_single_point_and_of_nothing():
    one = render_chart([Series("solo", [(3, 0.5)])], "acc")
    assert len(polylines(one)) == 1 and "<circle" in one
    none = render_chart([Series("x", [(0, math.nan)])], "acc")
    assert polylines(none) == [] and "no finite points" in none


def test_helpers():
    assert [(c.kind, c.key) for c in parse_columns(["acc", "params.lr", "metric.loss", "tags.team"])] == [
        ("metrics", "acc"),
        ("params", "lr"),
        ("metrics", "loss"),
        ("tags", "team"),
    ]
    assert nice_ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(0.45 <= t <= 1.05 for t in nice_ticks(0.45, 1.05))
    caret = render_error("Invalid filter at position 4", "ab <", 4)
    assert "ab &lt;\n    ^" in caret
    assert "<script>" not in render_error("<script>")


def test_no_project_is_said_in_the_status_line(monkeypatch):
    monkeypatch.delenv("ANIMUS_PROJECT", raising=False)
    table = RunsTable(client=object())  # never called
    assert "No project" in table.status.value and table.runs == []


# --- against the real stack --------------------------------------------------------------


@pytest.fixture(scope="module")
def tracked(stack, unique):
    """A project with four runs: two random forests, an SVM, and a run whose history holds a NaN."""
    project, owner = unique("wdg"), unique("own")
    token = stack.user_token(owner)
    assert stack.api("POST", "/projects", token, json={"slug": project}).status_code == 201
    runs = {}

    def run(name: str, model: str, acc: list[float], loss: list[float]) -> None:
        r = stack.api("POST", f"/projects/{project}/runs", token, json={"name": name})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        metrics = [{"key": "acc", "value": v, "step": i} for i, v in enumerate(acc)]
        metrics += [{"key": "loss", "value": v, "step": i} for i, v in enumerate(loss)]
        body = {"metrics": metrics, "params": [{"key": "model", "value": model}]}
        r = stack.api("POST", f"/projects/{project}/runs/{rid}/log-batch", token, json=body)
        assert r.status_code == 200, r.text
        runs[name] = rid

    run("rf-good", "rf", [0.5, 0.8, 0.95], [1.0, 0.5, 0.2])
    run("rf-weak", "rf", [0.4, 0.6, 0.7], [1.2, 0.9, 0.8])
    run("svm", "svm", [0.6, 0.9, 0.92], [1.1, 0.6, 0.3])
    run("flaky", "mlp", [0.3, "NaN", 0.5, 0.6], [2.0, 1.5, 1.0, 0.9])
    return {"project": project, "client": Client(url=stack.api_url, token=token), "runs": runs}


def names_in(table: RunsTable) -> list[str]:
    """The run names in the table, top to bottom (the name cell's title is the name)."""
    return [n for n in re.findall(r'title="([^"]*)">', table.table_html) if n in {"rf-good", "rf-weak", "svm", "flaky"}]


def test_table_lists_runs_and_the_filter_narrows_them(tracked):
    table = show_runs(tracked["project"], client=tracked["client"])
    assert isinstance(table, RunsTable)
    assert sorted(names_in(table)) == ["flaky", "rf-good", "rf-weak", "svm"]
    assert "4 runs" in table.status.value
    html = table.table_html
    for header in ("id", "name", "status", "user", "start (UTC)", "acc", "loss"):  # default: the runs' metrics
        assert f">{header}</div>" in html
    assert tracked["runs"]["svm"][:8] in html and "0.92" in html

    table.filter_box.value = "metrics.acc > 0.9 and params.model = 'rf'"  # what Enter does
    assert names_in(table) == ["rf-good"]
    assert "1 run match the filter" in table.status.value
    assert "svm" not in table.table_html and "rf-weak" not in table.table_html

    table.filter_box.value = "params.model = 'rf' or params.model = 'svm'"
    table.order_box.value = "metrics.acc DESC"
    assert names_in(table) == ["rf-good", "svm", "rf-weak"]
    table.order_box.value = "metrics.acc ASC"
    table.search_button.click()
    assert names_in(table) == ["rf-weak", "svm", "rf-good"]


def test_chosen_columns_and_the_project_from_the_environment(tracked, monkeypatch):
    monkeypatch.setenv("ANIMUS_PROJECT", tracked["project"])
    table = RunsTable(columns=["params.model", "acc"], filter="params.model = 'svm'", client=tracked["client"])
    html = table.table_html
    assert ">model</div>" in html and ">svm</div>" in html and ">acc</div>" in html and ">loss</div>" not in html


def test_a_bad_filter_shows_the_api_message_with_its_position(tracked):
    table = RunsTable(tracked["project"], client=tracked["client"])
    bad = "metrics.acc > 0.9 and and params.model = 'rf'"
    table.filter_box.value = bad
    with pytest.raises(AnimusAPIError) as info:
        list(tracked["client"].search_runs(tracked["project"], filter=bad, limit=1))
    assert info.value.status == 400 and "position 22" in info.value.message
    status = table.status.value
    assert table.error == info.value.message
    assert "position 22" in status and "Traceback" not in status
    assert "\n" + " " * 22 + "^" in status  # a caret under the offending word
    # the previous results stay, and a good filter clears the error
    assert len(names_in(table)) == 4
    table.filter_box.value = "params.model = 'svm'"
    assert table.error is None and names_in(table) == ["svm"]


def test_a_bad_order_by_is_reported_too(tracked):
    table = RunsTable(tracked["project"], order_by="metrics.acc SIDEWAYS", client=tracked["client"])
    assert table.error and "order" in table.error.lower() and "Traceback" not in table.status.value


def test_chart_draws_one_line_per_run_with_a_legend(tracked):
    ids = [tracked["runs"]["rf-good"], tracked["runs"]["svm"]]
    chart = MetricChart(ids, "acc", project=tracked["project"], client=tracked["client"])
    assert len(polylines(chart.svg)) == 2
    assert f"rf-good · {ids[0][:8]}" in chart.svg and f"svm · {ids[1][:8]}" in chart.svg
    assert ">acc<" in chart.svg and ">step<" in chart.svg
    assert list(chart.key_box.options) == ["acc", "loss"] and chart.key_box.value == "acc"
    assert chart.status.value == ""
    before = chart.svg
    chart.key_box.value = "loss"
    assert chart.key == "loss" and chart.svg != before and ">loss<" in chart.svg
    assert len(polylines(chart.svg)) == 2


def test_chart_survives_a_nan_point(tracked):
    ids = [tracked["runs"]["flaky"], tracked["runs"]["rf-weak"]]
    chart = MetricChart(ids, "acc", project=tracked["project"], client=tracked["client"])
    lines = polylines(chart.svg)
    assert len(lines) == 2
    assert len(lines[0].split()) == 3  # 4 points, the NaN skipped
    assert "1 non-finite skipped" in chart.svg and "Traceback" not in chart.status.value


def test_chart_without_a_key_picks_one_and_unknown_keys_are_said(tracked):
    rid = tracked["runs"]["svm"]
    chart = MetricChart(rid, None, project=tracked["project"], client=tracked["client"])
    assert chart.key == "acc" and len(polylines(chart.svg)) == 1
    chart = MetricChart([rid], "f1", project=tracked["project"], client=tracked["client"])
    assert "has the metric 'f1'" in unescape(chart.status.value) and polylines(chart.svg) == []
    chart = MetricChart(["0" * 32], "acc", project=tracked["project"], client=tracked["client"])
    assert chart.status.value and "Traceback" not in chart.status.value  # 404 run_not_found, shown


def test_compare_opens_a_chart_of_the_selected_runs(tracked):
    table = RunsTable(tracked["project"], filter="params.model = 'rf'", client=tracked["client"])
    table.compare_button.click()
    assert "Select runs" in table.status.value and table.chart is None
    for cb in table.checkboxes:
        cb.value = True
    table.compare_button.click()
    chart = table.chart
    assert chart is not None and table.chart_area.children == (chart,)
    assert sorted(chart.run_ids) == sorted([tracked["runs"]["rf-good"], tracked["runs"]["rf-weak"]])
    assert chart.key == "acc" and len(polylines(chart.svg)) == 2
    assert "rf-good" in chart.svg and "rf-weak" in chart.svg and "svm" not in chart.svg
    table.selected = [tracked["runs"]["rf-good"]]
    assert table.selected == [tracked["runs"]["rf-good"]]
    assert len(polylines(table.compare("loss").svg)) == 1
