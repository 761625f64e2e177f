"""The explorer's review queue (#/reviews, GET /v1/reviews) and a record's
review decisions, on a live cluster with a policy that sends payments to
review: the open and decided records are listed with their status proven
in the page from each bundle's verdict proof; a decided record's page lists
the reviewer's risk.decision, verified.

Set ``EXPLORER_SCREENSHOTS=docs/images`` to (re)take explorer-reviews.png.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from browser import browser, open_page  # noqa: F401 (fixture)
from test_cluster import Submitter, submit
from test_explorer_browser import attr, screenshot, text_of

from harness.localnet import LocalCluster, until
from ledger.keys import load_key_file
from ledger.policy import policy_from_json
from ledger.records import Envelope, cosign, make_record, sign_record

pytestmark = pytest.mark.cluster

POLICY = {"name": "payments", "version": 1, "default": "review",
          "rules": [{"name": "small", "when": "record.body.amount < 100", "then": "allow"},
                    {"name": "huge", "when": "record.body.amount > 1000000",
                     "then": {"outcome": "approve", "approvals": 1, "role": "treasury"}}]}


async def test_review_queue_and_decisions_verified_in_the_page(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    c = LocalCluster(tmp_path / "cluster", 4, members=True,
                     submitters={"rev": ["review", "submit"], "tre": ["treasury", "submit"]})
    try:
        everyone = await c.start_all()
        members = [load_key_file(c.dir / "keys" / f"member{i}.json").key for i in range(c.n)]
        quorum = members[:c.genesis.governance_threshold]
        record = make_record(chain=c.genesis.chain, submitter=quorum[0].public_key, nonce=1,
                             ts=int(time.time() * 1000), kind="gov.policy.set",
                             origin={"system": "ledger-admin"},
                             body={"policy": policy_from_json(POLICY).policy_bytes,
                                   "expires_height": 2**63})
        policy: Envelope = cosign(sign_record(record, quorum[0]), quorum[1:])
        await submit(c, 0, [policy])
        await c.wait_committed(everyone, policy.id.hex())
        shop, rev, tre = Submitter(c), Submitter(c, "rev"), Submitter(c, "tre")
        small, big1, big2, huge = (shop.envelope(amount=5), shop.envelope(amount=5_000),
                                   shop.envelope(amount=7_000), shop.envelope(amount=2_000_000))
        await submit(c, 1, [small, big1, big2, huge])
        for e in (small, big1, big2, huge):
            await c.wait_committed(everyone, e.id.hex())
        decision = rev.envelope("risk.decision", [big1.id], decision="approve", note="checked")
        approval = tre.envelope("approval", [huge.id], note="ok")
        self_approval = shop.envelope("approval", [huge.id], note="mine")  # not counted
        await submit(c, 2, [decision, self_approval, approval])
        for e in (decision, self_approval, approval):
            await c.wait_committed(everyone, e.id.hex())

        async def decided() -> bool:
            got = await c.try_get(0, "/v1/reviews?state=decided")
            return got is not None and got[0] == 200 and len(got[1]["reviews"]) == 2
        await until(decided, 30, "the approval in the queue")
        base = c.url(0) + "/explorer/"

        await asyncio.to_thread(open_page, browser, base + "#/reviews")
        rows = browser.find_elements("css selector", "#reviews tr.review")
        assert [(r.get_attribute("data-record-id"), r.get_attribute("data-ok"),
                 r.get_attribute("data-status")) for r in rows] == [(big2.id.hex(), "true", "review")]
        assert "review (review), verified by 3 of 4" in rows[0].text or \
            "review (review), verified by 4 of 4" in rows[0].text, rows[0].text
        screenshot(browser, "explorer-reviews.png", 700)

        await asyncio.to_thread(open_page, browser, base + "#/reviews/decided")
        rows = browser.find_elements("css selector", "#reviews tr.review")
        assert sorted((r.get_attribute("data-record-id"), r.get_attribute("data-status"))
                      for r in rows) == sorted([(big1.id.hex(), "approved"), (huge.id.hex(), "approved")])

        await asyncio.to_thread(open_page, browser, base + f"#/record/{big1.id.hex()}")
        assert attr(browser, "#record-verdict", "data-ok") == "true"
        items = browser.find_elements("css selector", "#record-decisions li.risk")
        assert [(i.get_attribute("data-kind"), i.get_attribute("data-record-id")) for i in items] \
            == [("risk.decision", decision.id.hex())]
        assert "by rev" in items[0].text and "approve (checked)" in items[0].text
        assert items[0].get_attribute("data-counted") == "true" and "; counted" in items[0].text
        assert text_of(browser, "#record-alerts") == "none"

        # The held payment: two approvals, the submitter's own not counted.
        await asyncio.to_thread(open_page, browser, base + f"#/record/{huge.id.hex()}")
        items = browser.find_elements("css selector", "#record-decisions li.risk")
        got = {i.get_attribute("data-record-id"): (i.get_attribute("data-kind"),
                                                   i.get_attribute("data-counted")) for i in items}
        assert got == {approval.id.hex(): ("approval", "true"),
                       self_approval.id.hex(): ("approval", "false")}
        mine = next(i for i in items if i.get_attribute("data-record-id") == self_approval.id.hex())
        assert "not counted: self_approval" in mine.text, mine.text
    finally:
        await c.stop_all()
