"""What waits to be handed to paho: messages in order, retained state coalesced by topic.

Pure (no reactor, no paho): ``MqttService`` puts every message here and, a few
milliseconds later, takes a batch out for paho. Two kinds wait apart:

- *messages* (inputs, command results, ``status``, ``connection``): each one
  matters, in the order it was published; they are all taken at every turn,
  ahead of any state, so start-up state never delays or displaces them;
- *state* (``hold/<register>``, ``settings``): retained values of which only
  the latest counts. A new value replaces one still waiting for its topic, in
  its place, so while the way to the broker is behind, what waits is bounded
  by the number of topics, not by time. State is taken only as far as the
  room the caller gives (what the broker has not yet drained).

Each topic is one kind or the other, so the order per topic is the order of
publishing.
"""

from __future__ import annotations

import collections

import attrs


@attrs.frozen
class Outgoing:
    """One message for the broker, as ``Client.publish`` takes it."""

    topic: str
    payload: str | bytes
    qos: int = 0
    retain: bool = False


class Outbox:
    """Messages in order and state by topic, waiting for ``take(room)``."""

    def __init__(self):
        self._messages: collections.deque[Outgoing] = collections.deque()
        # An OrderedDict: popping its oldest entry is O(1); a dict's first key
        # is found by skipping the holes earlier pops left.
        self._state: collections.OrderedDict[str, Outgoing] = collections.OrderedDict()
        self.coalesced = 0  # state values replaced before they were sent, since the start

    def put(self, message: Outgoing, *, coalesce: bool = False) -> None:
        """Add ``message``; with ``coalesce``, in place of a value still waiting for its topic."""
        if not coalesce:
            self._messages.append(message)
            return
        if message.topic in self._state:
            self.coalesced += 1
        self._state[message.topic] = message

    def take(self, room: int) -> list[Outgoing]:
        """Every message waiting, then as much state as ``room`` leaves after them, oldest first."""
        batch = list(self._messages)
        self._messages.clear()
        state = self._state
        for _ in range(min(room - len(batch), len(state))):
            batch.append(state.popitem(last=False)[1])
        return batch

    @property
    def messages(self) -> int:
        """Messages waiting (never coalesced)."""
        return len(self._messages)

    @property
    def state(self) -> int:
        """State values waiting, one per topic at most."""
        return len(self._state)

    def __len__(self) -> int:
        return len(self._messages) + len(self._state)
