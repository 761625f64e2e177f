"""The explorer on a cluster whose API answers signed requests only
(PROTOCOL §11, no public_read): the page loads (its static files need no
key), says that the node wants signed requests, and once the auditor loads
a registered key file it signs every request (RFC 9421 with WebCrypto
Ed25519, as the SDK signs) and verifies the chain head and a record as on
an open node. A key file the chain does not list gets 401 again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from browser import browser, open_page, wait_ready  # noqa: F401 (fixture)
from test_cluster import Submitter, submit
from test_explorer_browser import attr, text_of

from harness.localnet import LocalCluster
from ledger.crypto import SigningKey

pytestmark = pytest.mark.cluster


def load_key(driver: Any, path: Path) -> None:
    driver.execute_script("document.getElementById('main').setAttribute('data-state', 'loading')")
    driver.find_element("css selector", "#key-file").send_keys(str(path))
    wait_ready(driver)


async def test_the_page_signs_its_requests_with_a_loaded_key(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    c = LocalCluster(tmp_path / "cluster", 4, auth=True, submitters={"auditor": ["audit"]})
    try:
        everyone = await c.start_all()
        env = Submitter(c).envelope()
        await submit(c, 0, [env])
        await c.wait_committed(everyone, env.id.hex())
        base = c.url(0) + "/explorer/"

        await asyncio.to_thread(open_page, browser, base + f"#/record/{env.id.hex()}")
        said = text_of(browser, "#genesis")
        assert "401" in said and "load a key file" in said, said
        assert "Requests are unsigned" in text_of(browser, "#key-status")

        stranger = tmp_path / "stranger.json"
        key = SigningKey(b"\x07" * 32)
        stranger.write_text(json.dumps({"name": "stranger", "pubkey": key.public_key.hex(),
                                        "seed": key.seed.hex()}))
        await asyncio.to_thread(load_key, browser, stranger)
        assert "Signing requests as stranger" in text_of(browser, "#key-status")
        assert "401" in text_of(browser, "#genesis")  # signed, but not a registered key

        await asyncio.to_thread(load_key, browser, c.dir / "keys" / "auditor.json")
        assert "Signing requests as auditor" in text_of(browser, "#key-status")
        assert attr(browser, "#record-verdict", "data-ok") == "true"
        assert "of 4 validators" in text_of(browser, "#record-verdict")
        # Navigating in the page keeps the key (it is reloading that forgets it).
        browser.execute_script("document.getElementById('main').setAttribute('data-state', 'loading');"
                               "location.hash = '#/'")
        await asyncio.to_thread(wait_ready, browser)
        assert attr(browser, "#checkpoint-verdict", "data-ok") == "true"
        assert attr(browser, "#block-verdict", "data-ok") == "true"
    finally:
        await c.stop_all()
