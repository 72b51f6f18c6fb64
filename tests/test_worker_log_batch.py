"""Log lines that arrive together leave together, in order, and no frame can exceed the limit."""

from __future__ import annotations

import asyncio

from sleap_rtc_plugin.protocol.base import MAX_FRAME_BYTES
from sleap_rtc_plugin.protocol.peer import PEER, Log
from sleap_rtc_plugin.worker.log_batch import MAX_BATCH_CHARS, LogBatcher


async def test_lines_added_in_one_turn_of_the_loop_leave_as_one_frame():
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    batcher = LogBatcher(send)
    flushes = [asyncio.ensure_future(batcher.flush_soon()) for i in range(600) if batcher.add(f"line {i}")]
    assert len(flushes) == 1
    await asyncio.gather(*flushes)
    assert sent == ["\n".join(f"line {i}" for i in range(600))]
    # The next line starts a new batch.
    assert batcher.add("after")
    await batcher.flush()
    assert sent[-1] == "after"


def test_batches_are_cut_below_the_frame_limit_even_for_hostile_text():
    batcher = LogBatcher(None)  # type: ignore[arg-type]
    astral = "\U0001F600" * 3000  # each escapes to 12 ASCII characters in JSON
    for _ in range(40):
        batcher.add(astral)
    batcher.add("x" * (MAX_BATCH_CHARS * 3))
    texts = batcher.take()
    assert len(texts) > 1
    joined = [line for text in texts for line in text.split("\n")]
    assert joined[:40] == [astral] * 40
    assert joined[40].startswith("x" * 100) and joined[40].endswith(f"({MAX_BATCH_CHARS * 2 + 64} more characters)")
    for text in texts:
        assert len(text) <= MAX_BATCH_CHARS
        frame = Log(job_id="j1", line=text).encode()
        assert len(frame.encode()) <= MAX_FRAME_BYTES
        assert PEER.decode(frame) == Log(job_id="j1", line=text)


def test_take_empties_and_rearms():
    batcher = LogBatcher(None)  # type: ignore[arg-type]
    assert batcher.add("a") and not batcher.add("b")
    assert batcher.take() == ["a\nb"]
    assert batcher.take() == []
    assert batcher.add("c")
