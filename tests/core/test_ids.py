"""Pooled UUIDs: real version-4 ids, unique across threads and across a fork."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from loopstack.core.ids import uuid4


def test_ids_are_version_4_uuids_unique_across_threads() -> None:
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [uuid4() for _ in range(2_000)], range(8)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 16_000
    parsed = [uuid.UUID(i) for i in ids[:100]]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 and str(u) in ids for u in parsed)


def test_a_forked_child_never_hands_out_the_parents_next_ids() -> None:
    uuid4()  # the pool now holds bytes a child would inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, "\n".join(uuid4() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    parent = {uuid4() for _ in range(50)}
    assert len(child) == 50 and not child & parent
