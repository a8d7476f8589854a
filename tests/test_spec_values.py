"""The module grammar never builds something other than what was written: no truncated fractions, no booleans
taken for numbers, no arguments dropped after a pattern."""

import json

import pytest

import visattn
from visattn.cli import main
from visattn.spec import ModuleSpec, SpecError, parse_module, parse_modules


def _params(key, channels, **kwargs):
    return sum(p.numel() for p in visattn.create(key, channels, **kwargs).parameters())


@pytest.mark.parametrize(("text", "message"), [
    # 64 // 2.5 = 25 hidden channels: nobody asked for that width, so a fraction is refused, not truncated
    ("se:reduction=2.5", "reduction takes a whole number \\(default 16\\), got float 2.5"),
    ("se:reduction=8.0", "reduction takes a whole number"),
    ("sge:groups=4.5", "groups takes a whole number"),
    # True is the int 1 to Python: reduction=True would build a full-width SE without a word
    ("se:reduction=True", "reduction takes a number \\(default 16\\), got bool True"),
    ("sge:groups=False", "groups takes a number"),
    ("simam:e_lambda=True", "e_lambda takes a number"),
])
def test_a_value_of_the_wrong_number_kind_is_refused(text, message):
    with pytest.raises(SpecError, match=message):
        parse_module(text)


def test_numbers_of_the_right_kind_are_kept():
    assert parse_module("se:reduction=4").kwargs == (("reduction", 4),)
    assert parse_module("simam:e_lambda=0.001").kwargs == (("e_lambda", 0.001),)
    assert parse_module("simam:e_lambda=1").kwargs == (("e_lambda", 1),)  # a whole number where a float goes


def test_a_real_valued_argument_takes_a_fraction():
    # ECA's gamma and b are real numbers (paper eq. 12): their defaults are written 2.0 and 1.0 so that the
    # whole-number rule, which goes by the default's type, does not refuse eca:gamma=1.5
    assert parse_module("eca:gamma=1.5:b=0.5").kwargs == (("gamma", 1.5), ("b", 0.5))


def test_float_annotated_argument_with_a_whole_default_takes_a_fraction():
    # ECA's gamma is annotated float with the default 2: a fraction is its own value, not a truncated count
    assert parse_module("eca:gamma=1.5").kwargs == (("gamma", 1.5),)
    assert parse_module("eca:gamma=1.5:b=0.5").kwargs == (("gamma", 1.5), ("b", 0.5))
    assert parse_module("cbam:no_spatial=True").kwargs == (("no_spatial", True),)


def test_a_patterns_arguments_go_to_every_key_it_matches():
    specs = parse_modules("c[bo]*:reduction=8", patterns=True)
    assert specs == [ModuleSpec("cbam", (("reduction", 8),)), ModuleSpec("coord", (("reduction", 8),))]
    assert visattn.list_modules("c[bo]*") == ["cbam", "coord"]
    mixed = parse_modules(["cb*:reduction=4", "se:reduction=2"], patterns=True)
    assert [s.text for s in mixed] == ["cbam:reduction=4", "se:reduction=2"]
    # a key the pattern matches that lacks the argument is named, not skipped
    with pytest.raises(SpecError, match="cam has no argument 'reduction'"):
        parse_modules("c*:reduction=8", patterns=True)


def test_bench_builds_pattern_matches_with_the_patterns_arguments(tmp_path):
    out = tmp_path / "b.json"
    argv = ["bench", "c[bo]*:reduction=4", "--channels", "64", "--size", "8", "--batch", "1", "--repeat", "1",
            "--warmup", "0", "--baseline", "none", "--no-memory", "-q", "--json", str(out)]
    assert main(argv) == 0
    rows = {r["key"]: r for r in json.loads(out.read_text())["results"]}
    assert list(rows) == ["cbam:reduction=4", "coord:reduction=4"]
    assert rows["cbam:reduction=4"]["params"] == _params("cbam", 64, reduction=4) != _params("cbam", 64)
    assert rows["coord:reduction=4"]["params"] == _params("coord", 64, reduction=4) != _params("coord", 64)


def test_cli_says_the_wrong_kind_in_one_line(capsys):
    assert main(["info", "se:reduction=2.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and "reduction takes a whole number" in err[0]
