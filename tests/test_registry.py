import pytest
import torch
from torch import nn

import visattn
from visattn import registry


def test_create_list_info():
    m = visattn.create("se", 32)
    assert isinstance(m, nn.Module)
    assert "se" in visattn.list_modules()
    assert visattn.list_modules("s?") == [k for k in visattn.list_modules() if len(k) == 2 and k[0] == "s"]
    assert all(visattn.info(k).role == "plugin" for k in visattn.list_modules(role="plugin"))
    meta = visattn.info("se")
    assert meta.cls.__name__ == "SqueezeExcite" and meta.defaults["reduction"] == 16
    assert meta.paper_url == "https://arxiv.org/abs/1709.01507"


def test_unknown_key_suggests_closest():
    with pytest.raises(KeyError, match="Did you mean .*'se'"):
        visattn.create("sse", 32)
    with pytest.raises(KeyError, match="unknown module"):
        visattn.info("zzzzzz")


def test_unknown_kwarg_raises_with_hint():
    with pytest.raises(TypeError, match=r"'reductio' \(did you mean 'reduction'\?\)"):
        visattn.create("se", 32, reductio=4)


def test_unknown_role_raises():
    with pytest.raises(ValueError, match="role"):
        visattn.list_modules(role="plug")


def test_duplicate_key_raises():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("se", **_meta())(type("Other", (nn.Module,), {}))


def test_bad_metadata_raises():
    bad = _meta() | {"role": "plug-in"}
    with pytest.raises(ValueError, match="role"):
        registry.register("zz_bad_meta_test", **bad)(type("Bad", (nn.Module,), {}))
    assert "zz_bad_meta_test" not in visattn.list_modules()


def test_every_key_has_a_reference_test_file():
    from pathlib import Path

    tests = Path(__file__).parent / "modules"
    names = {p.stem for p in tests.glob("test_*.py")}
    missing = [k for k in visattn.list_modules()
               if {"test_" + visattn.info(k).cls.__module__.rsplit(".", 1)[1], "test_" + k}.isdisjoint(names)]
    assert not missing, f"modules without tests/modules/test_<file>.py: {missing}"


def test_modules_do_not_import_tools():
    """Data flows one way: modules never import the tools built on them (design.md)."""
    import re
    import sys

    pattern = re.compile(r"^\s*(from|import)\s+(visattn\.|\.\.)(train|bench|viz|cli|backbones)\b", re.M)
    for name in list(sys.modules):
        if name.startswith("visattn.modules"):
            src = sys.modules[name].__file__
            match = pattern.search(open(src).read())
            assert match is None, f"{src} imports {match.group(0).strip()}"


def _meta():
    return dict(title="t", paper="p", authors="a", venue="v", year=2020, arxiv=None, code=None, family="f",
                domain="channel", weights="conv", applied="scale", role="plugin", complexity="O(HW)", note="n")


def test_version():
    assert isinstance(visattn.__version__, str) and torch.__version__
