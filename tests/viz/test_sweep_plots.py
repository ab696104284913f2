"""Sweep figures: metrics against a setting, one line per objective, mean and min-max over seeds."""

import pytest

from vaelab.viz.sweep_plots import SeedSpread, metrics_by_line, seed_spreads

# Two objectives; objective a has two seeds at strengths 1 and 4, b one job at 10 (and one
# job without the metric, which is left out).
X = [0.5, 1.5, 3.0, 5.0, 7.0, 9.0]
Y = [0.2, 0.4, 0.9, 0.1, 0.6, None]
LINES = ["a", "a", "a", "a", "b", "b"]
SETTINGS = [1.0, 1.0, 4.0, 4.0, 10.0, 20.0]


def drawn_lines(ax) -> dict:
    """{label: the line through the means} of an axes' error-bar plots."""
    return {bars.get_label(): bars.lines[0] for bars in ax.containers}


def test_seed_spreads_pool_each_lines_jobs_at_one_setting():
    spreads = seed_spreads(X, Y, LINES, SETTINGS)
    assert list(spreads) == ["a", "b"]
    assert spreads["a"] == [SeedSpread(1.0, (1.0, 0.5, 1.5), (pytest.approx(0.3), 0.2, 0.4), 2),
                            SeedSpread(4.0, (4.0, 3.0, 5.0), (0.5, 0.1, 0.9), 2)]
    assert spreads["b"] == [SeedSpread(10.0, (7.0, 7.0, 7.0), (0.6, 0.6, 0.6), 1)]


def test_seed_spreads_sort_settings_and_need_one_value_of_each_per_job():
    spreads = seed_spreads([2.0, 1.0], [0.5, 0.7], ["a", "a"], [8.0, 2.0])
    assert [s.setting for s in spreads["a"]] == [2.0, 8.0]
    with pytest.raises(ValueError):
        seed_spreads([1.0], [0.5], ["a", "b"], [1.0])


def test_metrics_by_line_draws_a_panel_per_metric_and_a_line_per_objective():
    fig = metrics_by_line({"mig": Y, "sap": [0.1, 0.3, 0.5, 0.7, None, 0.2]}, X, LINES,
                          SETTINGS, "strength", "metrics", log_x=True)
    mig, sap = fig.axes[:2]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["mig", "sap"]
    assert mig.get_xscale() == "log" and mig.get_xlabel() == "strength"
    lines = drawn_lines(mig)
    assert sorted(lines) == ["a", "b"]
    # the line goes through the means over seeds; the error bars span min to max
    assert list(lines["a"].get_xdata()) == [1.0, 4.0]
    assert list(lines["a"].get_ydata()) == pytest.approx([0.3, 0.5])
    segments = [seg.ravel().tolist() for bars in mig.collections for seg in bars.get_segments()]
    assert any(pytest.approx([4.0, 0.1, 4.0, 0.9]) == seg for seg in segments)  # y: min to max
    assert any(pytest.approx([3.0, 0.5, 5.0, 0.5]) == seg for seg in segments)  # x: min to max
    # b's job at 20 has sap, the one at 10 not
    assert list(drawn_lines(sap)["b"].get_xdata()) == [9.0]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]


def test_metrics_by_line_keeps_a_linear_axis_and_hides_spare_panels():
    fig = metrics_by_line({f"m{i}": Y for i in range(4)}, X, LINES, SETTINGS, "rate", "t")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 6 and len(visible) == 4
    assert visible[0].get_xscale() == "linear"
