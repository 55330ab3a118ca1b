"""Test-only custom nodes, installed next to the pack in the server tier's ComfyUI.

Every folder (or .py file) in tests/server/fixture_nodes/ is copied into the session server's
custom_nodes/ (see the `comfy_server_extra_custom_nodes` fixture). Node ids start with
"ConceptAttentionTest" so they never collide with the pack's own.
"""


class ConceptAttentionTestRaise:
    """An output node that fails on purpose: exercises the execution_error path."""

    CATEGORY = "testing"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"message": ("STRING", {"default": "failure requested by the test"})}}

    def run(self, message):
        raise RuntimeError(message)


NODE_CLASS_MAPPINGS = {"ConceptAttentionTestRaise": ConceptAttentionTestRaise}
NODE_DISPLAY_NAME_MAPPINGS = {"ConceptAttentionTestRaise": "Raise (ConceptAttention tests)"}
