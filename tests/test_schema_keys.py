"""ledger/schema.py reads back the keys it builds (fsck and its report parse
keys only through these functions)."""

from ledger import schema

ID_A = bytes(range(32))
ID_B = bytes(range(32, 64))


def test_numbered_keys_round_trip() -> None:
    for build in (schema.envelope_key, schema.header_key, schema.certificate_key):
        key = build(2**40 + 7)
        assert schema.parse_numbered_key(key) == 2**40 + 7
        assert schema.parse_numbered_key(key + b"x") is None


def test_record_index_keys_round_trip() -> None:
    assert schema.parse_location_key(schema.record_location_key(ID_A)) == ID_A
    assert schema.parse_child_key(schema.child_key(ID_A, ID_B)) == (ID_A, ID_B)
    assert schema.parse_submitter_key(schema.submitter_key(ID_A, 9)) == (ID_A, 9)
    assert schema.parse_submitter_key(schema.nonce_key(ID_B, 3)) == (ID_B, 3)
    assert schema.key_prefix(schema.nonce_key(ID_B, 3)) == schema.NONCE


def test_malformed_keys_parse_to_none() -> None:
    assert schema.parse_location_key(schema.RECORD_LOCATION + ID_A[:31]) is None
    assert schema.parse_child_key(schema.CHILD + ID_A) is None
    assert schema.parse_submitter_key(schema.SUBMITTER + ID_A) is None


def test_meta_keys_are_the_meta_constants() -> None:
    assert schema.META_KEYS == {schema.META_SCHEMA_VERSION, schema.META_LOG_SIZE,
                                schema.META_TIP, schema.META_CONSENSUS,
                                schema.META_HISTORY_FROM, schema.META_BACKFILLED,
                                schema.META_POLICY_STATE, schema.META_BREAKERS,
                                schema.META_SNAPSHOT_GOVERNANCE}
    assert all(schema.key_prefix(k) == schema.META for k in schema.META_KEYS)
