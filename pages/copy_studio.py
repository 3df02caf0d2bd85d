import streamlit as st

from core import copywriter, llm, store
from core.files import plain
from core.registry import registry
from pages.common import allow_heavy_call, app_shell, ensure_model, model_credits

app_shell()

SLOTS = ("chat_lm", "chat_lm_b")
VOTES = {"A is better": "a", "Tie": "tie", "B is better": "b"}

st.title("✍️ Marketing-copy studio")
st.caption("Describe a product, pick a tone and a length, and get several variants to choose from, written at "
           "the same time.")
compare = st.toggle("Compare two models", value=False, key="copy_compare",
                    help="Both chat models write variants for the same brief, side by side; vote for the better set. "
                         "The names are shown after your vote.")
model_credits(*(SLOTS if compare else SLOTS[:1]))
if not all(ensure_model(slot) for slot in (SLOTS if compare else SLOTS[:1])):
    st.stop()

state = st.session_state
with st.form("brief"):
    description = st.text_area("Product description", key="description", max_chars=2000, height=100,
                               placeholder="A reusable steel water bottle that keeps drinks cold for 24 hours")
    left, mid, right = st.columns(3)
    tone = left.selectbox("Tone", copywriter.TONES, key="tone")
    length = mid.segmented_control("Length", list(copywriter.LENGTHS), default="Short", key="length")
    n = right.slider("Variants", 1, copywriter.MAX_VARIANTS, 3, key="n")
    with st.expander("Sampling"):
        temperature = st.slider("Temperature", 0.1, 1.5, 0.9, 0.05, key="copy_temperature",
                                help="Higher gives more surprising, less predictable copy.")
        top_p = st.slider("Top-p", 0.5, 1.0, 0.95, 0.01, key="top_p",
                          help="Sample only from the likeliest words that together reach this probability.")
    submitted = st.form_submit_button("Generate", type="primary")


def cards(texts: list[str], done: list[bool] | None = None, key: str = "") -> None:
    """Variants as cards, three to a row; finished ones get a word count, a copy box (folded) and a download."""
    for start in range(0, len(texts), 3):
        for offset, column in enumerate(st.columns(3)):
            i = start + offset
            if i >= len(texts):
                break
            with column.container(border=True):
                if done is not None:  # still streaming
                    st.markdown(f"{'✅' if done[i] else '✏️'} **Variant {i + 1}**  \n{plain(texts[i]) or '…'}")
                    continue
                st.markdown(f"**Variant {i + 1}** · {len(texts[i].split())} words  \n"
                            + (plain(texts[i]) or "_(the model wrote nothing: try again or raise the temperature)_"))
                with st.expander("Copy text", icon=":material/content_copy:"):  # not the same text twice on the card
                    st.code(texts[i], language=None, wrap_lines=True)  # its corner has a copy button
                st.download_button("Download", texts[i], f"copy-variant-{key}{i + 1}.txt", "text/plain",
                                   key=f"download-{key}{i}", on_click="ignore", icon=":material/download:")


if submitted and allow_heavy_call():
    try:
        brief, notice = copywriter.validate(description)
    except ValueError as exc:
        st.error(str(exc), icon=":material/edit_note:")
        st.stop()
    if notice:
        st.info(notice)
    slots = SLOTS if compare else SLOTS[:1]
    columns = st.columns(len(slots))
    holders = [column.empty() for column in columns]
    runs = [copywriter.generate_variants(brief, tone, length or "Short", n, temperature, top_p, slot=slot)
            for slot in slots]
    results: list = [None] * len(slots)
    with st.spinner(f"Writing {n} variant(s)" + (" with each model…" if compare else "…")):
        for latest in llm.together(runs):
            for i, (holder, variants) in enumerate(zip(holders, latest)):
                if variants:
                    results[i] = variants
                    with holder.container():
                        if compare:
                            st.markdown(f"**Model {'AB'[i]}**")
                        cards([v.text for v in variants], [v.done for v in variants])
    state.copy_results = [{"model": registry.model_name(slot), "variants": [v.text for v in variants or []]}
                          for slot, variants in zip(slots, results)]
    state.copy_brief = {"description": brief, "tone": tone, "length": length}
    state.pop("copy_vote_id", None)
    state.pop("copy_winner", None)
    st.rerun()


@st.fragment
def vote() -> None:
    choice = st.segmented_control("Which set of variants is better?", list(VOTES), key="copy_vote")
    if choice is not None and VOTES[choice] != state.get("copy_winner"):
        a, b = (r["model"] for r in state.copy_results)
        if state.get("copy_vote_id"):
            store.update_vote(state.copy_vote_id, VOTES[choice])
        else:
            state.copy_vote_id = store.add_vote("copy", state.copy_brief["description"], a, b, VOTES[choice])
        state.copy_winner = VOTES[choice]
        st.rerun()


if state.get("copy_results"):
    brief, results = state.copy_brief, state.copy_results
    st.subheader(f"{len(results[0]['variants'])} variant(s) · {brief['tone'].lower()} · "
                 f"{(brief['length'] or 'Short').lower()}")
    if len(results) == 2:
        for i, result in enumerate(results):
            name = f" · {result['model']}" if state.get("copy_winner") else ""
            st.markdown(f"#### Model {'AB'[i]}{plain(name)}")
            cards(result["variants"], key=f"{'ab'[i]}-")
        vote()
    else:
        cards(results[0]["variants"])
    everything = "\n\n".join(f"## {r['model']}, variant {i + 1}\n\n{t}"
                             for r in results for i, t in enumerate(r["variants"]))
    st.download_button("Download all (Markdown)", f"# {brief['description']}\n\n{everything}", "copy-variants.md",
                       "text/markdown", key="download-all", on_click="ignore", type="primary")
