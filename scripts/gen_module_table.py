"""Regenerate docs/modules.md and the module table in README.md from the registry."""

from pathlib import Path

from visattn._docs import write_docs

if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    for path in write_docs(root):
        print(f"updated {path.relative_to(root)}")
