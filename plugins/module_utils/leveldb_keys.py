"""Reading a LevelDB directory's files without LevelDB: the manifest's state and every key.

Two uses at backup time, where LevelDB itself is too forgiving:

- ``read_manifest`` parses the current MANIFEST record by record. LevelDB treats a record cut off at
  the end of the manifest as a crash during a write and opens the store without the tail, so a
  truncated manifest opens "clean" with fewer (or zero) records. Here a cut-off tail is reported.
- ``reference_keys`` lists the live keys of a (possibly corrupt) store for counting what a repair
  lost: the live tables and the logs are parsed leniently, block by block and restart point by
  restart point, checksums not checked, so a bad block costs at most the entries that cannot be
  parsed at all instead of ending the read (a read through LevelDB stops at the first bad block).
  Keys are merged by sequence number: a key counts when its newest version is a value.

Pure Python; snappy-compressed blocks are decompressed here (lenient: a damaged block yields what
can be decoded).
"""
import os
import struct

BLOCK = 32768
FOOTER = 48
TABLE_MAGIC = 0xDB4775248B80FB57
TYPE_DELETION, TYPE_VALUE = 0, 1


class ParseError(Exception):
    pass


def varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ParseError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


# -- log format (MANIFEST-*, *.log) -------------------------------------------------------------
def log_records(data):
    """(logical records, truncated): truncated when the file ends inside a record (a header or data
    cut off, or a FIRST/MIDDLE fragment without its LAST)."""
    records, pending, pos = [], None, 0
    truncated = False
    while pos < len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # trailer: zero padding up to the block end
            if pos + left_in_block > len(data):
                truncated = any(data[pos:])
            pos += left_in_block
            continue
        if pos + 7 > len(data):
            truncated = True
            break
        length = data[pos + 4] | data[pos + 5] << 8
        kind = data[pos + 6]
        if kind == 0 and length == 0:  # zero padding (preallocated or end of block)
            pos += left_in_block
            continue
        if pos + 7 + length > len(data):
            truncated = True
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            records.append(chunk)
            pending = None
        elif kind == 2:
            pending = chunk
        elif kind == 3 and pending is not None:
            pending += chunk
        elif kind == 4 and pending is not None:
            records.append(pending + chunk)
            pending = None
    if pending is not None:
        truncated = True
    return records, truncated


def read_manifest(path):
    """State of the manifest CURRENT names: {"manifest", "live_tables" (numbers), "log_number",
    "next_file", "truncated", "edits"}. Raises ParseError when it cannot be read at all."""
    try:
        with open(os.path.join(path, "CURRENT"), encoding="ascii") as handle:
            name = handle.read().strip()
        with open(os.path.join(path, name), "rb") as handle:
            data = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"cannot read the manifest: {exc}") from exc
    records, truncated = log_records(data)
    live, log_number, next_file = set(), None, None
    for edit in records:
        pos = 0
        while pos < len(edit):
            tag, pos = varint(edit, pos)
            if tag == 1:
                size, pos = varint(edit, pos)
                pos += size
            elif tag == 2:
                log_number, pos = varint(edit, pos)
            elif tag in (4, 9):
                _, pos = varint(edit, pos)
            elif tag == 3:
                next_file, pos = varint(edit, pos)
            elif tag == 5:
                _, pos = varint(edit, pos)
                size, pos = varint(edit, pos)
                pos += size
            elif tag == 6:
                _, pos = varint(edit, pos)
                number, pos = varint(edit, pos)
                live.discard(number)
            elif tag == 7:
                _, pos = varint(edit, pos)
                number, pos = varint(edit, pos)
                _, pos = varint(edit, pos)
                for _ in range(2):
                    size, pos = varint(edit, pos)
                    pos += size
                live.add(number)
            else:
                raise ParseError(f"unknown manifest tag {tag}")
    return {"manifest": name, "live_tables": live, "log_number": log_number, "next_file": next_file,
            "truncated": truncated, "edits": len(records)}


def _write_batch(record):
    """(sequence, type, key) of every operation in a log record (a WriteBatch)."""
    if len(record) < 12:
        return
    seq = struct.unpack_from("<Q", record, 0)[0]
    count = struct.unpack_from("<I", record, 8)[0]
    pos = 12
    for i in range(count):
        try:
            kind = record[pos]
            pos += 1
            size, pos = varint(record, pos)
            key = record[pos:pos + size]
            pos += size
            if kind == TYPE_VALUE:
                size, pos = varint(record, pos)
                pos += size
            elif kind != TYPE_DELETION:
                return
        except (ParseError, IndexError):
            return
        yield seq + i, kind, key


# -- table format (*.ldb, *.sst) ---------------------------------------------------------------
def snappy_decompress(data):
    """Raw snappy, lenient: returns what can be decoded before an error."""
    try:
        size, pos = varint(data, 0)
    except ParseError:
        return b""
    out = bytearray()
    while pos < len(data) and len(out) < size:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            length += 1
            out += data[pos:pos + length]
            pos += length
            continue
        if kind == 1:
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | (data[pos] if pos < len(data) else 0)
            pos += 1
        elif kind == 2:
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            break
        for _ in range(length):
            out.append(out[-offset])
    return bytes(out)


def _read_block(handle, offset, size):
    handle.seek(offset)
    raw = handle.read(size + 5)
    if len(raw) < size + 1:
        return b""
    if raw[size] == 1:
        return snappy_decompress(raw[:size])
    return raw[:size]


def block_entries(block):
    """(key, value) of a block, lenient: on a bad entry, resume at the next restart point."""
    if len(block) < 4:
        return []
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * restarts
    if restarts == 0 or limit < 0:
        limit, points = len(block) - 4, [0]
    else:
        points = [struct.unpack_from("<I", block, limit + 4 * i)[0] for i in range(restarts)]
    entries, pos, key = [], 0, b""
    while pos < limit:
        try:
            shared, p = varint(block, pos)
            unshared, p = varint(block, p)
            vlen, p = varint(block, p)
            if shared > len(key) or p + unshared + vlen > limit:
                raise ParseError("bad entry")
            key = key[:shared] + block[p:p + unshared]
            value = block[p + unshared:p + unshared + vlen]
            pos = p + unshared + vlen
            entries.append((key, value))
        except ParseError:
            later = [r for r in points if r > pos]
            if not later:
                break
            pos, key = later[0], b""
    return entries


def table_entries(path):
    """(user key, sequence, type) of every entry that can be parsed from the table at path."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size < FOOTER:
                return
            handle.seek(size - FOOTER)
            footer = handle.read(FOOTER)
            if struct.unpack_from("<Q", footer, FOOTER - 8)[0] != TABLE_MAGIC:
                return
            _, pos = varint(footer, 0)
            _, pos = varint(footer, pos)
            index_offset, pos = varint(footer, pos)
            index_size, pos = varint(footer, pos)
            index = block_entries(_read_block(handle, index_offset, index_size))
            for _separator, block_handle in index:
                try:
                    offset, p = varint(block_handle, 0)
                    length, p = varint(block_handle, p)
                except ParseError:
                    continue
                if offset + length > size:
                    continue
                for internal, _value in block_entries(_read_block(handle, offset, length)):
                    if len(internal) < 8:
                        continue
                    tag = struct.unpack_from("<Q", internal, len(internal) - 8)[0]
                    yield internal[:-8], tag >> 8, tag & 0xFF
    except (OSError, ParseError):
        return


def reference_keys(path):
    """Live keys of the LevelDB at path, read from its files without LevelDB (see the module doc).
    Raises ParseError when the manifest cannot be read or a live table is missing (its keys are not
    known anywhere else)."""
    state = read_manifest(path)
    present = {int(n.rsplit(".", 1)[0]) for n in os.listdir(path)
               if n.endswith((".ldb", ".sst")) and n.rsplit(".", 1)[0].isdigit()}
    missing = state["live_tables"] - present
    if missing:
        raise ParseError(f"{len(missing)} live table(s) missing: their keys are unknown")
    newest = {}

    def see(key, seq, kind):
        if kind not in (TYPE_VALUE, TYPE_DELETION):
            return
        old = newest.get(key)
        if old is None or seq > old[0]:
            newest[key] = (seq, kind)

    names = os.listdir(path)
    for name in names:
        number = name.rsplit(".", 1)[0]
        if name.endswith((".ldb", ".sst")) and number.isdigit() and int(number) in state["live_tables"]:
            for key, seq, kind in table_entries(os.path.join(path, name)):
                see(key, seq, kind)
    for name in names:
        number = name.rsplit(".", 1)[0]
        if name.endswith(".log") and number.isdigit() and int(number) >= (state["log_number"] or 0):
            with open(os.path.join(path, name), "rb") as handle:
                records, _truncated = log_records(handle.read())
            for record in records:
                for seq, kind, key in _write_batch(record):
                    see(key, seq, kind)
    return {key for key, (_seq, kind) in newest.items() if kind == TYPE_VALUE}
