"""Reading LevelDB files without LevelDB (leveldb_keys): the log format's truncation, lenient blocks."""
import struct

from ansible.module_utils import leveldb_keys as lk


def physical(kind, data):
    return b"\0\0\0\0" + struct.pack("<H", len(data)) + bytes([kind]) + data


def test_complete_records_are_read_and_a_cut_off_tail_is_reported():
    log = physical(1, b"one") + physical(2, b"tw") + physical(4, b"o")
    assert lk.log_records(log) == ([b"one", b"two"], False)
    for cut in (len(log) - 1, len(log) - 3, 5, len(physical(1, b"one")) + 4):
        records, truncated = lk.log_records(log[:cut])
        assert truncated, cut
    assert lk.log_records(physical(2, b"first half only")) == ([], True)


def test_zero_padding_at_the_end_of_a_block_is_not_truncation():
    first = physical(1, b"x" * (lk.BLOCK - 7 - 3))
    log = first + b"\0\0\0" + physical(1, b"next block")
    assert lk.log_records(log) == ([b"x" * (lk.BLOCK - 10), b"next block"], False)


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def block(entries, restart_every=2):
    data, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(data))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        data += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    return bytes(data) + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))


def test_block_entries_resume_at_the_next_restart_point_after_a_bad_entry():
    entries = [(b"key%02d" % i, b"v%d" % i) for i in range(6)]
    good = block(entries)
    assert lk.block_entries(good) == entries
    bad = bytearray(good)
    second = len(varint(0) + varint(5) + varint(2) + b"key00v0")
    bad[second + 1] = 0x7F  # the second entry claims a huge key: unparseable until the next restart
    assert lk.block_entries(bytes(bad)) == entries[:1] + entries[2:]


def test_snappy_literals_and_copies_are_decoded():
    literal = b"abcd"
    data = varint(12) + bytes([(len(literal) - 1) << 2]) + literal + bytes([((8 - 4) << 2) | 1, 4])
    assert lk.snappy_decompress(data) == b"abcdabcdabcd"
    assert lk.snappy_decompress(data[:-1]) == b"abcd"  # damaged: what can be decoded


def test_write_batch_operations_carry_their_sequence_numbers():
    put = b"\x01" + varint(1) + b"a" + varint(1) + b"x"
    record = struct.pack("<QI", 7, 2) + put + b"\x00" + varint(1) + b"b"
    assert list(lk._write_batch(record)) == [(7, 1, b"a"), (8, 0, b"b")]
