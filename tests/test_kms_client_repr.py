"""A delivered key never shows its bytes in a repr (keys never appear in logs)."""

from qkdnet.kms.client import Key


def test_key_repr_hides_the_key_bytes() -> None:
    key = Key(key_id="3f1c7a9e-0000-4000-8000-000000000001", key=bytes(range(32)))
    text = repr(key) + str(key)
    assert key.key_id in text
    assert bytes(range(32)).hex() not in text and "\\x00\\x01" not in text
