"""README.rst's two set-up commands stay true: CI runs the same test command the README shows."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _literal_commands(text: str) -> list[str]:
    """Indented lines right after a paragraph ending in '::' (the commands a newcomer copies)."""
    lines = text.splitlines()
    commands = []
    for i, line in enumerate(lines):
        if line.rstrip().endswith("::") and i + 2 < len(lines) and lines[i + 2].startswith("    "):
            commands.append(lines[i + 2].strip())
    return commands


def test_readme_quick_start_has_the_two_commands_ci_runs() -> None:
    """The Quick start shows a run command and a test command; .ci/run ends with that test command."""
    readme = (ROOT / "README.rst").read_text()
    quick = readme.split("Quick start", 1)[1].split("Running it", 1)[0]
    run_cmd, test_cmd = _literal_commands(quick)
    assert run_cmd.endswith("twistd -n was") and "pip install ." in run_cmd
    assert "pytest" in test_cmd
    ci_lines = [
        line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert ci_lines[-1] == test_cmd
