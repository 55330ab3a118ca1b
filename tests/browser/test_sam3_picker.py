"""The SAM 3 nodes in the UI: like Saliency to Mask they offer the upstream concepts as buttons that write their
`concepts` widget, and the prompt carries what the buttons wrote."""

from __future__ import annotations

from concept_attention_examples.parts import node

from concept_attention_tests.browser import tiny_graphs
from concept_attention_tests.browser.browser_session import build_graph

CHIPS_JS = """(id) => {
  const node = app.graph.getNodeById(id);
  const root = node.widgets.find(w => w.name === 'concept_suggestions').element;
  return {
    chips: [...root.querySelectorAll('.ca-chip:not(.ca-chip-missing)')].map(c => [c.textContent, c.getAttribute('aria-pressed')]),
    value: node.widgets.find(w => w.name === 'concepts').value,
  };
}"""

CLICK_JS = """([id, concept]) => [...app.graph.getNodeById(id).widgets.find(w => w.name === 'concept_suggestions')
  .element.querySelectorAll('.ca-chip')].find(c => c.dataset.concept === concept).click()"""

SAM3_NODES = {"prompts": "ConceptAttentionSaliencyToSAM3Prompts", "initial": "ConceptAttentionSaliencyToSAM3InitialMasks"}


def test_sam3_nodes_offer_the_upstream_concepts(comfy):
    concepts = tiny_graphs.CONCEPTS
    graph = tiny_graphs.encode_graph()
    for k, (key, type_) in enumerate(SAM3_NODES.items()):
        graph["nodes"].append(node(key, type_, [1450, 440 * k], [340, 400], concepts=concepts[0]))
        graph["links"].append(("saliency", "saliency", key, "saliency"))
    ids = build_graph(comfy, graph)
    for key in SAM3_NODES:
        state = comfy.evaluate(CHIPS_JS, ids[key])
        assert state["chips"] == [[concepts[0], "true"], [concepts[1], "false"], [concepts[2], "false"]], key
        comfy.evaluate(CLICK_JS, [ids[key], concepts[2]])
        assert comfy.evaluate(CHIPS_JS, ids[key])["value"] == f"{concepts[0]}, {concepts[2]}", key
    prompt = comfy.evaluate("async () => (await app.graphToPrompt()).output")
    for key in SAM3_NODES:
        assert prompt[str(ids[key])]["inputs"]["concepts"] == f"{concepts[0]}, {concepts[2]}"
    assert comfy.extension_problems() == []
