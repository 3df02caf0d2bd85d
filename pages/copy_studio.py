import streamlit as st

from core import copywriter
from core.chat import as_text
from pages.common import allow_heavy_call, app_shell, ensure_model, model_credits

app_shell()

st.title("✍️ Marketing-copy studio")
st.caption("Describe a product, pick a tone and a length, and get several variants to choose from.")
model_credits("chat_lm")
if not ensure_model("chat_lm"):
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

if submitted and allow_heavy_call():
    try:
        brief, notice = copywriter.validate(description)
    except ValueError as exc:
        st.error(str(exc), icon=":material/edit_note:")
        st.stop()
    if notice:
        st.info(notice)
    boxes = [st.empty() for _ in range(n)]
    with st.spinner(f"Writing {n} variant(s)…"):
        for variants in copywriter.generate_variants(brief, tone, length or "Short", n, temperature, top_p):
            for i, (box, v) in enumerate(zip(boxes, variants)):
                mark = "✅" if v.done else "✏️"
                box.markdown(f"{mark} **Variant {i + 1}**  \n{as_text(v.text) or '…'}")
    state.copy_variants = [v.text for v in variants]
    state.copy_brief = {"description": brief, "tone": tone, "length": length}
    st.rerun()

if state.get("copy_variants"):
    brief = state.copy_brief
    st.subheader(f"{len(state.copy_variants)} variant(s) · {brief['tone'].lower()} · {(brief['length'] or 'Short').lower()}")
    for i, text in enumerate(state.copy_variants):
        with st.container(border=True):
            st.markdown(f"**Variant {i + 1}** · {len(text.split())} words")
            st.code(text or "(the model wrote nothing: try again or raise the temperature)", language=None,
                    wrap_lines=True)  # the copy button is in the code block's corner
            st.download_button("Download", text, f"copy-variant-{i + 1}.txt", "text/plain", key=f"download-{i}",
                               on_click="ignore", icon=":material/download:")
    everything = "\n\n".join(f"## Variant {i + 1}\n\n{t}" for i, t in enumerate(state.copy_variants))
    st.download_button("Download all (Markdown)", f"# {brief['description']}\n\n{everything}", "copy-variants.md",
                       "text/markdown", key="download-all", on_click="ignore", type="primary")
