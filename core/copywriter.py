"""Marketing-copy studio: product description + tone + length → N variants from the chat LM.

All variants come from one `generate` call (`num_return_sequences`); a streamer that understands
batches reports every variant's text as tokens arrive and marks each one done when it finishes.
"""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Iterator

from core.chat import clean_message
from core.models import BackgroundRun, registry

TONES = ("Friendly", "Professional", "Playful", "Bold", "Luxurious", "Technical")
LENGTHS = {"Tagline": (12, "a single catchy tagline of at most 12 words"),
           "Short": (60, "two or three sentences"),
           "Long": (150, "one paragraph of about 100 words")}
MAX_VARIANTS = 6
MAX_DESCRIPTION = 600


@dataclass
class Variant:
    text: str = ""
    done: bool = False
    tokens: int = 0


def build_prompt(description: str, tone: str, length: str) -> list[dict]:
    _, shape = LENGTHS[length]
    return [
        {"role": "system", "content": "You are an award-winning copywriter. Write marketing copy only: no preamble, "
                                      "no explanations, no quotation marks, no hashtags."},
        {"role": "user", "content": f"Write {shape} of {tone.lower()} marketing copy for this product:\n{description}"},
    ]


def validate(description: str) -> tuple[str, str]:
    """(description, notice) or ValueError with what to do."""
    text, notice = clean_message(description)
    if len(text) < 10:
        raise ValueError("Describe the product in at least a few words (for example: 'A reusable water bottle "
                         "that keeps drinks cold for 24 hours').")
    if len(text) > MAX_DESCRIPTION:
        text, notice = text[:MAX_DESCRIPTION].rstrip(), (
            f"The description was cut to {MAX_DESCRIPTION} characters; the model reads only the start anyway.")
    return text, notice


class _BatchStreamer:
    """A transformers streamer for num_return_sequences > 1: queues (index, new text, done) events."""

    def __init__(self, tokenizer, n: int, eos_ids: set[int]):
        self.tokenizer, self.n, self.eos = tokenizer, n, eos_ids
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.text = [""] * n
        self.done = [False] * n
        self.events: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        for i, token in enumerate(value.reshape(-1).tolist()[: self.n]):
            if self.done[i]:
                continue
            if token in self.eos:
                self.done[i] = True
                self.events.put((i, "", True))
                continue
            self.ids[i].append(token)
            text = self.tokenizer.decode(self.ids[i], skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # wait for a multi-byte character to complete
                self.events.put((i, text[len(self.text[i]):], False))
                self.text[i] = text

    def end(self) -> None:
        for i in range(self.n):
            if not self.done[i]:
                self.done[i] = True
                self.events.put((i, "", True))
        self.events.put(None)


def generate_variants(description: str, tone: str = "Friendly", length: str = "Short", n: int = 3,
                      temperature: float = 0.9, top_p: float = 0.95, seed: int | None = None
                      ) -> Iterator[list[Variant]]:
    """Yield the list of N variants each time any of them changes (at most every 50 ms)."""
    import torch

    if tone not in TONES or length not in LENGTHS:
        raise ValueError(f"tone is one of {TONES}, length one of {tuple(LENGTHS)}")
    n = max(1, min(int(n), MAX_VARIANTS))
    bundle = registry.get("chat_lm")
    tokenizer = bundle.tokenizer
    ids = tokenizer.apply_chat_template(build_prompt(description, tone, length), add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    eos = bundle.model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    streamer = _BatchStreamer(tokenizer, n, eos_ids)

    def generate(b):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            b.model.generate(ids.to(b.device), do_sample=True, temperature=max(temperature, 0.05), top_p=top_p,
                             num_return_sequences=n, max_new_tokens=int(LENGTHS[length][0] * 1.5), repetition_penalty=1.15,
                             pad_token_id=tokenizer.pad_token_id, streamer=streamer)

    run = BackgroundRun("chat_lm", generate, unblock=streamer.end)
    variants = [Variant() for _ in range(n)]
    last = 0.0
    while True:
        event = streamer.events.get(timeout=600)
        if event is None:
            break
        i, delta, done = event
        variants[i].text += delta
        variants[i].tokens += 0 if done else 1
        variants[i].done = variants[i].done or done
        if done or time.perf_counter() - last > 0.05:
            last = time.perf_counter()
            yield [Variant(v.text.strip(), v.done, v.tokens) for v in variants]
    run.finish()
    yield [Variant(tidy(v.text, length), True, v.tokens) for v in variants]


def tidy(text: str, length: str) -> str:
    """A finished variant without quotes, a tagline as one line, and no sentence cut off by the token cap."""
    text = text.strip().strip('"“”').strip()
    if length == "Tagline":
        text = text.splitlines()[0].strip() if text else text
    if text and text[-1] not in ".!?…)\"'":
        end = max(text.rfind(p) for p in ".!?")
        text = text[: end + 1] if end > len(text) // 3 else text.rsplit(" ", 1)[0] if " " in text else text
    return text
