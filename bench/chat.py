"""The chatbot, measured: generation speed next to a plain model.generate, retrieval speed over a
1,000-entry knowledge base, and retrieval quality on the evaluation set written for this project.

Usage: python bench/chat.py [--tokens 64]
"""
import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core import chat, config  # noqa: E402
from core.models import registry  # noqa: E402


def plain_generate(prompt, max_new_tokens):
    """transformers' own streaming: model.generate with a TextIteratorStreamer, nothing else."""
    from transformers import TextIteratorStreamer

    bundle = registry.get("chat_lm")
    tok = bundle.tokenizer
    ids = tok.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False,
                  repetition_penalty=1.1, pad_token_id=tok.pad_token_id, streamer=streamer)
    started = time.perf_counter()
    worker = threading.Thread(target=lambda: bundle.model.generate(ids, **kwargs))
    worker.start()
    first, text = None, ""
    for chunk in streamer:
        first = first or time.perf_counter() - started
        text += chunk
    worker.join()
    return first, n_tokens(text), time.perf_counter() - started


def n_tokens(text: str) -> int:
    return len(registry.get("chat_lm").tokenizer(text, add_special_tokens=False).input_ids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--quality-only", action="store_true", help="only the retrieval quality figures")
    args = parser.parse_args()
    kb = chat.sample_kb()
    if args.quality_only:
        for questions, out_of_scope, label in EVALUATIONS:
            quality(kb, questions, out_of_scope, label)
        return
    registry.warmup("chat_lm")
    print(f"chat LM {registry.model_name('chat_lm')} on {registry.get('chat_lm').device}, "
          f"{torch.get_num_threads()} threads; greedy, {args.tokens} new tokens\n")

    question = "my card expired, how do I put in a new one?"
    plan = chat.plan_reply(kb, [], question)
    rows = []
    for _ in range(2):  # the second round is the one reported; the first warms caches
        rows = []
        first, tokens, total = plain_generate(plan.prompt, args.tokens)
        rows.append(("plain model.generate + streamer", first, first, tokens, tokens / total, total))
        for grounded in (False, True):
            started = time.perf_counter()
            stream = chat.AnswerStream(plan, temperature=0.0, max_new_tokens=args.tokens, grounded=grounded)
            shown_at = None
            for _ in stream:
                shown_at = shown_at or time.perf_counter() - started
            total = time.perf_counter() - started
            name = "chatbot, grounding check on" if grounded else "chatbot, raw token stream"
            tokens = n_tokens(stream.raw)
            rows.append((name, stream.first_token_s, shown_at, tokens, tokens / total, total))
    print(f"{'path':<34}{'first token s':>14}{'first shown s':>15}{'tokens':>8}{'tokens/s':>10}{'total s':>9}")
    for name, first, shown, tokens, rate, total in rows:
        print(f"{name:<34}{first:>14.2f}{shown:>15.2f}{tokens:>8}{rate:>10.1f}{total:>9.2f}")
    print("(first shown: when the user sees text; the raw stream holds back 6 words, the grounded one a sentence "
          "and can stop the model early)\n")

    # retrieval latency over 1,000 entries (the sample FAQ, repeated with numbered variants)
    big = pd.concat([kb.entries.assign(question=kb.entries.question + f" (variant {i})") for i in range(21)])
    big = big.head(1000).reset_index(drop=True)
    started = time.perf_counter()
    big_kb = chat.KnowledgeBase("bench", big)
    index_s = time.perf_counter() - started
    latencies = []
    for q in pd.read_csv(config.DATA_DIR / "chat_eval.csv").question:
        t = time.perf_counter()
        big_kb.search(q, k=3)
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    print(f"retrieval over {len(big_kb):,} entries: indexing {index_s:.1f} s once; per query p50 "
          f"{statistics.median(latencies):.1f} ms, p95 {latencies[int(0.95 * (len(latencies) - 1))]:.1f} ms "
          "(embedding the query included)\n")

    for questions, out_of_scope, label in EVALUATIONS:
        quality(kb, questions, out_of_scope, label)


EVALUATIONS = [("chat_eval.csv", "chat_out_of_scope.csv", "first set"),
               ("chat_eval_fresh.csv", "chat_out_of_scope_fresh.csv",
                "second set, written 2026-11-23 before the change it measures")]


def quality(kb, questions: str, out_of_scope: str, label: str) -> None:
    """Top-1 retrieval accuracy and hand-off rates on one evaluation set."""
    evaluation = pd.read_csv(config.DATA_DIR / questions)
    faq = pd.read_csv(config.DATA_DIR / "faq_sample.csv")
    id_of = dict(zip(faq.question, faq.id))
    hits, among, misses, handed = 0, 0, [], 0
    for q, gold in zip(evaluation.question, evaluation.faq_id):
        plan = chat.plan_reply(kb, [], q, passages=3)  # the page's default
        top = id_of.get(plan.hits[0].question) if plan.hits else None
        hits += top == gold
        among += gold in {id_of.get(h.question) for h in plan.hits}
        handed += plan.kind == "handoff"
        if top != gold:
            misses.append(f"  {q!r} -> {plan.hits[0].question!r} ({plan.hits[0].score:.2f})")
    oos = pd.read_csv(config.DATA_DIR / out_of_scope).question
    oos_handed = sum(chat.plan_reply(kb, [], q).kind == "handoff" for q in oos)
    print(f"{label} ({questions}, {out_of_scope}):")
    print(f"  retrieval top-1 accuracy on {len(evaluation)} paraphrased questions: {hits / len(evaluation):.3f} "
          f"(goal >= 0.9); in-scope questions handed off: {handed}")
    print(f"  the answering entry among the 3 passages the LM is given: {among / len(evaluation):.3f}")
    print(f"  out-of-scope questions handed off: {oos_handed}/{len(oos)} = {oos_handed / len(oos):.2f} "
          f"(goal >= 0.8); threshold {chat.HANDOFF_THRESHOLD}")
    print("  misses:\n" + "\n".join("  " + m for m in misses) + "\n")


if __name__ == "__main__":
    main()
