"""Kafka event log (confluent-kafka): idempotent producer, manual commits, keyed partitioning.

Topics are created through the AdminClient with the configured partitions and `retention.ms`.
See `KAFKA_NOTES.md` next to this package for what the Tansu test broker lacks.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import (
    TopicPartition as KafkaTopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from loopstack.core.events.errors import LogUnavailable, TopicNotFound
from loopstack.core.events.log.base import (
    EventLog,
    OutMessage,
    Record,
    Subscription,
    TopicPartition,
    check_topic,
    make_record,
)
from loopstack.core.settings import Settings

__all__ = ["KafkaEventLog", "KafkaSubscription"]

log = logging.getLogger(__name__)
_METADATA_TIMEOUT_S = 10.0
_READ_FIRST_S = 1.0
_READ_IDLE_S = 0.1


class KafkaEventLog(EventLog):
    """Event log on a Kafka cluster (or any Kafka-protocol broker)."""

    backend = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        partitions: int = 4,
        replication_factor: int = 1,
        retention_ms: int = 7 * 24 * 3600 * 1000,
        delivery_timeout_ms: int = 300_000,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1000,
        client_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.retention_ms = retention_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._base: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            **(client_config or {}),
        }
        self._producer = Producer(
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": delivery_timeout_ms,
                # `append` only needs to hear of failures (a flushed queue means the rest were
                # acknowledged): no Python callback per delivered message.
                "delivery.report.only.error": True,
                # Java-compatible hashing of the key: other Kafka clients pick the same partition.
                "partitioner": "murmur2_random",
                **self._base,
            }
        )
        self._admin = AdminClient(dict(self._base))
        self._known: set[str] = set()
        self._produce_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._reader: Consumer | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaEventLog:
        """Build from `Settings.events`."""
        ev = settings.events
        return cls(
            ev.kafka_bootstrap_servers,
            partitions=ev.partitions,
            replication_factor=ev.kafka_replication_factor,
            retention_ms=ev.retention_ms,
            delivery_timeout_ms=ev.kafka_delivery_timeout_ms,
            session_timeout_ms=ev.group_session_timeout_ms,
            heartbeat_interval_ms=ev.group_heartbeat_interval_ms,
            client_config=ev.kafka_config,
        )

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics with the configured partitions and retention."""
        missing = [check_topic(t) for t in topics if t not in self._known]
        if not missing:
            return
        try:
            existing = self._admin.list_topics(timeout=_METADATA_TIMEOUT_S).topics
        except KafkaException as exc:
            raise LogUnavailable("kafka", f"listing topics: {exc}") from exc
        new = [
            NewTopic(
                t,
                num_partitions=self.partitions,
                replication_factor=self.replication_factor,
                config={"retention.ms": str(self.retention_ms)},
            )
            for t in missing
            if t not in existing
        ]
        if new:
            for topic, future in self._admin.create_topics(new).items():
                try:
                    future.result(timeout=_METADATA_TIMEOUT_S)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise LogUnavailable("kafka", f"creating topic {topic}: {exc}") from exc
        self._known.update(missing)

    def append(self, messages: Sequence[OutMessage]) -> None:
        """Produce a batch and wait for every delivery report (retried by librdkafka meanwhile)."""
        if not messages:
            return
        self.ensure_topics(sorted({m.topic for m in messages}))
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        with self._produce_lock:
            for m in messages:
                while True:
                    try:
                        self._producer.produce(
                            m.topic,
                            value=m.value,
                            key=m.key.encode() if m.key is not None else None,
                            on_delivery=delivered,
                        )
                        break
                    except BufferError:
                        # librdkafka's own queue is full: serve callbacks until room frees up.
                        self._producer.poll(0.05)
            # Idempotence keeps order and drops duplicates across librdkafka's retries, so wait
            # rather than give up: a timeout here would make the outbox resend the batch.
            # Only this method produces, under the lock: an empty queue means all were reported.
            while self._producer.flush(1.0) > 0:
                pass
        if failures:
            raise LogUnavailable("kafka", f"{len(failures)} deliveries failed: {failures[0]}")

    def subscribe(self, group: str, topics: Sequence[str]) -> Subscription:
        """Join `group` (Kafka group protocol); new groups start at the earliest offset."""
        self.ensure_topics(topics)
        return KafkaSubscription(self._consumer_config(group), topics)

    def _consumer_config(self, group: str) -> dict[str, Any]:
        return {
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            **self._base,
        }

    def _reader_consumer(self) -> Consumer:
        if self._reader is None:
            config = self._consumer_config(f"loopstack-reader-{uuid.uuid4().hex}")
            self._reader = Consumer({**config, "enable.partition.eof": True})
        return self._reader

    def _partitions(self, topic: str) -> list[int]:
        check_topic(topic)
        try:
            # All topics, not `list_topics(topic=...)`: asking for one topic by name lets a
            # broker with auto-creation create it.
            meta = self._admin.list_topics(timeout=_METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise LogUnavailable("kafka", f"metadata of {topic}: {exc}") from exc
        found = meta.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise TopicNotFound(topic)
        return sorted(found.partitions)

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        """Read one partition from `offset` with an unsubscribed consumer (no group state).

        Stops at `limit`, at partition EOF, or when the broker has nothing more within a short
        idle time (some brokers, Tansu among them, report no usable end offset).
        """
        low, high = self.watermarks(topic).get(partition, (0, 0))
        if high <= low:
            return []  # empty partition: nothing to wait for
        out: list[Record] = []
        with self._read_lock:
            reader = self._reader_consumer()
            reader.assign([KafkaTopicPartition(topic, partition, offset)])
            try:
                # poll() returns at the first message; consume() would wait for a full batch.
                first = reader.poll(_READ_FIRST_S)
                batch = [first] if first is not None else []
                while batch and len(out) < limit:
                    eof = False
                    for msg in batch:
                        err = msg.error()
                        if err is not None:
                            eof = eof or err.code() == KafkaError._PARTITION_EOF
                            continue
                        out.append(to_record(msg))
                    if eof:
                        break
                    batch = reader.consume(min(max(1, limit - len(out)), 1000), _READ_IDLE_S)
            finally:
                reader.unassign()
        return out[:limit]

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """(low, high) watermark per partition, as the broker reports them."""
        partitions = self._partitions(topic)
        with self._read_lock:
            reader = self._reader_consumer()
            try:
                return {
                    p: tuple(
                        reader.get_watermark_offsets(  # type: ignore[misc]
                            KafkaTopicPartition(topic, p), timeout=_METADATA_TIMEOUT_S, cached=False
                        )
                    )
                    for p in partitions
                }
            except KafkaException as exc:
                raise LogUnavailable("kafka", f"watermarks of {topic}: {exc}") from exc

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        """First offset at or after `timestamp_ms` per partition (ListOffsets by timestamp)."""
        partitions = self._partitions(topic)
        marks = self.watermarks(topic)
        with self._read_lock:
            try:
                found = self._reader_consumer().offsets_for_times(
                    [KafkaTopicPartition(topic, p, timestamp_ms) for p in partitions],
                    timeout=_METADATA_TIMEOUT_S,
                )
            except KafkaException as exc:
                raise LogUnavailable("kafka", f"offsets for time on {topic}: {exc}") from exc
        # -1 means "no record that late": the end of the partition.
        return {
            tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found
        }

    def close(self) -> None:
        """Flush the producer and close the reader."""
        self._producer.flush(5.0)
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def to_record(msg: Message) -> Record:
    """A confluent-kafka message as a `Record`."""
    key = msg.key()
    ts = msg.timestamp()[1]
    return make_record(
        msg.topic() or "",
        msg.partition() or 0,
        msg.offset() or 0,
        key.decode() if isinstance(key, bytes) else key,
        msg.value() or b"",
        ts if ts >= 0 else int(time.time() * 1000),
    )


class KafkaSubscription(Subscription):
    """One member of a Kafka consumer group with manual commits."""

    def __init__(self, config: dict[str, Any], topics: Sequence[str]) -> None:
        self._consumer = Consumer({**config, "on_commit": _on_commit})
        self._assigned: set[TopicPartition] = set()
        # The last offsets given to `commit` or `seek`, committed for sure on revoke and close.
        self._latest: dict[TopicPartition, int] = {}
        self._consumer.subscribe(list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, _c: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}

    def _on_revoke(self, _c: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._commit({tp: o for tp, o in self._latest.items() if tp in revoked}, wait=True)
        self._assigned -= revoked

    def assignment(self) -> list[TopicPartition]:
        """The (topic, partition) pairs assigned to this member now."""
        return sorted(self._assigned)

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records; broker errors are logged (librdkafka reconnects)."""
        out = []
        for msg in self._consumer.consume(max_records, timeout):
            err = msg.error()
            if err is None:
                out.append(to_record(msg))
            elif err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    raise LogUnavailable("kafka", str(err))
                log.warning("kafka consumer: %s", err)
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit without waiting for the broker; a revoke and `close` commit the last ones
        synchronously.

        The next batch is processed meanwhile instead of after a round trip. A commit that
        fails (logged) only means records re-read later, which the consumer store finds
        already applied.
        """
        self._latest.update(offsets)
        self._commit(offsets, wait=False)

    def _commit(self, offsets: Mapping[TopicPartition, int], *, wait: bool) -> None:
        """Commit; a commit refused (e.g. during a rebalance) is logged, not raised."""
        if not offsets:
            return
        listed = [KafkaTopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            if wait:
                self._consumer.commit(offsets=listed, asynchronous=False)
            else:
                self._consumer.commit(offsets=listed, asynchronous=True)
        except KafkaException as exc:
            _on_commit(exc, [])

    def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Seek assigned partitions and commit the offsets for the group (all partitions)."""
        for (topic, partition), offset in offsets.items():
            if (topic, partition) in self._assigned:
                self._consumer.seek(KafkaTopicPartition(topic, partition, offset))
        self._latest.update(offsets)
        self._commit(offsets, wait=True)

    def lag(self) -> dict[TopicPartition, int]:
        """High watermark minus committed offset per assigned partition."""
        assigned = [KafkaTopicPartition(t, p) for t, p in sorted(self._assigned)]
        if not assigned:
            return {}
        out = {}
        try:
            for tp in self._consumer.committed(assigned, timeout=_METADATA_TIMEOUT_S):
                _, high = self._consumer.get_watermark_offsets(tp, timeout=_METADATA_TIMEOUT_S)
                out[(tp.topic, tp.partition)] = max(0, high - max(tp.offset, 0))
        except KafkaException as exc:
            log.warning("kafka consumer: lag unavailable (%s)", exc)
        return out

    def close(self) -> None:
        """Commit the last offsets and leave the group (the others rebalance at once rather than
        after the session timeout)."""
        self._commit({tp: o for tp, o in self._latest.items() if tp in self._assigned}, wait=True)
        self._consumer.close()


def _on_commit(
    err: KafkaError | KafkaException | None, _partitions: list[KafkaTopicPartition]
) -> None:
    """librdkafka's report of a commit (an asynchronous one's is served during `consume`)."""
    if err is not None:
        log.warning("kafka consumer: commit failed (%s); records will be redelivered", err)
