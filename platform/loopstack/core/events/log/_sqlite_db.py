"""SQLite connection setup, schema and topic lookup shared by the SQLite log and its groups."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loopstack.core.events.errors import TopicNotFound

__all__ = ["SCHEMA", "connect", "ensure_topic", "insert_rows", "lookup_topic", "now_ms"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, partitions INTEGER NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS heads (
    tid INTEGER NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    bytes INTEGER NOT NULL, PRIMARY KEY (tid, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    tid INTEGER NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    ts INTEGER NOT NULL, key TEXT, value BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS records_pos ON records (tid, partition, offset);
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL, tid INTEGER NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (grp, tid, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL, member TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, member)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL, tid INTEGER NOT NULL, partition INTEGER NOT NULL, member TEXT NOT NULL,
    expires_ms INTEGER NOT NULL, PRIMARY KEY (grp, tid, partition)) WITHOUT ROWID;
"""


_ROWS_PER_INSERT = 500


def insert_rows(conn: sqlite3.Connection, into: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`INSERT INTO <into> VALUES (...), (...), ...`: up to 500 rows per statement.

    One statement runs as one `sqlite3_step`, and Python releases the GIL around each step; an
    `executemany` steps once per row, so a thread inserting a batch would hand the GIL back and
    forth with the process's other threads once per row.
    """
    if not rows:
        return
    row = "(" + ", ".join("?" * len(rows[0])) + ")"
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        conn.execute(
            f"INSERT INTO {into} VALUES {', '.join([row] * len(chunk))}",
            [value for r in chunk for value in r],
        )


def now_ms() -> int:
    """Wall-clock milliseconds (record timestamps, lease expiries)."""
    return int(time.time() * 1000)


def connect(path: Path, busy_timeout_ms: int, synchronous: str) -> sqlite3.Connection:
    """Open the log database in WAL mode (readers never block the writer) and create the schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock up
    # front instead of failing to upgrade a read lock (a deadlock SQLite reports as "busy").
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    # Only a new file needs the schema (and WAL, which is persistent): opening an existing log
    # then only reads, so it works while another process holds the write lock.
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'leases'").fetchone() is None:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
        except BaseException:
            conn.close()
            raise
    return conn


def lookup_topic(conn: sqlite3.Connection, name: str) -> tuple[int, int]:
    """(topic id, partitions) of an existing topic; raise TopicNotFound."""
    row = conn.execute("SELECT id, partitions FROM topics WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise TopicNotFound(name)
    return int(row[0]), int(row[1])


def ensure_topic(conn: sqlite3.Connection, name: str, partitions: int) -> tuple[int, int]:
    """(topic id, partitions), creating the topic with `partitions` if it is new."""
    try:
        return lookup_topic(conn, name)
    except TopicNotFound:
        pass
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR IGNORE INTO topics (name, partitions, created_ms) VALUES (?, ?, ?)",
            (name, partitions, now_ms()),
        )
        tid, count = lookup_topic(conn, name)
        conn.executemany(
            "INSERT OR IGNORE INTO heads (tid, partition, next_offset, bytes) VALUES (?, ?, 0, 0)",
            [(tid, p) for p in range(count)],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return tid, count
