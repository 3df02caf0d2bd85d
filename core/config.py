"""Where things live and how a user overrides them.

Every setting can come from an environment variable or from `launchpad.toml` in the repository
root (or the file named by LAUNCHPAD_CONFIG). Environment variables win. See README "Configuration".

    [models.chat_lm]
    source = "HuggingFaceTB/SmolLM2-360M-Instruct"   # a Hugging Face id or a local folder
    device = "cpu"                                   # cuda | mps | cpu; default: best available

    [registry]
    memory_budget_mb = 6000
"""
from __future__ import annotations

import os
import shutil
import tomllib
import uuid
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"


def config_path() -> Path:
    return Path(os.environ.get("LAUNCHPAD_CONFIG", ROOT / "launchpad.toml"))


@lru_cache(maxsize=8)
def _read_toml(path: str, mtime: float) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def load_config() -> dict:
    """The parsed config file, or {} when there is none. A broken file raises a clear error."""
    path = config_path()
    if not path.is_file():
        return {}
    try:
        return _read_toml(str(path), path.stat().st_mtime)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}. Fix or remove the file.") from e


def slot_setting(slot: str, key: str) -> str | None:
    """A per-slot setting: env LAUNCHPAD_<SLOT>_<KEY> (source has no suffix), then the config file."""
    env = f"LAUNCHPAD_{slot.upper()}" + ("" if key == "source" else f"_{key.upper()}")
    if os.environ.get(env, "").strip():
        return os.environ[env].strip()
    value = load_config().get("models", {}).get(slot, {}).get(key)
    return str(value).strip() if value not in (None, "") else None


def slot_secret(slot: str, key: str) -> str | None:
    """A per-slot secret (an API key): env LAUNCHPAD_<SLOT>_<KEY>, then `[models.<slot>]` in the app's
    `.streamlit/secrets.toml`; never launchpad.toml, which may be committed. Never shown on a page."""
    env = os.environ.get(f"LAUNCHPAD_{slot.upper()}_{key.upper()}", "").strip()
    if env:
        return env
    path = ROOT / ".streamlit" / "secrets.toml"
    if not path.is_file():
        return None
    try:
        value = _read_toml(str(path), path.stat().st_mtime).get("models", {}).get(slot, {}).get(key)
    except tomllib.TOMLDecodeError:
        return None
    return str(value).strip() if value else None


def setting(name: str, default: str | None = None) -> str | None:
    """A global setting: env LAUNCHPAD_<NAME>, then `[registry]`/`[app]` tables, then default."""
    env = os.environ.get(f"LAUNCHPAD_{name.upper()}", "").strip()
    if env:
        return env
    cfg = load_config()
    for table in ("registry", "app"):
        if name.lower() in cfg.get(table, {}):
            return str(cfg[table][name.lower()])
    return default


def hf_kwargs() -> dict:
    """Keyword arguments for transformers' from_pretrained: no hub requests when HF_HUB_OFFLINE=1."""
    return {"local_files_only": True} if os.environ.get("HF_HUB_OFFLINE") == "1" else {}


def store_dir() -> Path:
    """The git-ignored model store: converted and trained weights live here."""
    path = Path(setting("store", str(ROOT / "model_store")))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def replacing_folder(target: Path, name: str):
    """Yields an empty temporary folder beside `target` to write into; when the block finishes, it takes
    target's place in one rename, so a crash never leaves a half-written model (a failed block leaves
    target as it was)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".old-{name}-{uuid.uuid4().hex}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (some drag in heavy deps)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])
