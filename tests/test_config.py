"""core.config: one typed table of settings, the README generated from it, and nothing reading around it."""
import ast
import re
from pathlib import Path

import pytest

from core import config

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_configuration_table_is_the_settings_table():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings table -->\n(.*?)\n<!-- end settings table -->", readme, re.S)
    assert block, "README has no generated settings table"
    assert block.group(1) == config.settings_markdown(), "README is out of date: paste `python -m core.config`"


def test_every_launchpad_variable_the_code_mentions_is_in_the_table():
    known = {s.env for s in config.SETTINGS.values()}
    slots = {"CHAT_LM", "CHAT_LM_B", "EMBEDDER", "IMAGE_CLASSIFIER", "SENTIMENT", "SENTIMENT_JUDGE", "CREDIT_RISK", "RECOMMENDER", "DIGITS"}
    per_slot = {f"LAUNCHPAD_{s}" + ("" if k == "source" else f"_{k.upper()}") for s in slots for k in config.SLOT_SETTINGS}
    files = [*(ROOT / "core").glob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py", ROOT / "README.md"]
    mentioned = {m for f in files for m in re.findall(r"LAUNCHPAD_[A-Z0-9_]*[A-Z0-9]", f.read_text())}
    unknown = mentioned - known - per_slot - {"LAUNCHPAD_A", "LAUNCHPAD_A_DEVICE"}
    assert not unknown, f"not in core.config.SETTINGS: {sorted(unknown)}"


def environment_reads(path: Path) -> list[str]:
    """The LAUNCHPAD_ names a file reads from os.environ / os.getenv in code (not in strings it shows)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(node, ast.Call) and node.args:
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr in ("get", "getenv", "pop", "setdefault")
                    and ast.unparse(f.value) in ("os.environ", "os")):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        if key is not None and "LAUNCHPAD_" in ast.unparse(key):
            found.append(ast.unparse(key))
    return found


def test_only_core_config_reads_launchpad_settings_from_the_environment():
    for path in [*(ROOT / "core").glob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py"]:
        if path.name != "config.py":
            assert not environment_reads(path), f"{path.name} reads {environment_reads(path)} around core.config"
    assert environment_reads(ROOT / "core" / "config.py")  # the check sees a read where there is one


def test_settings_come_typed_from_env_then_file_then_default(monkeypatch, tmp_path):
    cfg = tmp_path / "launchpad.toml"
    cfg.write_text('[registry]\nllm_parallel = 8\nbatching = "off"\n[app]\nrate_limit = "5/10"\n')
    monkeypatch.setenv("LAUNCHPAD_CONFIG", str(cfg))
    monkeypatch.delenv("LAUNCHPAD_LLM_PARALLEL", raising=False)
    assert config.setting("llm_parallel") == 8 and config.setting("batching") is False
    assert config.setting("rate_limit") == (5, 10.0)
    monkeypatch.setenv("LAUNCHPAD_LLM_PARALLEL", "2")
    assert config.setting("llm_parallel") == 2  # the environment wins
    assert config.setting("memory_budget_mb") == 4096.0  # neither: the default


@pytest.mark.parametrize("name, value, says", [
    ("llm_parallel", "four", "LAUNCHPAD_LLM_PARALLEL"), ("batching", "maybe", "on or off"),
    ("device", "tpu", "cuda:N"), ("sentiment_mode", "fast", "one of: finetune, frozen"),
    ("memory_budget_mb", "-5", "above 0")])
def test_a_value_that_does_not_parse_says_which_setting_and_what_it_takes(monkeypatch, name, value, says):
    monkeypatch.setenv(f"LAUNCHPAD_{name.upper()}", value)
    with pytest.raises(ValueError, match=re.escape(says)):
        config.setting(name)
