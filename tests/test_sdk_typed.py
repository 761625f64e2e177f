"""The SDK is typed (issue 22 item 5): a type checker sees the real classes,
a typo'd call fails mypy, results have TypedDict shapes that match the
node's OpenAPI description, ``SyncLedgerClient`` offers every call of
``LedgerClient``, and every error the client raises by itself is in the
SDK's tree."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import client
from client import (
    InvalidArgument,
    InvalidRecord,
    KeyFileError,
    LedgerClient,
    LedgerClientError,
    SyncLedgerClient,
    types,
)
from ledger.errors import LedgerError
from ledger.proofs import build_bundle
from ledger.verify import verify_bundle as ledger_verify_bundle
from memchain import build_chain
from node.openapi import openapi_spec
from sdk_fakes import CHAIN, FakeNode, key_file, serve

REPO = Path(__file__).resolve().parent.parent

GOOD = '''
from typing import assert_type

from client import (BlockDoc, BundleDoc, ConsistencyDoc, LedgerClient, RecordDoc, StatusDoc,
                    SubmitResult, SyncLedgerClient, TraceDoc, VerifiedBundle, verify_bundle)


async def service() -> None:
    async with LedgerClient(["http://127.0.0.1:7700"], key_file="svc.json", retries=3) as lc:
        pay = await lc.submit(kind="payment", origin={"system": "pos"}, body={"amount": 5})
        assert_type(pay, str)
        ids = await lc.submit_many([{"kind": "refund", "parents": [pay]}, {"kind": "fee", "ts": 1}])
        assert_type(ids, list[str])
        assert_type(await lc.submit_envelopes([lc.sign(kind="x").envelope_bytes]), list[SubmitResult])
        assert_type(await lc.record(pay), RecordDoc)
        bundle = await lc.proof(pay)
        assert_type(bundle, BundleDoc)
        assert_type(lc.verify_bundle(bundle, {}), VerifiedBundle)
        assert_type(verify_bundle(bundle, {}), VerifiedBundle)
        assert_type(await lc.trace(pay, depth=2), TraceDoc)
        st = await lc.status()
        assert_type(st, StatusDoc)
        height: int = st["height"]
        block = await lc.block(height, envelopes=True)
        assert_type(block, BlockDoc)
        assert_type(block["fields"]["log_size"], int)
        assert_type(await lc.consistency(1, height), ConsistencyDoc)


def script() -> None:
    with SyncLedgerClient(["http://127.0.0.1:7700"], key_file="svc.json") as lc:
        rid = lc.submit(kind="refund", body={"amount": 3})
        assert_type(lc.wait_committed(rid)["status"], str)
        assert_type(lc.block(envelopes=True), BlockDoc)
'''

# Each line marked "# error" must get at least one mypy error, and no other line may.
BAD = '''
from client import LedgerClient, SyncLedgerClient


async def service() -> None:
    async with LedgerClient(["http://127.0.0.1:7700"], key_file="svc.json", retrys=3) as lc:  # error
        await lc.submit(kind=1, bogus=True)  # error
        await lc.submit(kind="payment", body={"amount": 5}, parent=["ab"])  # error
        await lc.submit_many([{"kind": "payment", "bodyy": {}}])  # error
        st = await lc.status()
        st["heigth"]  # error
        await lc.block(envelope=True)  # error
        bundle = await lc.proof("ab")
        bundle["record"]  # error


def script() -> None:
    with SyncLedgerClient(["http://127.0.0.1:7700"], key_file="svc.json") as lc:
        lc.submit(kind="refund", orgin={"system": "pos"})  # error
        lc.consistency(1)  # error
'''


def _mypy(tmp_path: Path, *files: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
         str(tmp_path / "mypy_cache"), *map(str, files)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2: mypy itself failed
    return proc.stdout


def test_typod_sdk_calls_fail_mypy_and_correct_ones_pass(tmp_path: Path) -> None:
    good, bad = tmp_path / "good_use.py", tmp_path / "bad_use.py"
    good.write_text(textwrap.dedent(GOOD))
    bad.write_text(textwrap.dedent(BAD))
    out = _mypy(tmp_path, good, bad)
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not [e for e in errors if not e.startswith(str(bad))], out  # the good snippet passes
    lines_with_errors = {int(re.match(rf"{re.escape(str(bad))}:(\d+):", e).group(1))  # type: ignore[union-attr]
                         for e in errors}
    marked = {n for n, text in enumerate(bad.read_text().splitlines(), 1) if text.endswith("# error")}
    assert lines_with_errors == marked, out
    assert 'Unexpected keyword argument "bogus"' in out
    assert 'Argument "kind" to "submit" of "LedgerClient" has incompatible type "int"' in out


def test_client_exports_real_classes_without_loading_the_network_stack() -> None:
    code = (
        "import sys, client\n"
        "assert 'LedgerClient' in vars(client) and 'verify_bundle' in vars(client)\n"
        "assert 'aiohttp' not in sys.modules and 'asyncio' not in sys.modules, 'too early'\n"
        "client.LedgerClient(['http://127.0.0.1:9'])\n"
        "assert 'aiohttp' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)


def test_verify_bundle_is_reexported_and_callable_on_both_clients() -> None:
    mem, genesis, _, _, envelopes = build_chain((2, 1))
    bundle = build_bundle(mem, envelopes[2].id)
    assert client.verify_bundle is ledger_verify_bundle
    with SyncLedgerClient(["http://127.0.0.1:9"]) as sync_client:
        for verify in (client.verify_bundle, LedgerClient(["http://127.0.0.1:9"]).verify_bundle,
                       sync_client.verify_bundle):
            assert verify(bundle, genesis).record_id == envelopes[2].id


def _public(cls: type) -> dict[str, Any]:
    return {name: inspect.getattr_static(cls, name) for name in dir(cls) if not name.startswith("_")}


def _parameters(member: Any) -> list[tuple[str, Any, Any]]:
    func = member.fget if isinstance(member, property) else member
    if isinstance(func, staticmethod):
        func = func.__func__
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def test_sync_client_offers_every_call_with_the_same_arguments() -> None:
    async_api, sync_api = _public(LedgerClient), _public(SyncLedgerClient)
    # ``chain`` is a plain attribute of LedgerClient, a property of the wrapper.
    assert set(sync_api) - {"chain"} == set(async_api), "SyncLedgerClient must offer every call"
    for name, member in async_api.items():
        assert _parameters(sync_api[name]) == _parameters(member), name
        assert isinstance(sync_api[name], property) == isinstance(member, property), name
        if inspect.iscoroutinefunction(member):
            assert not inspect.iscoroutinefunction(sync_api[name]), name
    assert _parameters(SyncLedgerClient.__init__) == _parameters(LedgerClient.__init__)


@pytest.mark.parametrize("cls", [LedgerClient, SyncLedgerClient])
def test_public_methods_have_docstrings(cls: type) -> None:
    members = {**_public(cls), "__init__": cls.__init__, "__doc__": cls}
    missing = [name for name, member in members.items()
               if not inspect.getdoc(member.fget if isinstance(member, property) else member)]
    assert missing == []


def test_result_types_match_the_node_openapi_description() -> None:
    """Every key the node documents is typed, and a key typed as always
    present is one the node always sends."""
    schemas = openapi_spec()["components"]["schemas"]
    submit_props: dict[str, Any] = {}
    for variant in schemas["SubmitResult"]["oneOf"]:
        submit_props.update(variant["properties"])
    pairs: list[tuple[Any, dict[str, Any]]] = [
        (types.SubmitResult, {"properties": submit_props, "required": []}),
        (types.RecordDoc, schemas["Record"]),
        (types.RecordFields, schemas["RecordFields"]),
        (types.CertificateDoc, schemas["Certificate"]),
        (types.SignatureDoc, schemas["Certificate"]["properties"]["signatures"]["items"]),
        (types.BundleDoc, schemas["Bundle"]),
        (types.TraceDoc, schemas["Trace"]),
        (types.HeaderFields, schemas["HeaderFields"]),
        (types.BlockDoc, schemas["Block"]),
        (types.ConsistencyDoc, schemas["Consistency"]),
        (types.PeerDoc, schemas["Peer"]),
        (types.StatusDoc, schemas["Status"]),
        (types.ReviewsDoc, schemas["Reviews"]),
        (types.ReviewItemDoc, schemas["Reviews"]["properties"]["reviews"]["items"]),
        (types.ReviewAlertDoc,
         schemas["Reviews"]["properties"]["reviews"]["items"]["properties"]["alerts"]["items"]),
        (types.ReviewDecisionDoc,
         schemas["Reviews"]["properties"]["reviews"]["items"]["properties"]["decisions"]["items"]),
        (types.VerdictDoc, schemas["Verdict"]),
    ]
    for typed, schema in pairs:
        keys = typed.__required_keys__ | typed.__optional_keys__
        assert set(schema["properties"]) <= keys, typed.__name__
        assert typed.__required_keys__ <= set(schema["required"]), typed.__name__


def test_an_unencodable_record_raises_an_sdk_error_and_sends_nothing(tmp_path: Path) -> None:
    """A record the client cannot encode used to raise ledger.errors.BadEncoding,
    outside the SDK's tree."""
    node = FakeNode()

    async def run() -> None:
        async with serve(node) as urls:
            async with LedgerClient(urls, key_file(tmp_path), chain=CHAIN) as lc:
                with pytest.raises(InvalidRecord) as floats:
                    await lc.submit(kind="payment", body={"amount": 1.5})
                with pytest.raises(InvalidRecord) as origin:
                    lc.sign(kind="payment", origin={"country": 49})  # type: ignore[dict-item]
                with pytest.raises(InvalidRecord) as big:
                    await lc.submit_many([{"kind": "memo", "body": {"text": "x" * 9000}}])
                with pytest.raises(InvalidRecord) as typo:
                    await lc.submit_many([{"kind": "memo", "bodyy": {}}])  # type: ignore[typeddict-unknown-key]
                with pytest.raises(InvalidRecord) as envelope:
                    await lc.submit_envelopes([b"\xc1"])  # a byte MessagePack never uses
                for caught in (floats, origin, big, typo, envelope):
                    assert isinstance(caught.value, LedgerClientError)
                    assert not isinstance(caught.value, LedgerError)
                assert (floats.value.code, origin.value.code, big.value.code) == \
                    ("bad_encoding", "bad_encoding", "too_large")
                assert "float" in floats.value.message and "origin" in origin.value.message
                assert "bodyy" in str(typo.value)
                assert envelope.value.code == "bad_encoding"
                assert lc.pending() == []

    import asyncio

    asyncio.run(run())
    assert node.received == []


def test_bad_arguments_and_key_files_are_sdk_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as missing:
        LedgerClient(["http://127.0.0.1:9"], tmp_path / "nope.json")
    assert isinstance(missing.value, LedgerClientError) and isinstance(missing.value, ValueError)
    for bad in ({"nodes": []}, {"batch_size": 0}, {"max_pending": 0}, {"long_poll": -1},
                {"long_poll": 10.5}):
        options: dict[str, Any] = {"nodes": ["http://127.0.0.1:9"], **bad}
        with pytest.raises(InvalidArgument):
            LedgerClient(**options)
