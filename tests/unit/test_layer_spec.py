import pytest

from concept_attention.concept_patch.layer_spec import parse_layer_spec, parse_step_range


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
    with pytest.raises(ValueError, match=r"block 19 is out of range: this model has 19 blocks, valid indices are 0\.\.18"):
        parse_layer_spec("19", 19)
    with pytest.raises(ValueError, match=r"'10-30' is out of range: this model has 19 blocks, valid indices are 0\.\.18"):
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
    with pytest.raises(ValueError, match="at least one block"):
        parse_layer_spec("all", num_layers)


def test_non_text_spec():
    with pytest.raises(ValueError, match="must be text"):
        parse_layer_spec(5, 19)


@pytest.mark.parametrize("start, end", [(0.0, 1.0), (0, 1), (0.2, 0.3), (0.999, 1.0)])
def test_step_range_ok(start, end):
    assert parse_step_range(start, end) == (float(start), float(end))


@pytest.mark.parametrize("start, end", [(0.5, 0.5), (0.6, 0.4), (-0.1, 0.5), (0.0, 1.1), (float("nan"), 1.0), (0.0, float("inf"))])
def test_step_range_errors(start, end):
    with pytest.raises(ValueError, match="step range"):
        parse_step_range(start, end)


def test_step_range_message_states_rule():
    with pytest.raises(ValueError, match=r"0 <= start < end <= 1.*start=0.6, end=0.4"):
        parse_step_range(0.6, 0.4)
