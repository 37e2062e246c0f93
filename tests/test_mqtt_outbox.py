"""Outbox: messages kept in order and all taken first; state coalesced by topic, taken by room."""

from __future__ import annotations

from octolux.mqtt.outbox import Outbox, Outgoing


def message(topic: str, payload: str = "x", qos: int = 1, retain: bool = False) -> Outgoing:
    return Outgoing(topic, payload, qos, retain)


def state(topic: str, payload: str) -> Outgoing:
    return Outgoing(topic, payload, 0, True)


def topics(batch: list[Outgoing]) -> list[tuple[str, str | bytes]]:
    return [(m.topic, m.payload) for m in batch]


def test_messages_are_all_taken_in_order_whatever_the_room():
    outbox = Outbox()
    for n in range(5):
        outbox.put(message(f"p/inputs/{n % 3}", str(n)))
    assert len(outbox) == 5
    assert topics(outbox.take(0)) == [
        ("p/inputs/0", "0"), ("p/inputs/1", "1"), ("p/inputs/2", "2"),
        ("p/inputs/0", "3"), ("p/inputs/1", "4"),
    ]
    assert len(outbox) == 0 and outbox.take(10) == []


def test_a_newer_state_value_replaces_the_waiting_one_in_its_place():
    outbox = Outbox()
    outbox.put(state("p/hold/1", "10"), coalesce=True)
    outbox.put(state("p/hold/2", "20"), coalesce=True)
    outbox.put(state("p/hold/1", "11"), coalesce=True)
    assert (outbox.state, outbox.coalesced) == (2, 1)
    assert topics(outbox.take(10)) == [("p/hold/1", "11"), ("p/hold/2", "20")]


def test_state_waits_bounded_by_its_topics_however_often_it_is_published():
    outbox = Outbox()
    for round_ in range(100):
        for register in range(240):
            outbox.put(state(f"p/hold/{register}", str(round_)), coalesce=True)
    assert len(outbox) == 240
    assert outbox.coalesced == 99 * 240
    assert {m.payload for m in outbox.take(1000)} == {"99"}


def test_messages_go_before_state_and_state_only_as_far_as_the_room():
    outbox = Outbox()
    for register in range(5):
        outbox.put(state(f"p/hold/{register}", "1"), coalesce=True)
    outbox.put(message("p/inputs/1"))
    outbox.put(message("p/result/ac_charge", "OK"))
    first = outbox.take(4)
    assert topics(first) == [
        ("p/inputs/1", "x"), ("p/result/ac_charge", "OK"), ("p/hold/0", "1"), ("p/hold/1", "1"),
    ]
    assert (outbox.messages, outbox.state) == (0, 3)
    # A message published while state waits goes out at the next turn, even with no room.
    outbox.put(message("p/connection", "online"))
    assert topics(outbox.take(0)) == [("p/connection", "online")]
    assert topics(outbox.take(2)) == [("p/hold/2", "1"), ("p/hold/3", "1")]
    assert topics(outbox.take(-5)) == []
    assert topics(outbox.take(1)) == [("p/hold/4", "1")]


def test_a_value_published_after_its_topic_was_taken_waits_again():
    outbox = Outbox()
    outbox.put(state("p/settings", "{}"), coalesce=True)
    assert topics(outbox.take(1)) == [("p/settings", "{}")]
    outbox.put(state("p/settings", '{"a":1}'), coalesce=True)
    assert outbox.coalesced == 0
    assert topics(outbox.take(1)) == [("p/settings", '{"a":1}')]
