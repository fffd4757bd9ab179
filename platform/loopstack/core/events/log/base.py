"""The `EventLog` interface: an append-only, partitioned log with consumer groups.

Two implementations share this file layout: `sqlite.py` (one machine) and `kafka.py` (a cluster).
Dead letters are ordinary records on the topic `<topic>.dlq` (see `dlq_topic`).
"""

from __future__ import annotations

import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from loopstack.core.events._slots import builder
from loopstack.core.events.errors import InvalidTopic

__all__ = [
    "EventLog",
    "OutMessage",
    "Record",
    "Subscription",
    "TopicPartition",
    "check_topic",
    "dlq_topic",
    "make_record",
    "partition_for",
]

TopicPartition = tuple[str, int]
"""(topic, partition)."""

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
DLQ_SUFFIX = ".dlq"


def check_topic(topic: str) -> str:
    """Return `topic` if Kafka would accept the name; raise InvalidTopic otherwise."""
    if not _TOPIC.match(topic) or topic in (".", ".."):
        raise InvalidTopic(topic)
    return topic


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX


def partition_for(key: str, partitions: int) -> int:
    """Stable partition of a key (CRC-32: the same in every process and Python version)."""
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True, slots=True)
class OutMessage:
    """A record to append: the partition follows from `key` (None: any partition)."""

    topic: str
    key: str | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Record:
    """A record read from the log."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int


make_record: Callable[[str, int, int, str | None, bytes, int], Record] = builder(Record)
"""`Record(topic, partition, offset, key, value, timestamp_ms)` for the polling hot paths."""


class Subscription(ABC):
    """A member of a consumer group: it receives records of the partitions assigned to it."""

    @abstractmethod
    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records after the group's position, waiting up to `timeout` s."""

    @abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record, for the group, the next offset to read per partition (after processing)."""

    @abstractmethod
    def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Move the group's position (replay from an offset; see `EventLog.offsets_for_time`)."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group so the other members take over its partitions."""

    def lag(self) -> dict[TopicPartition, int]:
        """Records not yet committed per assigned partition (empty if the backend cannot tell)."""
        return {}


class EventLog(ABC):
    """Append-only partitioned log: append batches, read ranges, subscribe as a group member."""

    backend: str = "abstract"

    @abstractmethod
    def append(self, messages: Sequence[OutMessage]) -> None:
        """Durably append a batch, in order per key; raise LogUnavailable if it cannot.

        Topics are created on first use. When this returns, every message is in the log.
        """

    @abstractmethod
    def subscribe(self, group: str, topics: Sequence[str]) -> Subscription:
        """Join consumer group `group` on `topics`; new groups start at the earliest record."""

    @abstractmethod
    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        """Up to `limit` records of one partition from `offset` on, outside any group."""

    @abstractmethod
    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition: (first offset still kept, next offset to be written)."""

    @abstractmethod
    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        """Per partition: the first offset whose record is at or after `timestamp_ms`."""

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold connections
        """Release connections and clients."""
