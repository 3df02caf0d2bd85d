import pandas as pd
import plotly.express as px
import streamlit as st

from core import files, store
from pages.common import app_shell, operations_gate

app_shell()

st.title("🎧 Support desk")
operations_gate()  # operators only (core.access)
st.caption("Tickets the chatbot handed over to a person, and what customers thought of its answers.",
           help=f"Kept in the app's database: SQLite file `{store.db_path().name}` (LAUNCHPAD_DB).")



def when(stamp: str) -> str:
    """A stored ISO time as people write it: 4 Dec 2026, 00:42 UTC (the stamp itself if it is not one)."""
    try:
        return pd.Timestamp(stamp).tz_convert("UTC").strftime("%-d %b %Y, %H:%M UTC")
    except (ValueError, TypeError):
        return str(stamp)


tickets, feedback, votes = st.tabs(["Tickets", "Answer feedback", "Model votes"], key="desk_tab")

with tickets:
    status = st.segmented_control("Show", ["open", "closed", "all"], default="open", key="ticket_status")
    rows = store.tickets(None if status in (None, "all") else status)
    if not rows:
        st.info("No tickets here. When the chatbot can't answer, users can hand the conversation to a person.")
    for t in rows:
        # everything in a ticket is visitor text (or a model's answer to it): files.plain shows it literally,
        # with no links, images or formatting; the email goes in a code box, copyable without hidden characters
        question = t["question"] if len(t["question"]) <= 80 else t["question"][:79].rstrip() + "…"  # cut, and says so
        with st.expander(f"#{t['id']} · {t['status']} · {files.plain(t['intent'] or 'other')} · "
                         f"{files.plain(question)}"):
            st.caption(f"Created {when(t['created'])} · {files.plain(t['name'] or 'anonymous')}"
                       + ("" if t["email"] else " · no email"))
            if t["email"]:
                st.code(t["email"], language=None)
            for m in t["conversation"]:
                st.markdown(f"**{'Customer' if m['role'] == 'user' else 'Penny'}:** {files.plain(m['content'])}")
            new = "closed" if t["status"] == "open" else "open"
            if st.button(f"Mark {new}", key=f"ticket-{t['id']}"):
                store.set_ticket_status(t["id"], new)
                st.rerun()

with feedback:
    rows = store.feedback()
    if not rows:
        st.info("No feedback yet: thumbs up or down under a chatbot answer lands here.")
    else:
        frame = pd.DataFrame(rows)
        frame["day"] = pd.to_datetime(frame.created).dt.date
        frame["rating"] = frame.score.map({1: "👍 helpful", 0: "👎 not helpful"})
        a, b = st.columns(2)
        a.metric("Rated answers", len(frame))
        b.metric("Helpful", f"{frame.score.mean():.0%}")
        daily = frame.groupby(["day", "rating"]).size().reset_index(name="answers")
        fig = px.bar(daily, x="day", y="answers", color="rating", barmode="stack",
                     color_discrete_map={"👍 helpful": "#2E9E5B", "👎 not helpful": "#D9534F"},
                     labels={"day": "Day", "answers": "Rated answers", "rating": "Rating"})
        first, last = pd.Timestamp(daily.day.min()), pd.Timestamp(daily.day.max())
        fig.update_xaxes(type="date", dtick=24 * 3600 * 1000 * max(1, (last - first).days // 10), tickformat="%d %b",
                         range=[first - pd.Timedelta(hours=18), last + pd.Timedelta(hours=18)])  # whole days, even for one
        fig.update_traces(width=0.8 * 24 * 3600 * 1000)  # a bar of most of a day (a date axis counts milliseconds)
        fig.update_layout(height=320, margin=dict(t=20, b=10))
        st.plotly_chart(fig, width="stretch")
        st.dataframe(frame[["created", "rating", "question", "answer"]], hide_index=True, width="stretch")
        st.download_button("Download feedback (CSV)", files.csv_download(frame.drop(columns=["day"])),
                           "feedback.csv", "text/csv", on_click="ignore")

with votes:
    st.caption("In compare mode (chatbot and copy studio) two models answer the same input side by side and the "
               "visitor votes for the better one, without seeing which is which. This is how to pick the model to ship.")
    demo = st.segmented_control("Demo", ["all", "chat", "copy"], default="all", key="vote_demo")
    rates = store.win_rates(None if demo in (None, "all") else demo)
    if not rates:
        st.info("No votes yet: turn on **Compare two models** in the chatbot's sidebar or the copy studio.")
    else:
        frame = pd.DataFrame(rates)
        st.metric("Comparisons voted on", sum(r["comparisons"] for r in rates) // 2)
        fig = px.bar(frame, x="model", y="win_rate", text=frame.win_rate.map("{:.0%}".format),
                     hover_data=["comparisons", "wins", "losses", "ties"],
                     labels={"model": "Model", "win_rate": "Win rate (a tie counts half)"})
        fig.update_yaxes(range=[0, 1], tickformat=".0%")
        fig.update_layout(height=320, margin=dict(t=20, b=10))
        st.plotly_chart(fig, width="stretch")
        st.dataframe(frame.rename(columns={"win_rate": "win rate"}), hide_index=True, width="stretch",
                     column_config={"win rate": st.column_config.NumberColumn(format="percent")})
