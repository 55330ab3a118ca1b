"""Measuring what a call allocates on the CPU, for the tests that bound memory.

torch's CPU tensors are invisible to tracemalloc (torch has its own allocator), so they are
counted with torch's profiler (profile_memory): every allocation and free in time order, and the
highest running total is the call's peak. Python objects and numpy arrays (numpy reports its
buffers to tracemalloc) are counted with tracemalloc.
"""

from __future__ import annotations

import tracemalloc


def torch_cpu_peak_bytes(fn, *args, **kwargs) -> tuple[int, object]:
    """(peak bytes of torch CPU memory held at once during fn(*args, **kwargs), its result).

    Counts only what the call allocates (tensors alive before it are not counted); the result is
    freed after the measurement only if the caller drops it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn(*args, **kwargs)
    changes = []
    for event in prof.events():
        if event.name == "[memory]":  # a free (or an allocation outside any operator)
            changes.append((event.time_range.start, event.cpu_memory_usage))
        elif event.self_cpu_memory_usage:
            changes.append((event.time_range.start, event.self_cpu_memory_usage))
    changes.sort(key=lambda c: c[0])
    held = peak = 0
    for _, change in changes:
        held += change
        peak = max(peak, held)
    return peak, result


def python_peak_bytes(fn, *args, **kwargs) -> tuple[int, object]:
    """(peak bytes tracemalloc saw allocated at once during the call, its result)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(0, peak - before), result
