#!/usr/bin/env python3
"""Which B-trees SQLite's commits write: the frames of a WAL counted by the
table or index their page belongs to (bench/HISTORY.md, "The live-queue index
on a hash of the queue key").

    # mid-run, copy the database and its WAL (the copy's WAL is consumed
    # when the copy is opened, hence the second copy):
    cp $DATA/integro.db /tmp/w.db && cp $DATA/integro.db-wal /tmp/w.db-wal \
        && cp /tmp/w.db-wal /tmp/w.wal
    bench/wal_pages.py /tmp/w.db /tmp/w.wal

Reads the frames of the WAL's current generation (those carrying the
header's salts), counts commits (frames that carry the database size), and
maps page numbers to B-trees with the `dbstat` table of the sqlite3 shell.
"""
import collections
import struct
import subprocess
import sys


def frames(wal_path):
    data = open(wal_path, "rb").read()
    if len(data) < 32:
        sys.exit(f"{wal_path}: not a WAL (too short)")
    magic, _version, page_size, _seq, salt1, salt2, _c1, _c2 = struct.unpack(">8I", data[:32])
    if magic not in (0x377F0682, 0x377F0683):
        sys.exit(f"{wal_path}: not a WAL (magic {magic:#x})")
    pages, commits, offset = [], 0, 32
    while offset + 24 + page_size <= len(data):
        page, db_size, s1, s2 = struct.unpack(">4I", data[offset : offset + 16])
        if (s1, s2) != (salt1, salt2):
            break  # a frame of an earlier generation
        pages.append(page)
        commits += db_size != 0
        offset += 24 + page_size
    return page_size, pages, commits


def owners(db_path):
    out = subprocess.run(
        ["sqlite3", db_path, "SELECT pageno, name FROM dbstat"],
        capture_output=True, text=True, check=True,
    ).stdout
    return {int(p): name for p, name in (line.split("|", 1) for line in out.splitlines())}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    page_size, pages, commits = frames(sys.argv[2])
    owner = owners(sys.argv[1])
    per = max(commits, 1)
    print(f"page size {page_size}, frames {len(pages)}, commits {commits}, "
          f"frames a commit {len(pages) / per:.1f}")
    for name, n in collections.Counter(owner.get(p, "?") for p in pages).most_common():
        print(f"  {name:34s} {n / per:7.2f} frames a commit")


if __name__ == "__main__":
    main()
