"""Byte-level mutations for fuzzing file parsers: a list of (kind, position, value) edits."""


def mutate(data, edits):
    """Apply edits to ``data`` (bytes): kind is "flip" (one bit), "set", "insert", "delete",
    "truncate" or "append"; positions wrap around the current length. Returns bytes."""
    data = bytearray(data)
    for kind, position, value in edits:
        position %= len(data) + 1
        if kind == "flip" and position < len(data):
            data[position] ^= 1 << (value % 8)
        elif kind == "set" and position < len(data):
            data[position] = value
        elif kind == "insert":
            data.insert(position, value)
        elif kind == "delete" and position < len(data):
            del data[position]
        elif kind == "truncate":
            del data[position:]
        elif kind == "append":
            data += bytes([value]) * (1 + position % 64)
    return bytes(data)
