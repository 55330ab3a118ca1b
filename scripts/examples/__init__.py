"""The example workflows of example_workflows/: their graphs (specs.py), the pieces those are built of
(parts.py) and the files and notes they name (notes.py). scripts/make_examples.py writes them; the
browser tier (tests/browser) loads and runs every one."""
