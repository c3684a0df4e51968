"""GZIP TFRecord files of ``tf.train.Example`` read without TensorFlow's reader.

The reference format's cost is its inflate. TensorFlow inflates a GZIP
TFRecord file through its zlib stream, in 256 KiB pieces, then copies each
record into a string, parses it into a message and copies the bytes out
again. Here a file is inflated in one call by ISA-L (python-isal's
``igzip``, which releases the GIL, so several files inflate side by side),
and the records and their features are found in the inflated bytes as
views: the only copy left is the one into the caller's array.

Integrity: the gzip trailer's CRC-32 and length cover every inflated byte,
and ISA-L checks them, so the TFRecord framing's own CRC-32C sums (which
would need a CRC-32C module) are not recomputed; every length in the
framing and in the protobuf encoding is bounds-checked, and a file that
fails any check raises ``ValueError`` naming what is wrong.

Only what an Example needs of the protobuf wire format is decoded:
``Example.features`` (1) -> ``Features.feature`` (1, map entries of key 1
and value 2) -> ``Feature`` bytes_list (1) / float_list (2) / int64_list (3)
-> ``value`` (1). Other fields are skipped by their wire type.
"""
from __future__ import annotations

import struct

import numpy as np
from isal import igzip, igzip_lib

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
BYTES_LIST, FLOAT_LIST, INT64_LIST = 1, 2, 3
_HEADER = struct.Struct("<QI")          # a record's length, and that length's masked CRC-32C
_FOOTER_BYTES = 4                       # after the record's data: the data's masked CRC-32C


def read_records(path: str) -> list[memoryview]:
    """The records of the GZIP TFRecord file ``path``, as views into its
    inflated bytes. ``OSError`` if unreadable; ``ValueError`` if damaged."""
    with open(path, "rb") as f:
        compressed = f.read()
    try:
        data = memoryview(igzip.decompress(compressed))
    except (EOFError, igzip.BadGzipFile, igzip_lib.IsalError) as err:   # truncated, not gzip, or damaged
        raise ValueError(f"not a whole gzip stream ({err})") from None
    records, offset = [], 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size + _FOOTER_BYTES:
            raise ValueError(f"{len(data) - offset} bytes after the last record, too few for a record")
        length, _ = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        if length > len(data) - start - _FOOTER_BYTES:
            raise ValueError(f"a record of {length} bytes at offset {offset} runs past the end")
        records.append(data[start:start + length])
        offset = start + length + _FOOTER_BYTES
    return records


def example_features(record: memoryview) -> dict[str, tuple[int, list[memoryview]]]:
    """An Example's features: name -> (BYTES_LIST, FLOAT_LIST or INT64_LIST,
    the encoded values as views). ``ValueError`` if the encoding is damaged."""
    features = {}
    for field, wire, value in _fields(record):
        if field == 1 and wire == LENGTH_DELIMITED:               # Example.features
            for entry_field, entry_wire, entry in _fields(value):
                if entry_field == 1 and entry_wire == LENGTH_DELIMITED:    # one map entry
                    name, feature = _map_entry(entry)
                    features[name] = feature
    return features


def bytes_value(features: dict, name: str) -> memoryview:
    """The single bytes value of feature ``name``."""
    values = _feature(features, name, BYTES_LIST)
    if len(values) != 1:
        raise ValueError(f"feature '{name}' holds {len(values)} byte strings, expected 1")
    return values[0]


def float_values(features: dict, name: str) -> np.ndarray:
    """The float32 values of feature ``name``, packed or not (each value
    then its own 4-byte field)."""
    values = _feature(features, name, FLOAT_LIST)
    return np.concatenate([np.frombuffer(v, "<f4") for v in values]) if values else np.empty(0, np.float32)


def _feature(features: dict, name: str, expected_kind: int) -> list[memoryview]:
    if name not in features:
        raise ValueError(f"no feature '{name}'")
    kind, values = features[name]
    if kind != expected_kind:
        raise ValueError(f"feature '{name}' is not a {('bytes', 'float', 'int64')[expected_kind - 1]} list")
    return values


def _map_entry(entry: memoryview) -> tuple[str, tuple[int, list[memoryview]]]:
    name, feature = "", (BYTES_LIST, [])
    for field, wire, value in _fields(entry):
        if field == 1 and wire == LENGTH_DELIMITED:
            name = bytes(value).decode("utf-8", "replace")
        elif field == 2 and wire == LENGTH_DELIMITED:
            feature = _feature_values(value)
    return name, feature


def _feature_values(feature: memoryview) -> tuple[int, list[memoryview]]:
    kind, values = BYTES_LIST, []
    for field, wire, value in _fields(feature):             # the oneof: the last one set wins
        if field in (BYTES_LIST, FLOAT_LIST, INT64_LIST) and wire == LENGTH_DELIMITED:
            kind, values = field, [item for list_field, _, item in _fields(value) if list_field == 1]
    return kind, values


def _fields(message: memoryview):
    """(field number, wire type, value) of each field of an encoded message:
    the value a view for length-delimited and fixed-width fields, an int for
    varints."""
    offset, end = 0, len(message)
    while offset < end:
        key, offset = _varint(message, offset)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value, offset = _varint(message, offset)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if offset + size > end:
                raise ValueError("a fixed-width field runs past the end of its message")
            value, offset = message[offset:offset + size], offset + size
        elif wire == LENGTH_DELIMITED:
            size, offset = _varint(message, offset)
            if offset + size > end:
                raise ValueError("a length-delimited field runs past the end of its message")
            value, offset = message[offset:offset + size], offset + size
        else:
            raise ValueError(f"unknown protobuf wire type {wire}")
        yield field, wire, value


def _varint(buffer: memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(buffer) or shift > 63:
            raise ValueError("a varint runs past the end of its message")
        byte = buffer[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7
