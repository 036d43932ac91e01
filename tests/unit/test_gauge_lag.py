"""GaugeLag: how long the oldest prediction of each pane waited for the gauges that include it."""

import numpy as np

from monitor.metrics import GaugeLag


def test_each_pane_is_measured_once_from_its_oldest_prediction():
    lag = GaugeLag()
    lag.add(np.array([0, 0, 1, 1, 2]), np.array([1_000, 900, 1_500, 1_400, 2_000]))
    assert lag.shown(None, 5_000) == []  # nothing closed yet: nothing shown
    assert lag.shown(0, 3_000) == [2.1]  # pane 0's oldest was sent at 900 ms
    lag.add(
        np.array([1, 3]), np.array([1_200, 3_000])
    )  # a later, older prediction of pane 1 counts
    assert sorted(lag.shown(2, 4_000)) == [2.0, 2.8]
    assert lag.shown(2, 9_000) == []  # already shown panes are not measured again
    assert list(lag.oldest_ms) == [3]


def test_dropped_and_untimed_predictions_are_ignored():
    lag = GaugeLag()
    lag.add(np.array([-1, 4, 4]), np.array([100, 0, 2_000]))  # -1: dropped as late; 0: no timestamp
    assert lag.oldest_ms == {4: 2_000}
