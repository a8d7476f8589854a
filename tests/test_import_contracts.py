"""The package's layering, written as import-linter contracts in pyproject.toml, checked by `lint-imports`.

Each contract runs on its own, so that a broken one names itself and the imports that break it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
CONTRACT_IDS = re.findall(r'(?m)^id = "([^"]+)"$', CONFIG)


def lint_imports(*args: str, config: Path = ROOT / "pyproject.toml") -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is in the dev extra: pip install -e '.[dev]'")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([exe, "--no-cache", "--no-logo", *args, str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_contracts_cover_the_design():
    assert set(CONTRACT_IDS) == {"layers", "modules-independent", "no-circles", "private-files"}
    layers = re.findall(r'^    "([^"]+)",$', CONFIG.split("layers = [", 1)[1].split("]", 1)[0], re.M)
    assert layers[1] == "cli" and "registry | layers | ops" in layers and layers[-1] == "catalogue"
    assert layers.index("modules") > max(layers.index(x) for x in ("viz | export", "train | bench", "cli"))


#: Imports that break a contract on main today, each waiting for work in flight (issue 18: the CLI package moves
#: every parser out of train/, bench/ and viz/ and ends the cli -> demo -> train.cli -> cli circle; the Task
#: that owns its task ends trainer <-> tasks). A contract broken by these alone is an expected failure that
#: names them; a break not listed here fails; once they are gone the contract passes and this list is deleted.
KNOWN_BREAKS = {
    "layers": {
        "visattn.train.cli -> visattn.cli", "visattn.bench.cli -> visattn.cli", "visattn.viz.cli -> visattn.cli",
        "visattn.train.cli -> visattn.export", "visattn.train.cli -> visattn.predict",
    },
}


def breaks(contract: str, report: str) -> set[str]:
    """What broke ``contract`` in lint-imports' ``report``: layer imports, or the packages with a circle."""
    if contract == "no-circles":
        return set(re.findall(r"No cycles are allowed in (\S+?)\.\n", report))
    return {f"{a} -> {b}" for a, b in re.findall(r"^- (\S+) -> (\S+)", report, re.M)}


@pytest.mark.parametrize("contract", CONTRACT_IDS)
def test_import_contract_is_kept(contract):
    proc = lint_imports("--contract", contract)
    if proc.returncode == 0:
        return
    found = breaks(contract, proc.stdout)
    unknown = found - KNOWN_BREAKS.get(contract, set())
    assert found and not unknown, f"new breaks {sorted(unknown)}:\n" + proc.stdout[-4000:] + proc.stderr[-2000:]
    pytest.xfail(f"contract {contract!r} broken by work in flight only: {sorted(found)}")


def test_the_break_parser_reads_lint_imports_reports():
    layers = "visattn.viz is not allowed to import visattn.cli:\n\n- visattn.viz.cli -> visattn.cli (l.7, l.32)\n"
    assert breaks("layers", layers) == {"visattn.viz.cli -> visattn.cli"}
    circles = "No cycles are allowed in visattn.train.\nIt could be made acyclic by removing 1 dependency:\n"
    assert breaks("no-circles", circles) == {"visattn.train"}


def test_a_broken_layer_is_caught(tmp_path):
    """The same layers contract, with cli placed below registry (which it imports), must fail on the real package."""
    text = (ROOT / "pyproject.toml").read_text()
    broken = text.replace('    "(__main__)",\n    "cli",\n', '    "(__main__)",\n', 1)
    broken = broken.replace('    "registry | layers | ops",\n', '    "registry | layers | ops",\n    "cli",\n', 1)
    assert broken != text
    config = tmp_path / "pyproject.toml"
    config.write_text(broken)
    proc = lint_imports("--contract", "layers", config=config)
    assert proc.returncode != 0 and "is not allowed to import" in proc.stdout
