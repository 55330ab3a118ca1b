"""The pack loads into a real ComfyUI server: every node it exports is served by /object_info
and the log shows no import failure for it. The same check must catch a broken pack."""

from __future__ import annotations

from concept_attention_tests.server.comfy_server import check_pack_loaded, start_comfy_server


def test_pack_nodes_are_served_and_import_cleanly(comfy_server, pack_node_ids):
    import concept_attention.nodes as nodes

    declared = getattr(nodes, "NODE_IDS", None)
    if declared is not None:
        assert sorted(declared) == sorted(pack_node_ids), "nodes.NODE_IDS disagrees with get_node_list()"

    problems = check_pack_loaded(comfy_server.object_info(), comfy_server.log, pack_node_ids,
                                 comfy_server.pack_dir)
    assert not problems, "\n".join(problems) + "\n--- server log tail ---\n" + comfy_server.log_tail()


def test_smoke_check_catches_a_broken_pack(comfyui_path, tmp_path, pack_node_ids):
    def break_pack(base_dir):
        init = base_dir / "custom_nodes" / "ComfyUI-ConceptAttention" / "__init__.py"
        with open(init, "a", encoding="utf-8") as f:
            f.write('\nraise ImportError("deliberately broken by test_smoke_check_catches_a_broken_pack")\n')

    with start_comfy_server(tmp_path, comfyui_path=comfyui_path, prepare=break_pack) as server:
        problems = check_pack_loaded(server.object_info(), server.log, pack_node_ids, server.pack_dir)
        log = server.log

    assert "deliberately broken by test_smoke_check_catches_a_broken_pack" in log
    missing = [p for p in problems if "missing from /object_info" in p]
    import_failures = [p for p in problems if p.startswith("server log:")]
    assert len(missing) == len(pack_node_ids), problems
    assert any("IMPORT FAILED" in p for p in import_failures), problems
    assert any("Cannot import" in p for p in import_failures), problems
