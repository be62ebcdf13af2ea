"""The in-memory twin of the MQTT link: the broker semantics the head-end worker relies on
(kenshin.aroute.link), each checked on its own."""

from __future__ import annotations

import pytest

from kenshin.aroute.link import LinkClosed, MemoryBroker, topic_matches


@pytest.mark.parametrize(
    ("topic_filter", "topic", "match"),
    [
        ("k/03/+/up", "k/03/c1/up", True),
        ("k/03/+/up", "k/03/c1/down", False),
        ("k/+/+/up", "k/03/c1/up", True),
        ("k/#", "k/03/c1/up", True),
        ("k/#", "k", True),  # '#' also matches the parent level (MQTT 5 §4.7.1.2)
        ("k/03/+/up", "k/03/c1/up/x", False),
        ("k/03", "k/03/c1", False),
        ("k/hes/+/+", "k/hes/progress/w1", True),
    ],
)
def test_topic_filters(topic_filter: str, topic: str, match: bool) -> None:
    assert topic_matches(topic_filter, topic) is match


def test_plain_subscribers_each_get_every_message_and_others_none() -> None:
    broker = MemoryBroker()
    a = broker.connect("a", ("k/+/+/up",))
    b = broker.connect("b", ("k/03/+/up",))
    c = broker.connect("c", ("k/04/+/up",))
    pub = broker.connect("pub")
    for i in range(3):
        pub.publish(f"k/03/c{i}/up", bytes([i]))
    assert [d.payload for d in a.receive(0.0)] == [b"\x00", b"\x01", b"\x02"]
    assert [d.payload for d in b.receive(0.0)] == [b"\x00", b"\x01", b"\x02"]
    assert c.receive(0.0) == []


def test_a_shared_group_splits_messages_round_robin_across_members() -> None:
    broker = MemoryBroker()
    w1 = broker.connect("w1", ("$share/hes/k/+/+/up",), persistent=True)
    w2 = broker.connect("w2", ("$share/hes/k/+/+/up",), persistent=True)
    pub = broker.connect("pub")
    for i in range(10):
        pub.publish("k/03/c/up", bytes([i]))
    got1 = [d.payload[0] for d in w1.receive(0.0)]
    got2 = [d.payload[0] for d in w2.receive(0.0)]
    assert sorted(got1 + got2) == list(range(10))
    assert len(got1) == len(got2) == 5


def test_receive_maximum_caps_what_is_unacknowledged() -> None:
    broker = MemoryBroker()
    w = broker.connect("w", ("t",), persistent=True, receive_maximum=3)
    pub = broker.connect("pub")
    for i in range(5):
        pub.publish("t", bytes([i]))
    first = w.receive(0.0)
    assert [d.payload[0] for d in first] == [0, 1, 2]
    assert w.receive(0.0) == []  # three in flight: nothing more until acknowledged
    w.ack(first[0])
    assert [d.payload[0] for d in w.receive(0.0)] == [3]
    assert broker.pending("w") == 4  # 1, 2, 3 in flight and 4 queued


def test_a_killed_persistent_session_gets_its_unacknowledged_messages_again_marked() -> None:
    broker = MemoryBroker()
    w = broker.connect("w", ("$share/hes/t",), persistent=True)
    pub = broker.connect("pub")
    for i in range(4):
        pub.publish("t", bytes([i]))
    taken = w.receive(0.0, limit=2)
    w.ack(taken[0])
    broker.kill("w")
    with pytest.raises(LinkClosed):
        w.receive(0.0)
    pub.publish("t", b"\x09")  # its share is queued while it is gone
    again = broker.connect("w", ("$share/hes/t",), persistent=True)
    got = again.receive(0.0)
    assert [(d.payload[0], d.redelivered) for d in got] == [
        (1, True),
        (2, False),
        (3, False),
        (9, False),
    ]


def test_a_session_that_is_not_persistent_loses_its_messages() -> None:
    broker = MemoryBroker()
    w = broker.connect("w", ("t",))
    pub = broker.connect("pub")
    pub.publish("t", b"x")
    assert len(w.receive(0.0)) == 1
    broker.kill("w")
    assert broker.connect("w", ("t",)).receive(0.0) == []


def test_status_messages_are_not_queued_for_absent_clients() -> None:
    broker = MemoryBroker()
    broker.connect("w", ("s",), persistent=True).close()
    pub = broker.connect("pub")
    pub.publish_status("s", b"1")  # QoS 0
    pub.publish("s", b"2")  # QoS 1
    assert [d.payload for d in broker.connect("w", ("s",), persistent=True).receive(0.0)] == [b"2"]


def test_a_second_client_with_the_same_id_takes_the_session_over() -> None:
    broker = MemoryBroker()
    first = broker.connect("w", ("t",), persistent=True)
    pub = broker.connect("pub")
    pub.publish("t", b"a")
    assert len(first.receive(0.0)) == 1
    second = broker.connect("w", ("t",), persistent=True)
    with pytest.raises(LinkClosed):
        first.receive(0.0)
    assert [(d.payload, d.redelivered) for d in second.receive(0.0)] == [(b"a", True)]
