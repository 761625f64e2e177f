"""The explorer's record page against a live cluster with a monitor: a
payment's alerts (risk.alert records naming it as their parent, its
children) are fetched, verified in the page and listed with what they say;
other children are not alerts; an alert's own page says what it flags.

Set ``EXPLORER_SCREENSHOTS=docs/images`` to (re)take explorer-alerts.png.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from browser import browser, open_page  # noqa: F401 (fixture)
from test_cluster import Submitter, submit
from test_explorer_browser import attr, screenshot, text_of

from harness.localnet import LocalCluster

pytestmark = pytest.mark.cluster

ALERT = {"score": 870_000, "reasons": [{"feature": "amount_z", "points": 600_000},
                                       {"feature": "new_counterparty", "points": 270_000}],
         "detector": "builtin", "version": "1"}


async def test_record_page_lists_verified_alerts(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    c = LocalCluster(tmp_path / "cluster", 4, submitters={"mon": ["monitor", "submit"]})
    try:
        everyone = await c.start_all()
        shop, mon = Submitter(c), Submitter(c, "mon")
        flagged, quiet = shop.envelope(amount=90_000), shop.envelope()
        await submit(c, 0, [flagged, quiet])
        await c.wait_committed(everyone, flagged.id.hex())
        alert = mon.envelope("risk.alert", [flagged.id], **ALERT)
        refund = shop.envelope("refund", [flagged.id], amount=5)
        await submit(c, 1, [alert, refund])
        for e in (alert, refund):
            await c.wait_committed(everyone, e.id.hex())
        base = c.url(0) + "/explorer/"

        await asyncio.to_thread(open_page, browser, base + f"#/record/{flagged.id.hex()}")
        assert attr(browser, "#record-verdict", "data-ok") == "true"
        items = browser.find_elements("css selector", "#record-alerts li.risk")
        assert [(i.get_attribute("data-kind"), i.get_attribute("data-record-id")) for i in items] \
            == [("risk.alert", alert.id.hex())]
        said = items[0].text
        assert "by mon" in said and "score 870000" in said and "amount_z (600000 points)" in said
        assert "of 4 validators" in said
        assert text_of(browser, "#record-decisions") == "none"
        nodes = browser.find_elements("css selector", "svg.lineage g.node")
        assert {n.get_attribute("data-id"): (n.get_attribute("data-state"),
                                              n.find_element("css selector", "text.kind").text)
                for n in nodes} == {flagged.id.hex(): ("verified", "payment"),
                                    alert.id.hex(): ("verified", "risk.alert"),
                                    refund.id.hex(): ("verified", "refund")}
        screenshot(browser, "explorer-alerts.png", 1450)

        await asyncio.to_thread(open_page, browser, base + f"#/record/{quiet.id.hex()}")
        assert text_of(browser, "#record-alerts") == "none"

        await asyncio.to_thread(open_page, browser, base + f"#/record/{alert.id.hex()}")
        assert attr(browser, "#record-verdict", "data-ok") == "true"
        assert text_of(browser, "#record-meaning").startswith(
            "alert on the parent record: score 870000 of 1000000")
    finally:
        await c.stop_all()
