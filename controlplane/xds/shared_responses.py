"""One encoding of a push, shared by every stream it goes to.

A SotW push of a large RouteConfiguration to a thousand proxies used to be encoded a thousand times
(two full copies of megabytes each). The part of a DiscoveryResponse that is the same on every stream
(version, resources, type URL) is encoded once per (type, version, resources) and kept as one bytes
object; each stream adds only its small tail (nonce, control plane), see wire.py. A few recent
encodings are kept (at most MAX_ENCODINGS, and MAX_BYTES unless one alone is larger): the streams of
one push ask within moments of each other, and older pushes are done.
"""

from __future__ import annotations

from collections import OrderedDict

from controlplane.xds.protocol import Response
from controlplane.xds.wire import discovery_response_head

MAX_ENCODINGS = 16
MAX_BYTES = 32 * 2**20


class SharedResponses:
    def __init__(self, capacity: int = MAX_ENCODINGS, max_bytes: int = MAX_BYTES) -> None:
        self._capacity, self._max_bytes = capacity, max_bytes
        self._heads: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self.encoded = 0  # how many heads were encoded (the rest were shared)

    def head(self, response: Response) -> bytes:
        """The shared part of `response`'s encoding; the same bytes object for every stream that asks."""
        key = (response.type_url, response.version_info, response.resources)
        head = self._heads.get(key)
        if head is None:
            head = discovery_response_head(version_info=response.version_info, type_url=response.type_url,
                                           resources=[r.any_bytes for r in response.resources])
            self.encoded += 1
            self._heads[key] = head
            self._bytes += len(head)
            while len(self._heads) > 1 and (len(self._heads) > self._capacity or self._bytes > self._max_bytes):
                self._bytes -= len(self._heads.popitem(last=False)[1])
        else:
            self._heads.move_to_end(key)
        return head
