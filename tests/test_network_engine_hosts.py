"""Link engines in host processes: same blocks as in-process, clear errors, clean exits."""

from __future__ import annotations

import time

import pytest

from qkdnet.link import KeyBlockPair
from qkdnet.network import parse_scenario
from qkdnet.network.engine_hosts import EngineHost, EngineHosts
from qkdnet.network.link_worker import LinkEngineBlocks
from square_scenario import SQUARE_SCENARIO


def test_a_hosted_engine_makes_the_same_blocks_as_one_in_process() -> None:
    link = parse_scenario(SQUARE_SCENARIO).link("hosp--t1")
    hosts = EngineHosts(n_links=2, processes=2)
    try:
        remote = hosts.engine(link, seed=11, block_pulses=10**7)
        local = LinkEngineBlocks(link, seed=11, block_pulses=10**7)
        for _ in range(2):
            a, b = remote.next_block(0.0), local.next_block(0.0)
            assert isinstance(a, KeyBlockPair) and isinstance(b, KeyBlockPair)
            assert (a.bits, a.alice_key, a.bob_key) == (b.bits, b.alice_key, b.bob_key)
            assert remote.qber == local.qber > 0.0
        assert remote.block_device_s == local.block_device_s
    finally:
        assert hosts.close() == [0, 0]


def test_a_failing_request_is_reported_and_the_host_keeps_serving() -> None:
    host = EngineHost("test-host")
    try:
        with pytest.raises(RuntimeError, match="KeyError"):
            host.call("next", "no-such-link", 0.0)
        with pytest.raises(RuntimeError, match="unknown request"):
            host.call("bogus")
    finally:
        assert host.close() == 0


def test_a_host_exits_when_the_runtime_goes_away() -> None:
    host = EngineHost("orphan")
    host._conn.close()  # what the runtime process dying does to the host's socket
    deadline = time.monotonic() + 30
    while host.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.process.poll() == 0
