"""Where things live and how a user overrides them: every setting, in one typed table.

`SETTINGS` lists each global setting once: its name, default, parser and a line of doc. A setting comes
from the environment variable LAUNCHPAD_<NAME>, then from the `[registry]` or `[app]` table of
`launchpad.toml` in the repository root (or the file named by LAUNCHPAD_CONFIG), then its default.
`SLOT_SETTINGS` are the per-slot ones (LAUNCHPAD_<SLOT>, LAUNCHPAD_<SLOT>_DEVICE, ...).
README "Configuration" is generated from both tables (`python -m core.config`; a test compares them).

    [models.chat_lm]
    source = "HuggingFaceTB/SmolLM2-360M-Instruct"   # a Hugging Face id or a local folder
    device = "cpu"                                   # cuda | mps | cpu; default: best available

    [registry]
    memory_budget_mb = 6000
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import tomllib
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"


def config_path() -> Path:
    return Path(os.environ.get("LAUNCHPAD_CONFIG", "").strip() or ROOT / "launchpad.toml")


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


# --- the settings table ---------------------------------------------------------------------------

def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ValueError("use on or off")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("use a whole number, 0 or more")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("use a number above 0")
    return value


def _names(text: str) -> tuple[str, ...]:
    """Comma-separated names; "none" for none."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    return () if names == ("none",) else names


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError("use one of: " + ", ".join(choices))
        return value
    parse.choices = choices  # type: ignore[attr-defined]
    return parse


def _device(text: str) -> str:
    value = text.strip().lower()
    if value not in ("auto", "cpu", "mps", "cuda") and not (value.startswith("cuda:") and value[5:].isdigit()):
        raise ValueError("use auto, cpu, mps, cuda or cuda:N")
    return value


def _rate(text: str) -> tuple[int, float]:
    calls, _, seconds = text.partition("/")
    return _count(calls), _positive(seconds or "60")


@dataclass(frozen=True)
class Setting:
    name: str  # LAUNCHPAD_<NAME> in the environment, <name> in launchpad.toml
    default: Any
    parse: Callable[[str], Any]
    doc: str
    table: str = "registry"  # its launchpad.toml table; "" = environment (or secrets) only

    @property
    def env(self) -> str:
        return f"LAUNCHPAD_{self.name.upper()}"


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("config", str(ROOT / "launchpad.toml"), str, "the settings file read after the environment", ""),
    Setting("store", str(ROOT / "model_store"), str, "the model store: joined, exported and trained models"),
    Setting("db", str(ROOT / "data" / "launchpad.sqlite"), str, "the store: a SQLite file, or a postgresql:// URL (tickets, feedback, votes, runs)",
            "app"),
    Setting("device", "auto", _device, "every slot's device: auto, cpu, mps, cuda, cuda:N"),
    Setting("memory_budget_mb", 4096.0, _positive, "resident weights above this evict the least recently used slot"),
    Setting("batching", True, _flag, "coalesce concurrent small requests into one model call (on/off)"),
    Setting("torch_threads", 0, _count, "torch's CPU threads (0: one per core, at most 8)"),
    Setting("llama_cpp", "process", _one_of("process", "inline"),
            "llama.cpp in a child process, or inside the app's process"),
    Setting("llm_threads", 0, _count, "llama.cpp's CPU threads (0: cores-1 to decode on up to 4 cores, all for prompts)"),
    Setting("llm_parallel", 4, _count, "sequences llama.cpp decodes at once"),
    Setting("llm_context", 2048, _count, "llama.cpp's context per sequence (tokens)"),
    Setting("llm_timeout_s", 60.0, _positive, "how long to wait for an LLM server (seconds)"),
    Setting("llm_verbose", False, _flag, "llama.cpp's own log lines (on/off)"),
    Setting("llm_api_key", "", str, "the key `python -m core.llm serve` asks clients for", ""),
    Setting("max_new_tokens", 256, _count, "the most tokens one chat answer may have (no slider goes higher)"),
    Setting("sentiment_mode", "finetune", _one_of("finetune", "frozen"),
            "fine-tune the sentiment encoder, or fit its head on frozen features (seconds)"),
    Setting("sentiment_second_opinion", True, _flag,
            "one text on the Sentiment page and API is also read by a language model (the sentiment_judge slot), "
            "its reading mixed with the classifier's (on/off)"),
    Setting("sentiment_train_limit", 0, _count, "train sentiment on this many texts, a third per label (0: 16,500)"),
    Setting("digits_runtime", "onnx", _one_of("onnx", "int8", "torch"), "what the digits slot serves on CPU"),
    Setting("embedder_runtime", "auto", _one_of("auto", "int8", "torch"),
            "what the embedder serves: auto (int8 ONNX Runtime on CPU, torch on a GPU), int8 or torch"),
    Setting("sentiment_runtime", "auto", _one_of("auto", "int8", "torch"),
            "what the fine-tuned sentiment model serves: auto (int8 ONNX Runtime on CPU, torch on a GPU), int8 or torch"),
    Setting("rate_limit", (30, 60.0), _rate, "heavy model calls per visitor: calls/seconds", "app"),
    Setting("server_rate_limit", (300, 60.0), _rate,
            "heavy model calls of all visitors and API clients together: calls/seconds", "app"),
    Setting("api_keys", "", str, "HTTP API keys: name:sha256:<hex>,... (also [api.keys] in secrets.toml)", ""),
    Setting("preload", ("sentiment_quick", "recommender", "credit_risk", "sentiment"), _names,
            "slots loaded when the server starts, in this order, those our code trains trained first (none: none)",
            "app"),
    Setting("api_ready_slots", "", str, "slots /readyz waits for (comma-separated); loaded when the server starts",
            "app"),
    Setting("api_max_body_mb", 20.0, _positive, "the largest HTTP API request body (MB); larger gets 413", "app"),
    Setting("api_key", "", str, "clients, not the server: the key the pages' API examples send", ""),
    Setting("password", "", str, "one shared sign-in password (or a pbkdf2 hash)", ""),
    Setting("users", "", str, "sign-in users: name:password-or-hash,name:...", ""),
    Setting("operators", (), _names, "signed-in users who also get Operations, tickets, model loading, retraining and "
            "overwriting saved classes (names; * for everyone; also [auth] operators in secrets.toml)", "app"),
    Setting("max_upload_files", 20, _count, "files in one upload (image classifier; 0: no limit)", "app"),
    Setting("max_upload_megapixels", 120, _count, "pixels in one upload, all its images together (MP; 0: no limit)",
            "app"),
    Setting("max_csv_columns", 1000, _count, "columns an uploaded CSV may have (0: no limit)", "app"),
    Setting("recommender_max_cells", 25_000_000, _count,
            "users × items an uploaded recommender data set may have (0: no limit)", "app"),
    Setting("sentiment_rows_per_call", 2000, _count,
            "rows scored in one sentiment call; larger uploads are queued in chunks of this size (0: one call)", "app"),
    Setting("chat_max_faq_entries", 1000, _count, "entries an uploaded chatbot FAQ may have (0: no limit)", "app"),
    Setting("skip_browser", False, _flag, "tests: skip the headless-Chromium tests", ""),
]}


def over_budget(name: str, amount: int, what: str) -> str:
    """"" when `amount` is within the budget setting `name` (0: no limit); else a message naming the limit and
    the setting that raises it, for a refusal made before the work starts."""
    limit = setting(name)
    if not limit or amount <= limit:
        return ""
    spec = SETTINGS[name]
    return (f"{what}: {amount:,}, over this server's limit of {limit:,}. Use fewer, or ask whoever runs it to "
            f"raise {spec.env} (or `{name}` under [{spec.table}] in launchpad.toml).")

SLOT_SETTINGS: dict[str, str] = {  # per slot: LAUNCHPAD_<SLOT>[_<KEY>], or [models.<slot>] <key>
    "source": "a Hugging Face id, a local folder or file; chat slots also a packaged model by name "
              "(smollm2-135m, qwen2.5-0.5b, qwen2.5-1.5b), a .gguf file or an OpenAI-compatible server's URL",
    "device": "this slot's device: auto, cpu, mps, cuda, cuda:N",
    "model": "chat slots on a server: the model it serves (default: the first it lists)",
    "api_key": "chat slots on a server: its API key (environment or .streamlit/secrets.toml only; never shown)",
}


def setting(name: str) -> Any:
    """A global setting, parsed: env LAUNCHPAD_<NAME>, then `[registry]`/`[app]` in launchpad.toml, then
    its default. A value that does not parse raises ValueError naming the setting and what it takes."""
    spec = SETTINGS[name]
    raw = os.environ.get(spec.env, "").strip()
    where = spec.env
    if not raw and spec.table:
        cfg = load_config()
        for table in ("registry", "app"):
            if name in cfg.get(table, {}):
                raw, where = str(cfg[table][name]).strip(), f"[{table}] {name} in {config_path()}"
                break
    if not raw:
        return spec.default
    try:
        return spec.parse(raw)
    except ValueError as exc:
        raise ValueError(f"{where} = {raw!r} is not valid: {exc} ({spec.doc})") from None


def settings_markdown() -> str:
    """README's configuration table, made from SETTINGS and SLOT_SETTINGS."""
    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, tuple):
            return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "(none)"
        if isinstance(value, str) and value.startswith(str(ROOT)):
            return value.removeprefix(str(ROOT) + os.sep)
        return f"{value:g}" if isinstance(value, float) else str(value) if value != "" else "(none)"

    lines = ["| environment variable | launchpad.toml | default | what it does |", "|---|---|---|---|"]
    for key, doc in SLOT_SETTINGS.items():
        env = "LAUNCHPAD_<SLOT>" + ("" if key == "source" else f"_{key.upper()}")
        toml = "secrets.toml `[models.<slot>]`" if key == "api_key" else "`[models.<slot>]`"
        lines.append(f"| `{env}` | {toml} `{key}` | {'offline default' if key == 'source' else '(none)'} | {doc} |")
    for spec in SETTINGS.values():
        toml = f"`[{spec.table}]` `{spec.name}`" if spec.table else "environment only"
        lines.append(f"| `{spec.env}` | {toml} | {shown(spec.default)} | {spec.doc} |")
    return "\n".join(lines)


def hf_kwargs() -> dict:
    """Keyword arguments for transformers' from_pretrained: no hub requests when HF_HUB_OFFLINE=1."""
    return {"local_files_only": True} if os.environ.get("HF_HUB_OFFLINE") == "1" else {}


def store_dir() -> Path:
    """The git-ignored model store: converted and trained weights live here."""
    path = Path(setting("store"))
    path.mkdir(parents=True, exist_ok=True)
    return path


STALE_TMP_S = 6 * 3600  # a half-written folder this old belongs to no running training (several may share a store)


@contextmanager
def replacing_folder(target: Path, name: str):
    """Yields an empty temporary folder beside `target` to write into; when the block finishes, it takes
    target's place in one rename, so a crash never leaves a half-written model (a failed block leaves
    target as it was). Half-written folders that a killed process left behind are removed once stale."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for left in [*target.parent.glob(f".tmp-{name}-*"), *target.parent.glob(f".old-{name}-*")]:
        if time.time() - left.stat().st_mtime > STALE_TMP_S:  # left by a process killed mid-write
            shutil.rmtree(left, ignore_errors=True)
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


if __name__ == "__main__":  # python -m core.config: the table README "Configuration" shows
    sys.stdout.write(settings_markdown() + "\n")
