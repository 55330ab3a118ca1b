import pytest

from concept_attention.concept_patch.stream.layer_spec import parse_block_spec, parse_step_range


def parse_layer_spec(spec, num_layers):
    """The blocks chosen on a model with num_layers dual-stream blocks and no single-stream ones."""
    return parse_block_spec(spec, num_layers).layers


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("all", list(range(19))),
        ("last 10", list(range(9, 19))),  # the paper's Flux default
        ("first 3", [0, 1, 2]),
        ("9-18", list(range(9, 19))),
        ("3,7,11", [3, 7, 11]),
        ("0-3, 7, last 2", [0, 1, 2, 3, 7, 17, 18]),
        ("  LAST   2 ", [17, 18]),
        ("First3", [0, 1, 2]),
        ("5 - 6", [5, 6]),
        ("7, 3, 7, 3-4", [3, 4, 7]),  # sorted and unique
        ("All, 4", list(range(19))),
        ("18", [18]),
        ("0", [0]),
        ("4-4", [4]),
        ("1\n2;3,", [1, 2, 3]),  # newlines/semicolons separate too; trailing comma ignored
    ],
)
def test_accepted_forms(spec, expected):
    assert parse_layer_spec(spec, 19) == expected


def test_last_n_equal_to_num_layers_is_all():
    assert parse_layer_spec("last 24", 24) == list(range(24))


@pytest.mark.parametrize("spec", ["", "   ", ",", " , \n"])
def test_empty_spec(spec):
    with pytest.raises(ValueError, match="empty.*accepted forms"):
        parse_layer_spec(spec, 19)


def test_index_out_of_range_names_block_count():
    with pytest.raises(ValueError, match=r"block 19 is out of range for dual-stream blocks: this model has 19 "
                                         r"dual-stream blocks \(0\.\.18\)$"):
        parse_layer_spec("19", 19)
    with pytest.raises(ValueError, match=r"'10-30' is out of range for dual-stream blocks: this model has 19 "
                                         r"dual-stream blocks \(0\.\.18\)$"):
        parse_layer_spec("10-30", 19)


@pytest.mark.parametrize("spec", ["last 0", "first 0"])
def test_n_below_1(spec):
    with pytest.raises(ValueError, match=r"N must be 1 or more"):
        parse_layer_spec(spec, 19)


@pytest.mark.parametrize("spec", ["last 20", "first 25", "last 10"])
def test_n_above_the_block_count_takes_every_block(spec):
    # the paper's 'last 10' on a model with fewer dual-stream blocks (Flux.2 dev has 8, Klein 4B 5)
    assert parse_layer_spec(spec, 8 if spec == "last 10" else 19) == list(range(8 if spec == "last 10" else 19))


def test_reversed_range():
    with pytest.raises(ValueError, match=r"from low to high, e.g. '3-9'"):
        parse_layer_spec("9-3", 19)


@pytest.mark.parametrize("spec", ["foo", "last", "1.5", "3 4", "last -2", "middle 3", "1-2-3"])
def test_garbage_token_is_quoted_with_accepted_forms(spec):
    with pytest.raises(ValueError) as info:
        parse_layer_spec(f"0, {spec}", 19)
    message = str(info.value)
    assert repr(spec.lower()) in message
    assert "accepted forms" in message and "last N" in message


def test_negative_index_hints_last_n():
    with pytest.raises(ValueError, match="use 'last N'"):
        parse_layer_spec("-1", 19)


@pytest.mark.parametrize("num_layers", [0, -3, 2.5, True])
def test_bad_num_layers(num_layers):
    with pytest.raises(ValueError, match="at least one dual-stream block|must be a block count"):
        parse_layer_spec("all", num_layers)


def test_non_text_spec():
    with pytest.raises(ValueError, match="must be text"):
        parse_layer_spec(5, 19)


@pytest.mark.parametrize("start, end", [(0.0, 1.0), (0, 1), (0.2, 0.3), (0.999, 1.0)])
def test_step_range_ok(start, end):
    assert parse_step_range(start, end) == (float(start), float(end))


@pytest.mark.parametrize("start, end", [(0.5, 0.5), (0.6, 0.4), (-0.1, 0.5), (0.0, 1.1), (float("nan"), 1.0),
                                        (0.0, float("inf"))])
def test_step_range_errors(start, end):
    with pytest.raises(ValueError, match="step range"):
        parse_step_range(start, end)


def test_step_range_message_states_rule():
    with pytest.raises(ValueError, match=r"0 <= start < end <= 1.*start=0.6, end=0.4"):
        parse_step_range(0.6, 0.4)


# ---------------------------------------------------------------------------------------------
# single-stream blocks of hybrid models: parts that start with "single"
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "spec, double, single",
    [
        ("last 10", list(range(9, 19)), []),  # today's forms keep meaning dual-stream blocks
        ("single 30-37", [], list(range(30, 38))),
        ("single last 4", [], [34, 35, 36, 37]),
        ("last 10, single last 4", list(range(9, 19)), [34, 35, 36, 37]),
        ("Single  0, SINGLE 5-6, 3", [3], [0, 5, 6]),
        ("single first 2, single 1", [], [0, 1]),
        ("single all", [], list(range(38))),
        ("single last 50", [], list(range(38))),  # more than the model has: all of them
        ("double 3, dual 4-5, 18", [3, 4, 5, 18], []),  # 'double' / 'dual' may be written for clarity
        ("single3", [], [3]),
    ],
)
def test_block_spec_forms(spec, double, single):
    choice = parse_block_spec(spec, 19, 38)
    assert (choice.layers, choice.single_layers) == (double, single)


def test_block_spec_without_single_parts_equals_the_layer_spec():
    for spec in ("all", "last 10", "0-3, 7, last 2", "First3"):
        assert parse_block_spec(spec, 19, 38).layers == parse_layer_spec(spec, 19)
        assert parse_block_spec(spec, 19, 38).single_layers == []


def test_out_of_range_says_which_kind_and_how_many_of_each():
    with pytest.raises(ValueError, match=r"block 38 is out of range for single-stream blocks: this model has 19 "
                                         r"dual-stream blocks \(0\.\.18\) and 38 single-stream blocks \(0\.\.37\)"):
        parse_block_spec("single 38", 19, 38)
    with pytest.raises(ValueError, match=r"block 19 is out of range for dual-stream blocks: this model has 19 "
                                         r"dual-stream blocks \(0\.\.18\) and 38 single-stream blocks"):
        parse_block_spec("19, single 3", 19, 38)
    with pytest.raises(ValueError, match=r"'single 30-40' is out of range for single-stream blocks"):
        parse_block_spec("single 30-40", 19, 38)


def test_single_on_a_model_without_single_blocks():
    with pytest.raises(ValueError, match=r"'single 0': this model has no single-stream blocks \(only 24 dual-stream"):
        parse_block_spec("last 4, single 0", 24, 0)


@pytest.mark.parametrize("spec", ["single", "single ", "double"])
def test_kind_without_blocks(spec):
    with pytest.raises(ValueError, match="says which kind of block but not which blocks"):
        parse_block_spec(spec, 19, 38)


@pytest.mark.parametrize("spec", ["singles 3", "single -1", "single foo", "single last", "singular 2"])
def test_unreadable_single_parts_quote_the_accepted_forms(spec):
    with pytest.raises(ValueError) as info:
        parse_block_spec(spec, 19, 38)
    assert repr(spec) in str(info.value) and "single 30-37" in str(info.value)


def test_on_a_single_stream_model_single_parts_mean_its_blocks():
    choice = parse_block_spec("single 1, 3, single last 2", 30, 0, main_kind="single-stream")
    assert (choice.layers, choice.single_layers) == ([1, 3, 28, 29], [])
    with pytest.raises(ValueError, match=r"block 30 is out of range for single-stream blocks: this model has 30 "
                                         r"single-stream blocks \(0\.\.29\)$"):
        parse_block_spec("single 30", 30, 0, main_kind="single-stream")


def test_single_parts_are_refused_on_a_model_without_single_stream_blocks():
    with pytest.raises(ValueError, match=r"'single 3': this model has no single-stream blocks \(only 19 dual-stream "
                                         r"blocks \(0\.\.18\)\)"):
        parse_layer_spec("single 3", 19)


@pytest.mark.parametrize("counts", [(0, 38), (19, -1), (True, 3), (19, 2.0)])
def test_bad_block_counts(counts):
    with pytest.raises(ValueError):
        parse_block_spec("all", *counts)


def test_options_order_blocks_across_kinds():
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    default = SaliencyOptions(layers=(9, 18))
    assert default.stream_blocks(19) == tuple(("double_block", i) for i in range(19))
    assert default.last_block == ("double_block", 18) and default.single_layers == ()
    hybrid = SaliencyOptions(layers=(2,), single_layers=(1, 0, 1))
    assert hybrid.single_layers == (0, 1)
    assert hybrid.stream_blocks(3) == (("double_block", 0), ("double_block", 1), ("double_block", 2),
                                       ("single_block", 0), ("single_block", 1))
    assert hybrid.selected_blocks == {("double_block", 2), ("single_block", 0), ("single_block", 1)}
    # a recording through any single block covers every dual-stream block
    assert SaliencyOptions(layers=(), single_layers=(0,)).last_block_order > default.last_block_order
    with pytest.raises(ConceptAttentionError, match="no layers selected"):
        SaliencyOptions(layers=(), single_layers=())
    with pytest.raises(ConceptAttentionError, match="0 or more"):
        SaliencyOptions(layers=(1,), single_layers=(-1,))
