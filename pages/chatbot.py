import streamlit as st

from core import chat, config, files, llm, store
from core.registry import registry
from pages.common import allow_heavy_call, api_help, app_shell, ensure_model, model_credits

app_shell()

# --- sidebar: settings and knowledge base --------------------------------------------------------
with st.sidebar:
    st.subheader("Chat settings")
    compare = st.toggle("Compare two models", value=False, key="compare",
                        help="Each question is answered by two chat models side by side; vote for the better answer. "
                             "The names are shown after your vote. Win rates are on the Support desk page.")
    advanced = st.expander("Advanced: tuning for engineers", icon=":material/tune:")
    temperature = advanced.slider("Temperature", 0.0, 1.0, 0.3, 0.05, key="temperature",
                            help="0 always picks the likeliest word; higher is more varied.")
    max_new_tokens = advanced.slider("Max new tokens", 32, 256, 128, 16, key="max_tokens")
    passages = advanced.slider("Passages used", 1, 5, 3, key="passages", help="Help-centre entries retrieved and cited.")
    threshold = advanced.slider("Hand-off below similarity", 0.10, 0.60, chat.HANDOFF_THRESHOLD, 0.01, key="threshold",
                          help="Below this retrieval similarity Penny offers a human instead of guessing.")
    grounded = advanced.toggle("Grounding check", value=True, key="grounded",
                         help="Show only sentences the help centre supports (a sentence at a time); off streams raw tokens.")
    advanced.caption(f"Model: {registry.model_name('chat_lm')}"
               + (f" vs {registry.model_name('chat_lm_b')}" if compare else "")
               + f" · embeddings: {registry.model_name('embedder')}")
    st.subheader("Knowledge base")
    upload = st.file_uploader("Your own FAQ (CSV with question, answer columns, or Markdown with questions "
                              "as headings)", type=["csv", "md", "markdown", "txt"], key="faq_upload")

st.title("💬 Support chatbot")
st.caption("Penny answers customer questions from a help centre, cites her sources, and hands over to a person "
           "when she doesn't know.")
model_credits("chat_lm", *(["chat_lm_b"] if compare else []), "embedder", data="sample FAQ of Pennant, a fictional invoicing startup, written for "
              "Launchpad (CC0); intent examples written for Launchpad (CC0).")
api_help("chatbot", "embeddings")
if not (ensure_model("embedder") and ensure_model("chat_lm") and (not compare or ensure_model("chat_lm_b"))):
    st.stop()

# --- session state ------------------------------------------------------------------------------
state = st.session_state
state.setdefault("messages", [])
if upload is not None and state.get("faq_file") != upload.file_id:
    try:
        entries, notices = chat.parse_faq(upload.getvalue(), upload.name)
        refusal = config.over_budget("chat_max_faq_entries", len(entries), f"Entries in {upload.name}")
        if refusal:  # indexing costs an embedding per entry: checked before it starts
            raise chat.KnowledgeBaseError(refusal)
        if allow_heavy_call():  # else it is tried again on the next run, once the limit allows
            with st.spinner(f"Indexing {len(entries):,} entries of {upload.name}…"):
                state.kb = chat.KnowledgeBase(chat.GENERIC_NAME, entries, f"uploaded file {upload.name}")
            state.faq_file, state.kb_notices, state.messages = upload.file_id, notices, []
    except chat.KnowledgeBaseError as exc:
        state.faq_file = upload.file_id  # a refused file is read once, not on every rerun
        state.faq_error = str(exc)
    else:
        state.faq_error = ""
if upload is not None and state.get("faq_error"):
    st.error(files.plain(state.faq_error), icon=":material/error:")
elif upload is None and state.get("faq_file"):
    state.pop("kb", None)
    state.faq_file, state.kb_notices, state.messages = None, [], []
if "kb" not in state:
    with st.spinner("Indexing the help centre…"):
        state.kb, state.kb_notices = chat.sample_kb(), []
kb: chat.KnowledgeBase = state.kb
for notice in state.get("kb_notices", []):
    st.info(files.plain(notice), icon=":material/info:")

top = st.columns([4, 1, 1], vertical_alignment="center")
top[0].caption(f"Knowledge base: **{files.plain(kb.source)}** · {len(kb):,} entries")
if top[1].button("Clear chat", key="clear", width="stretch", disabled=not state.messages):
    state.messages = []
    st.rerun()
top[2].download_button("Transcript", chat.transcript(state.messages, kb.name), "penny-transcript.md",
                       "text/markdown", key="transcript", width="stretch", on_click="ignore",
                       disabled=not state.messages)


# --- replay history -----------------------------------------------------------------------------
@st.fragment
def feedback(i: int, message: dict, question: str) -> None:
    """In a fragment: a thumb clicked on an old answer must not interrupt one that is streaming."""
    score = st.feedback("thumbs", key=f"feedback-{i}")
    if score is not None and score != message.get("feedback"):
        if message.get("feedback_id"):
            store.update_feedback(message["feedback_id"], score)
        else:
            message["feedback_id"] = store.add_feedback(score, question, message["content"], message["hits"])
        message["feedback"] = score
        st.toast("Thanks: your feedback helps us improve Penny.")


def handoff_form(i: int, message: dict, question: str) -> None:
    if message.get("ticket"):
        st.success(f"Ticket #{message['ticket']} created: a person from our team will follow up.", icon=":material/support_agent:")
        return
    with st.form(key=f"handoff-{i}"):
        st.markdown("**Talk to a person**")
        name = st.text_input("Name (optional)", max_chars=100, key=f"handoff-name-{i}")
        email = st.text_input("Email (optional, for a reply)", max_chars=200, key=f"handoff-email-{i}")
        if st.form_submit_button("Create support ticket", type="primary"):
            if email.strip() and not chat.valid_email(email):
                st.error("That email address doesn't look right: check it, or leave it empty.")
            else:
                history = [m for m in state.messages[: i + 1]]
                message["ticket"] = store.create_ticket(question, history, name, email, message.get("intent", ""))
                st.rerun()


SIDES = ("a", "b")
VOTES = {"A is better": "a", "Tie": "tie", "B is better": "b"}


@st.fragment
def vote(i: int, message: dict, question: str) -> None:
    """Compare mode: the visitor picks the better answer; the models' names show once they have voted."""
    choice = st.segmented_control("Which answer is better?", list(VOTES), key=f"vote-{i}")
    if choice is not None and VOTES[choice] != message.get("winner"):
        a, b = (side["model"] for side in message["compare"])
        if message.get("vote_id"):
            store.update_vote(message["vote_id"], VOTES[choice])
        else:
            message["vote_id"] = store.add_vote("chat", question, a, b, VOTES[choice])
        message["winner"] = VOTES[choice]
        st.rerun()  # the whole message, to show the names


def side_by_side(message: dict, texts: list[str] | None = None) -> list:
    """Two answers in two bordered columns; `texts` while they stream, else the message's own."""
    boxes = []
    for column, side, label in zip(st.columns(2), message["compare"], ("A", "B")):
        with column.container(border=True):
            name = f" · {side['model']}" if message.get("winner") else ""
            st.markdown(f"**Model {label}**{files.plain(name)}")
            boxes.append(st.empty())
            if texts is None:
                boxes[-1].markdown(files.plain(side["content"]))
                if side.get("grounding"):
                    st.caption(side["grounding"])
    return boxes


def grounding_note(answer: chat.AnswerStream) -> str:
    """What the grounding check did, in words for a visitor."""
    if answer.unanswered:
        return "Penny found that the help centre does not answer this, so she offers a person instead."
    left_out = f"{answer.dropped} sentence{'s' if answer.dropped != 1 else ''}"
    if answer.fallback:
        return (f"Penny left out {left_out} the help centre does not back up, so she quotes the closest article "
                "and offers a person.")
    if answer.dropped:
        return f"Penny left out {left_out} the help centre does not back up."
    return ""


def render(i: int, message: dict) -> None:
    with st.chat_message(message["role"], avatar="🧑" if message["role"] == "user" else "🤖"):
        if message.get("compare"):
            side_by_side(message)
        else:
            st.markdown(files.plain(message["content"]))
        if message["role"] == "user":
            st.badge(message.get("intent", "other"), icon=":material/label:", color="gray")
            if message.get("notice"):
                st.caption(message["notice"])
            return
        question = state.messages[i - 1]["content"] if i else ""
        if message.get("hits"):
            with st.expander(f"Sources ({len(message['hits'])})"):
                for h in message["hits"]:
                    st.markdown(f"**{files.plain(h['question'])}** · similarity {h['score']:.2f}  \n"
                                f"{files.plain(h['answer'])}")
        if message.get("grounding"):
            st.caption(message["grounding"])
        if message.get("kind") == chat.Reply.HANDOFF:
            handoff_form(i, message, question)
        elif message.get("compare"):
            vote(i, message, question)
        elif message.get("kind") == chat.Reply.GENERATE:
            feedback(i, message, question)
        if i == len(state.messages) - 1 and message.get("kind") == chat.Reply.GENERATE and not message.get("compare"):
            if st.button("Regenerate", key=f"regenerate-{i}", icon=":material/refresh:", type="tertiary",
                         help="Ask the same question again for another answer"):
                state.messages, state.resubmit = state.messages[:i - 1], question
                st.rerun()


if state.get("streaming"):  # the last run was stopped mid-answer (Stop, or another click): keep what was shown
    stopped = state.pop("streaming")
    stopped["content"] = stopped["content"] or "(stopped before any text)"
    stopped["grounding"] = "Stopped before the end."
    state.messages.append(stopped)

for i, message in enumerate(state.messages):
    render(i, message)
if not state.messages and not state.get("resubmit"):  # an empty chat (not one being regenerated): what to ask
    offer = st.empty()
    picked = offer.pills("Try asking", chat.suggestions(kb), key=f"suggest-{state.get('faq_file')}",
                         format_func=files.plain, help="Click one to send it, or type your own question below.")
    if picked:
        state.resubmit = picked
        offer.empty()

# --- handle input -------------------------------------------------------------------------------
prompt = st.chat_input("Ask about billing, your account, technical issues or privacy", key="chat_input",
                       submit_mode="disable") or state.pop("resubmit", None)
if prompt is not None:
    if not allow_heavy_call():
        st.caption(f"Not sent: {files.plain(prompt[:300])}")
        st.stop()
    plan = chat.plan_reply(kb, state.messages, prompt, passages=passages, threshold=threshold)
    if plan.kind == chat.Reply.EMPTY:
        st.toast("Type a question first.")
        st.stop()
    state.messages.append({"role": "user", "content": plan.message, "intent": plan.intent, "notice": plan.notice})
    render(len(state.messages) - 1, state.messages[-1])
    reply = {"role": "assistant", "kind": plan.kind, "intent": plan.intent,
             "hits": [{"question": h.question, "answer": h.answer, "score": h.score} for h in plan.hits]}
    if plan.kind == chat.Reply.GENERATE and compare:
        answers = [chat.AnswerStream(plan, temperature, max_new_tokens, grounded, kb.name, slot=slot)
                   for slot in ("chat_lm", "chat_lm_b")]
        reply["compare"] = [{"slot": slot, "model": registry.model_name(slot), "content": ""}
                            for slot in ("chat_lm", "chat_lm_b")]
        with st.chat_message("assistant", avatar="🤖"):
            boxes = side_by_side(reply, texts=[])
            for texts in llm.together([chat.growing(a) for a in answers]):
                for box, text in zip(boxes, texts):
                    box.markdown(files.plain(text or "…"))
        for side, answer in zip(reply["compare"], answers):
            side["content"], side["grounding"] = answer.text, grounding_note(answer)
        reply["content"] = answers[0].text  # the conversation goes on from model A's answer
    elif plan.kind == chat.Reply.GENERATE:
        with st.chat_message("assistant", avatar="🤖"):
            answer = chat.AnswerStream(plan, temperature, max_new_tokens, grounded, kb.name)
            box = st.container(key="streaming-answer").empty()  # plain text as it streams (st.write_stream renders Markdown)
            st.button("Stop", key="stop", icon=":material/stop_circle:", type="tertiary",
                      help="Stop the answer here; what is shown so far is kept")  # a click reruns: the stream ends
            state.streaming = reply | {"content": ""}
            with st.spinner("Penny is writing, checking each sentence against the help centre…" if grounded
                            else "Penny is writing…"):
                for text in chat.growing(answer):
                    box.markdown(files.plain(text))
                    state.streaming["content"] = text
            state.pop("streaming", None)
            reply["content"] = answer.text
        reply["grounding"] = grounding_note(answer)
        if answer.unanswered or answer.fallback:  # not sure: offer a person beside the closest article
            reply["kind"] = chat.Reply.HANDOFF
    else:
        reply["content"] = plan.text
        if plan.kind == chat.Reply.HANDOFF and plan.hits:
            reply["hits"] = reply["hits"][:1]  # show the closest entry, so the user sees why
    state.messages.append(reply)
    st.rerun()
