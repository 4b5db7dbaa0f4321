"""The tools_list bench section measures what it says: both routes answered, one ext_proc stream per
filtered list and none for calls or for the route without the filter. Figures are never asserted."""

from __future__ import annotations

import pytest

from bench import tools_list

pytestmark = pytest.mark.slow


def test_the_section_compares_the_filter_on_and_off_through_a_real_envoy():
    report = tools_list.run(3)
    assert set(report["latency"]) == {"list_on", "list_off", "call_on", "call_off"}
    assert all(figures["p50_s"] is not None for figures in report["latency"].values())
    assert report["ext_proc_streams"] == report["ext_proc_streams_expected"] == 3
