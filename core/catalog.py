"""Every model slot Launchpad ships. Importing this module imports each module that declares one; `slots()`
is the order the Models page lists them in; `python -m core.catalog` prints each slot's source, licence and whether it
loads offline.

    slot               declared in          page(s) that use it
    chat_lm, chat_lm_b core/llm.py          Support chatbot, Copy studio (through core/chat.py, core/copywriter.py)
    embedder           core/embeddings.py   Support chatbot (retrieval), Movie recommender (content); sentiment's encoder
    image_classifier   core/vision.py       Image classifier
    sentiment          core/sentiment.py    Sentiment analysis
    sentiment_quick    core/sentiment.py    Sentiment analysis, until the fine-tuned model is ready
    sentiment_judge    core/sentiment.py    Sentiment analysis: a language model's second opinion on one text
    credit_risk        core/risk.py         Credit risk
    recommender        core/recommender.py  Movie recommender
    digits             core/digits.py       Digit lab
"""
from __future__ import annotations

from core import digits, embeddings, llm, recommender, risk, sentiment, vision  # noqa: F401  (each declares its slots)
from core.registry import registry

ORDER = ("chat_lm", "chat_lm_b", "embedder", "image_classifier", "sentiment", "sentiment_quick", "sentiment_judge", "credit_risk", "recommender", "digits")
assert set(registry.slots()) == set(ORDER), f"core.catalog.ORDER does not list the slots declared: {registry.slots()}"


def slots() -> list[str]:
    """Every slot, in the Models page's order."""
    return list(ORDER)


def main() -> None:
    rows = sorted(registry.table(), key=lambda r: ORDER.index(r["slot"]))
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    print("  ".join(k.ljust(widths[k]) for k in widths))
    print("  ".join("-" * widths[k] for k in widths))
    for r in rows:
        print("  ".join(str(r[k]).ljust(widths[k]) for k in widths))


if __name__ == "__main__":
    main()
