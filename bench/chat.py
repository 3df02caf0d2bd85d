"""The chatbot, measured on this machine. Prints figures; asserts nothing.

  speed     decode tok/s of our path (core.llm through the registry) next to plain llama.cpp (xllamacpp,
            the same GGUF, the same prompt, greedy); time to first shown text with 3 passages after a first
            question; 4 simultaneous visitors against one
  quality   per model and per evaluation set: retrieval top-1, hand-off rates in and out of scope, how many
            in-scope answers the grounding check releases, and released sentences with a number, price or
            address that is not in the passages

Usage: python bench/chat.py [speed] [quality] [--models smollm2-135m,qwen2.5-0.5b,qwen2.5-1.5b] [--tokens 64]
       python bench/chat.py quality --retrieval-only     (retrieval figures and a threshold sweep, no LM: about 15 s)
A chat_lm set to a server (LAUNCHPAD_CHAT_LM=http://…/v1) is measured as one more model.
"""
import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from core import (  # noqa: E402
    catalog,  # noqa: E402,F401  (declares every model slot)
    chat,
    config,
    llm,
)
from core.registry import registry  # noqa: E402

EVALUATIONS = [("chat_eval.csv", "chat_out_of_scope.csv", "first set"),
               ("chat_eval_fresh.csv", "chat_out_of_scope_fresh.csv", "second set (2026-11-23)"),
               ("chat_eval_third.csv", "chat_out_of_scope_third.csv", "third set (2026-12-03, written blind)")]
QUESTION = "my card expired, how do I put in a new one?"
SERVER = os.environ.get("LAUNCHPAD_CHAT_LM", "") if os.environ.get("LAUNCHPAD_CHAT_LM", "").startswith("http") else ""


def use(model: str) -> None:
    """Point the chat_lm slot at a packaged model by name (or leave a configured server) and load it."""
    os.environ["LAUNCHPAD_CHAT_LM"] = SERVER if model == "endpoint" else model
    registry.unload("chat_lm")
    registry.warmup("chat_lm")


PLAIN = """
import json, statistics, sys, xllamacpp
sys.path.insert(0, sys.argv[1])
from core.llm import _llama_params  # core.llm imports no torch: this process runs llama.cpp alone
path, parallel, context, tokens = sys.argv[2], *map(int, sys.argv[3:6])
server = xllamacpp.Server(_llama_params(path, parallel, context, 0, None))
request = {"messages": json.loads(sys.stdin.read()), "max_tokens": tokens, "temperature": 0, "repeat_penalty": 1.1}
server.handle_chat_completions(request)
print(statistics.median(server.handle_chat_completions(request)["timings"]["predicted_per_second"] for _ in range(3)))
"""


def plain_llama_cpp(path: str, messages: list[dict], tokens: int) -> float:
    """Decode tok/s of xllamacpp alone, in a process of its own with no torch: one Server with the same
    parameters as ours, no streaming, no HTTP, no registry."""
    import json
    import subprocess

    root = str(Path(__file__).resolve().parent.parent)
    args = [root, path, str(llm.PARALLEL), str(llm.CONTEXT), str(tokens)]
    out = subprocess.run([sys.executable, "-c", PLAIN, *args], input=json.dumps(messages), capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def ours(messages: list[dict], tokens: int) -> float:
    rates = []
    for _ in range(3):
        stream = llm.stream("chat_lm", messages, llm.Sampling(max_tokens=tokens, temperature=0.0))
        for _ in stream:
            pass
        rates.append(stream.usage.tokens_per_second)
    return statistics.median(rates)


def speed(model: str, tokens: int) -> None:
    use(model)
    kb = chat.sample_kb()
    plan = chat.plan_reply(kb, [], QUESTION)
    bundle = registry.get("chat_lm")
    print(f"\n== speed: {registry.model_name('chat_lm')} ({bundle.meta['runtime']}, {llm._threads()} threads), "
          f"greedy, {tokens} new tokens")
    our_rate = ours(plan.prompt, tokens)
    if bundle.meta["runtime"] == llm.Runtime.LLAMA_CPP.value:
        plain = plain_llama_cpp(registry.source("chat_lm").location, plan.prompt, tokens)
        print(f"  decode tok/s: ours {our_rate:.1f}, plain llama.cpp {plain:.1f} ({our_rate / plain:.2f}x)")
    else:
        print(f"  decode tok/s: ours {our_rate:.1f}")

    questions = pd.read_csv(config.DATA_DIR / "chat_eval_fresh.csv").question.head(8)
    for _ in chat.AnswerStream(plan, temperature=0.0):
        pass  # the first question: caches the system prompt
    firsts, shown = [], []
    for q in questions:
        p = chat.plan_reply(kb, [], q)
        if p.kind != "generate":
            continue
        started, seen = time.perf_counter(), None
        answer = chat.AnswerStream(p, temperature=0.0)
        for _ in answer:
            seen = seen or time.perf_counter() - started
        firsts.append(answer.first_token_s or 0)
        shown.append(seen or 0)
    print(f"  after a first question, {len(shown)} new questions with 3 passages: first token median "
          f"{statistics.median(firsts):.2f} s, first shown text (grounding check on) median "
          f"{statistics.median(shown):.2f} s, max {max(shown):.2f} s")

    def visitor(out: list, i: int) -> None:
        stream = llm.stream("chat_lm", chat.plan_reply(kb, [], questions.iat[i]).prompt or plan.prompt,
                            llm.Sampling(max_tokens=tokens, temperature=0.0))
        for _ in stream:
            pass
        out.append(stream.usage.completion_tokens)

    for n in (1, 4):
        done: list = []
        started = time.perf_counter()
        threads = [threading.Thread(target=visitor, args=(done, i)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        rate = sum(done) / elapsed
        if n == 1:
            alone = rate
        print(f"  {n} simultaneous visitor(s): {sum(done)} tokens in {elapsed:.1f} s = {rate:.1f} tok/s aggregate"
              + (f" ({rate / alone:.2f}x one visitor)" if n > 1 else ""))


def released_facts(answer: chat.AnswerStream, plan: chat.Plan) -> int:
    """Sentences shown to the visitor (the model's, not a quoted article) with a fact absent from the passages."""
    if answer.fallback or answer.unanswered or answer.leak:
        return 0
    source = " ".join(f"{h.question} {h.answer}" for h in plan.hits).lower()
    sentences = [s for s in chat.re.split(r"(?<=[.!?])\s+", answer.text) if s.strip()]
    return sum(any(f not in source for f in chat._facts(s)) for s in sentences)


def quality(model: str, with_lm: bool = True) -> list[dict]:
    if with_lm:
        use(model)
        print(f"\n== quality: {registry.model_name('chat_lm')}")
    kb = chat.sample_kb()
    faq = pd.read_csv(config.DATA_DIR / "faq_sample.csv")
    id_of = dict(zip(faq.question, faq.id))
    rows = []
    for questions, out_of_scope, label in EVALUATIONS:
        evaluation = pd.read_csv(config.DATA_DIR / questions)
        oos = pd.read_csv(config.DATA_DIR / out_of_scope).question
        top1 = in_handoff = released = quoted = bad_facts = oos_handoff = oos_quoted = 0
        seconds = []
        for q, gold in zip(evaluation.question, evaluation.faq_id):
            plan = chat.plan_reply(kb, [], q)
            top1 += bool(plan.hits) and id_of.get(plan.hits[0].question) == gold
            handed = plan.kind == "handoff"
            if with_lm and plan.kind == "generate":
                started = time.perf_counter()
                answer = chat.AnswerStream(plan, temperature=0.0, max_new_tokens=128)
                for _ in answer:
                    pass
                seconds.append(time.perf_counter() - started)
                handed = answer.unanswered
                quoted += answer.fallback
                released += not (answer.unanswered or answer.fallback or answer.leak)
                bad_facts += released_facts(answer, plan)
            in_handoff += handed
        for q in oos:
            plan = chat.plan_reply(kb, [], q)
            handed = plan.kind != "generate"
            if with_lm and not handed:
                answer = chat.AnswerStream(plan, temperature=0.0, max_new_tokens=128)
                for _ in answer:
                    pass
                handed = answer.unanswered
                oos_quoted += answer.fallback
            oos_handoff += handed
        n, m = len(evaluation), len(oos)
        row = {"model": registry.model_name("chat_lm") if with_lm else "retrieval only", "set": label,
               "top-1": top1 / n, "in-scope hand-off": in_handoff / n, "out-of-scope hand-off": oos_handoff / m,
               "released": released / n if with_lm else None, "bad facts": bad_facts if with_lm else None,
               "s/answer": statistics.median(seconds) if seconds else None}
        rows.append(row)
        print(f"  {label}: top-1 {row['top-1']:.3f} | in-scope hand-off {in_handoff}/{n} = {row['in-scope hand-off']:.2f}"
              f" (goal <= 0.05) | out-of-scope hand-off {oos_handoff}/{m} = {row['out-of-scope hand-off']:.2f}"
              f" (goal >= 0.85)" + (f", {oos_quoted} more got the closest article with a hand-off offer"
                                    f" | in-scope released by the grounding check {released}/{n} = {released / n:.2f}"
                                    f" (goal >= 0.70), {quoted} got the closest article | released sentences with a"
                                    f" fact absent from the passages: {bad_facts} | median {row['s/answer']:.1f} s per"
                                    " answer" if with_lm else ""))
    return rows


def thresholds() -> None:
    """Hand-off rates per set at each retrieval threshold around the default (how HANDOFF_THRESHOLD was chosen:
    on the first two sets; the third is reported, not tuned on)."""
    kb = chat.sample_kb()
    tops = {label: ([kb.search(q, k=1)[0].score for q in pd.read_csv(config.DATA_DIR / questions).question],
                    [kb.search(q, k=1)[0].score for q in pd.read_csv(config.DATA_DIR / oos).question])
            for questions, oos, label in EVALUATIONS}
    print(f"\nhand-off by retrieval threshold (default {chat.HANDOFF_THRESHOLD}): in-scope / out-of-scope")
    for t in (0.30, 0.33, 0.35, 0.37, 0.40, 0.45):
        cells = [f"{sum(s < t for s in i) / len(i):.3f} / {sum(s < t for s in o) / len(o):.2f}" for i, o in tops.values()]
        print(f"  {t:.2f}: " + " | ".join(f"{label.split(' (')[0]} {c}" for label, c in zip(tops, cells)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("parts", nargs="*", default=["speed", "quality"])
    parser.add_argument("--models", default=",".join(c.key for c in registry.spec("chat_lm").choices))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--retrieval-only", action="store_true")
    args = parser.parse_args()
    if args.retrieval_only:
        quality("", with_lm=False)
        thresholds()
        return
    models = args.models.split(",")
    if SERVER:
        models.append("endpoint")
    for model in models:
        if "speed" in args.parts:
            speed(model, args.tokens)
        if "quality" in args.parts:
            quality(model)


if __name__ == "__main__":
    main()
