"""Memory of a real server over many runs (issue 24), loopback only, every loop bounded in count and time.

* The re-query cache under a small budget (Concept Saliency's `requery_cache_mb`) over many pictures: the cache
  never holds more than its budget (read by a test-only node in the server itself), the oldest pictures are
  evicted (running one again with new concepts is a full run) while the newest are re-queried, the re-queried
  maps equal a fresh run's, and the server's resident memory stays bounded.
* 50 runs of one workflow: resident memory does not grow with the number of runs.

Each seed is a picture of its own to the cache (the noise, hence the noised latent, is part of its key).
"""

from __future__ import annotations

import statistics
import time

from concept_attention_tests.server.workflows import (
    empty_latent,
    link,
    node,
    nodes_executed,
    require_ok,
    saliency_file,
    saliency_node,
    sd3_loaders,
    unique_prefix,
)

BUDGET_MB = 8
PICTURES = 16
# a 512x512 picture: 1024 tokens on the tiny SD3, a cache entry of about 3 MB, so the budget keeps two pictures
# (checked below) and an unbounded cache would hold some 50 MB, which the server's resident memory would show
SIZE = 512
RUNS = 50
DEADLINE_S = 600  # all of a test's runs together


def _prompt(concepts: str, seed: int, cache_mb: int, tag: str) -> dict:
    return {
        **sd3_loaders(concepts=concepts),
        "latent": node("EmptySD3LatentImage", width=SIZE, height=SIZE, batch_size=1),
        "saliency": saliency_node(seed=seed, layers="all", requery_cache_mb=cache_mb),
        "cache": node("ConceptAttentionTestRequeryCache", saliency=link("saliency")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"),
                          filename_prefix=unique_prefix("memory_" + tag)),
    }


def _run(server, prompt: dict):
    result = require_ok(server.run_prompt(prompt, timeout=240), server)
    from concept_attention.concept_patch.files.load import load_saliency

    maps = load_saliency(str(saliency_file(server, result, "save_maps")))
    [state] = result.outputs["cache"]["requery_cache"]
    return result, maps, state


def test_requery_cache_evicts_within_its_budget_over_many_pictures(comfy_server):
    budget = BUDGET_MB << 20
    started = time.monotonic()
    rss = []
    for seed in range(PICTURES):
        assert time.monotonic() - started < DEADLINE_S, f"{seed} pictures took over {DEADLINE_S} s"
        _, maps, state = _run(comfy_server, _prompt("dog, grass, sky", seed, BUDGET_MB, f"fill{seed}"))
        assert maps.metadata["requery"] is False  # a new picture: a full run, recorded
        assert state["budget"] == budget and state["bytes"] <= budget, state
        [entry] = state["entry_bytes"][-1:]
        assert budget // 5 < entry <= budget // 2, f"an entry of {entry} bytes does not exercise a {budget}-byte budget"
        rss.append(state["rss_mib"])
    kept = state["entries"]
    assert 2 <= kept < PICTURES, state  # evicted, yet not emptied

    # the newest picture is re-queried with new concepts, and gives exactly what a fresh run gives
    newest = PICTURES - 1
    _, requeried, _ = _run(comfy_server, _prompt("dog, collar, sky", newest, BUDGET_MB, "newest"))
    _, fresh, _ = _run(comfy_server, _prompt("dog, collar, sky", newest, 0, "newest_fresh"))
    assert requeried.metadata["requery"] is True and fresh.metadata["requery"] is False
    assert requeried.names == fresh.names and (requeried.maps == fresh.maps).all()

    # the oldest was evicted: a full run again, equal to a fresh one
    _, oldest, state = _run(comfy_server, _prompt("dog, collar, sky", 0, BUDGET_MB, "oldest"))
    _, fresh, _ = _run(comfy_server, _prompt("dog, collar, sky", 0, 0, "oldest_fresh"))
    assert oldest.metadata["requery"] is False and (oldest.maps == fresh.maps).all()
    assert state["bytes"] <= budget, state

    # resident memory after the cache filled does not keep growing with the pictures
    settled, last = statistics.median(rss[3:6]), statistics.median(rss[-3:])
    print(f"server RSS over {PICTURES} pictures (MiB): {[round(r) for r in rss]}")
    assert last - settled < 24, f"server RSS grew from {settled:.0f} MiB to {last:.0f} MiB: {rss}"


def test_resident_memory_stays_bounded_over_50_runs(comfy_server):
    """One workflow 50 times (two seeds in turn, so that ComfyUI's own cache does not skip the run)."""
    started = time.monotonic()
    rss = []
    for k in range(RUNS):
        assert time.monotonic() - started < DEADLINE_S, f"{k} runs took over {DEADLINE_S} s"
        prompt = {
            **sd3_loaders(),
            "latent": empty_latent(),
            "saliency": saliency_node(seed=k % 2, layers="all", requery_cache_mb=0),
            "mask": node("ConceptAttentionSaliencyToMask", saliency=link("saliency"), concepts="dog", method="mean",
                         threshold=0.5, grow=0, feather=0.0, invert=False),
            "mask_image": node("MaskToImage", mask=link("mask")),
            "preview": node("PreviewImage", images=link("mask_image")),
            "memory": node("ConceptAttentionTestRequeryCache", saliency=link("saliency")),
        }
        result = require_ok(comfy_server.run_prompt(prompt, timeout=240), comfy_server)
        assert "saliency" in nodes_executed(result)  # really ran
        rss.append(result.outputs["memory"]["requery_cache"][0]["rss_mib"])
    # medians of five runs, after ten runs (every lazy import and allocator pool settled) and at the end, of the
    # live memory (after gc and malloc_trim): a leak of 1 MiB a run shows as 40
    warm, last = statistics.median(rss[8:13]), statistics.median(rss[-5:])
    print(f"server RSS over {RUNS} runs (MiB): {[round(r) for r in rss]}")
    assert last - warm < 24, f"server RSS grew from {warm:.0f} MiB (runs 9-13) to {last:.0f} MiB (last 5): {rss}"
