"""Progress of an encode, counted in blocks: samples x the blocks the concept stream runs through."""

from __future__ import annotations


class BlockProgress:
    """Reports (done, total) to `report` as an encode's forwards pass their blocks: total = samples x blocks.

    block_done() is the session's on_block (called after each block of a forward); sample_done(k) puts the count at
    k whole samples, so a forward that stopped early or a re-query (which reports per sample) stays exact."""

    def __init__(self, report, samples: int, blocks: int):
        self.report = report
        self.blocks = max(1, int(blocks))
        self.total = max(1, int(samples)) * self.blocks
        self.done = 0

    def block_done(self) -> None:
        if self.done < self.total:
            self.done += 1
            self.report(self.done, self.total)

    def sample_done(self, samples_done: int, _samples: int | None = None) -> None:
        done = min(self.total, samples_done * self.blocks)
        if done != self.done:
            self.done = done
            self.report(self.done, self.total)
