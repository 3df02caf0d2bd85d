"""Marketing-copy studio: product description + tone + length → N variants from the chat LM.

The variants are generated at the same time (core.llm.variants: parallel sequences in llama.cpp), each
with its own seed, and every variant's text is reported as it arrives.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from core import llm
from core.chat import clean_message

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


def generate_variants(description: str, tone: str = "Friendly", length: str = "Short", n: int = 3,
                      temperature: float = 0.9, top_p: float = 0.95, seed: int | None = None,
                      slot: str = "chat_lm") -> Iterator[list[Variant]]:
    """Yield the list of N variants each time any of them changes (at most every 50 ms). The N generations
    run at the same time: llama.cpp decodes them as parallel sequences of one batch."""
    if tone not in TONES or length not in LENGTHS:
        raise ValueError(f"tone is one of {TONES}, length one of {tuple(LENGTHS)}")
    n = max(1, min(int(n), MAX_VARIANTS))
    sampling = llm.Sampling(max_tokens=int(LENGTHS[length][0] * 1.5), temperature=max(temperature, 0.05),
                            top_p=top_p, repeat_penalty=1.15, seed=seed)
    variants = [Variant() for _ in range(n)]
    last = 0.0
    for i, delta, done in llm.variants(slot, build_prompt(description, tone, length), n, sampling):
        variants[i].text += delta
        variants[i].tokens += 0 if done else 1
        variants[i].done = variants[i].done or done
        if done or time.perf_counter() - last > 0.05:
            last = time.perf_counter()
            yield [Variant(v.text.strip(), v.done, v.tokens) for v in variants]
    yield [Variant(tidy(v.text, length), True, v.tokens) for v in variants]


def tidy(text: str, length: str) -> str:
    """A finished variant without quotes, a tagline as one line, and no sentence cut off by the token cap."""
    text = text.replace("**", "").strip().strip('"“”').strip()
    if length == "Tagline":
        text = text.splitlines()[0].strip() if text else text
    if text and text[-1] not in ".!?…)\"'":
        end = max(text.rfind(p) for p in ".!?")
        text = text[: end + 1] if end > len(text) // 3 else text.rsplit(" ", 1)[0] if " " in text else text
    return text
