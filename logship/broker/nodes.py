"""A cluster's nodes in turn: which to try next, when a full round has failed, and failovers."""
from __future__ import annotations

import time

from ..config.broker import mask

# A connection that consumed at least this long was a good one: when it is lost, a new round
# of nodes begins with no backoff. A node that drops us sooner (it accepts, then closes) counts
# towards the round, so nodes that all do that are retried at the capped backoff, not in a busy loop.
STABLE_SECONDS = 10.0
FIRST_BACKOFF = 0.5  # seconds after the first full round that failed; doubled each round up to the cap


class Nodes:
    """The broker's URLs in order; `failed` moves on to the next, `connected` notes where we are."""

    def __init__(self, urls: tuple[str, ...], cap: float) -> None:
        self.urls, self.cap = urls, cap  # cap: the longest backoff (broker.reconnect_max)
        self.index = 0            # the node to try next, or the one in use
        self.in_use: int | None = None  # the node consumed from, None while not connected
        self.last: int | None = None    # the node consumed from most recently
        self.failovers = 0        # times consuming resumed on another node than the last one
        self._failed = 0          # failed tries since the last good connection
        self._since = 0.0         # when the connection in use began consuming (monotonic)
        self._delay = FIRST_BACKOFF

    @property
    def url(self) -> str:
        """The URL of the node to try next (or in use)."""
        return self.urls[self.index]

    def display(self, index: int | None = None) -> str:
        """A node's URL, password masked; the current one by default."""
        return mask(self.urls[self.index if index is None else index])

    def connected(self) -> bool:
        """Consuming from the current node; True when that is a failover from another node."""
        failover = self.last is not None and self.last != self.index
        self.failovers += failover
        self.in_use = self.last = self.index
        self._since = time.monotonic()
        return failover

    def failed(self) -> float:
        """The current node failed or was lost: move on to the next; the seconds to wait first.

        0 within a round: the next node is tried at once. After a full round of failures, the
        backoff, doubled each round up to the cap, as a single node's was.
        """
        if self.in_use is not None and time.monotonic() - self._since >= STABLE_SECONDS:
            self._failed, self._delay = 0, FIRST_BACKOFF  # a new outage, not the old one going on
        self.in_use = None
        self._failed += 1
        self.index = (self.index + 1) % len(self.urls)
        if self._failed % len(self.urls):
            return 0.0
        delay, self._delay = self._delay, min(self._delay * 2, self.cap)
        return delay

    def retarget(self, urls: tuple[str, ...]) -> None:
        """New URLs from a reload: start again at the first."""
        if urls != self.urls:
            self.urls, self.index, self.in_use, self.last = urls, 0, None, None
            self._failed, self._delay = 0, FIRST_BACKOFF
