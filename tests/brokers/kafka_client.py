#!/usr/bin/env python3
"""An independent Kafka client for iocd's broker tests (confluent-kafka).

  produce BROKERS TOPIC LINES_PER_MESSAGE   lines on stdin -> records
  consume BROKERS TOPIC                      every record of every partition,
                                             from the start, one per line on
                                             stdout, until stdin closes
  committed BROKERS GROUP TOPIC              the group's committed offsets,
                                             as one JSON object
"""
import json
import sys
import threading

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(brokers, topic, per_message):
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True,
                  "linger.ms": 5})
    failed = []
    def report(err, _msg):
        if err is not None:
            failed.append(str(err))
    # Records go round the partitions in turn: keyless records would stick
    # to one partition for librdkafka's sticky.partitioning.linger.ms, and a
    # test of a group could then find one instance holding every record.
    parts = max(1, len(p.list_topics(topic, timeout=30).topics[topic].partitions))
    batch, sent = [], 0
    def flush_batch():
        nonlocal batch, sent
        if batch:
            while True:
                try:
                    p.produce(topic, "\n".join(batch).encode(), partition=sent % parts,
                              on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.1)
            sent += 1
            batch = []
    for line in sys.stdin:
        batch.append(line.rstrip("\n"))
        if len(batch) >= per_message:
            flush_batch()
        p.poll(0)
    flush_batch()
    left = p.flush(60)
    if left or failed:
        sys.exit(f"produce: {left} undelivered, failures: {failed[:3]}")
    print(f"produced {sent}", flush=True)


def consume(brokers, topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "iocd-test-reader",
                  "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=30).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("consuming", flush=True)
    while not done.is_set():
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        sys.stdout.write(m.value().decode() + "\n")
        sys.stdout.flush()
    c.close()


def committed(brokers, group, topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": group,
                  "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=30).topics[topic].partitions
    got = c.committed([TopicPartition(topic, p) for p in parts], timeout=30)
    print(json.dumps({str(tp.partition): tp.offset for tp in got}), flush=True)
    c.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(args[0], args[1], int(args[2]))
    elif cmd == "consume":
        consume(args[0], args[1])
    elif cmd == "committed":
        committed(args[0], args[1], args[2])
    else:
        sys.exit(f"unknown command {cmd}")
