"""The server tier's own harness: a queued prompt comes back as success, execution error or
rejection, and test-only fixture node packs are installed."""

from __future__ import annotations


def test_run_prompt_returns_the_history_entry(comfy_server):
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 41}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    result = comfy_server.run_prompt(prompt, timeout=120)
    assert result.ok, result.describe()
    assert result.outputs["2"]["text"] == ["41"]
    assert result.history["status"]["status_str"] == "success"


def test_run_prompt_reports_execution_errors(comfy_server):
    assert "ConceptAttentionTestRaise" in comfy_server.object_info(), "fixture node pack not installed"
    prompt = {"1": {"class_type": "ConceptAttentionTestRaise", "inputs": {"message": "boom 1234"}}}
    result = comfy_server.run_prompt(prompt, timeout=120)
    assert result.status == "error"
    assert result.error["exception_message"].strip() == "boom 1234"
    assert result.error["node_type"] == "ConceptAttentionTestRaise"
    assert "boom 1234" in result.describe()


def test_run_prompt_reports_rejected_prompts(comfy_server):
    result = comfy_server.run_prompt({"1": {"class_type": "NoSuchNodeAnywhere", "inputs": {}}})
    assert result.status == "rejected"
    assert result.prompt_id is None
    assert result.error["error"]["type"] == "missing_node_type"
