"""The demo catalogue: what Home shows as cards and what app.py puts under "Demos"."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Demo:
    title: str
    icon: str
    page: str  # path relative to the repository root
    pitch: str
    slots: tuple[str, ...]  # registry slots the demo uses


DEMOS: list[Demo] = [
    Demo("Support chatbot", ":material/support_agent:", "pages/chatbot.py",
         "A support assistant that answers from your help centre, cites its sources, and hands over to a "
         "person when it is not sure.", ("chat_lm", "embedder")),
    Demo("Copy studio", ":material/edit_note:", "pages/copy_studio.py",
         "Marketing copy on demand: describe a product, pick a tone, get several variants to choose from.",
         ("chat_lm",)),
    Demo("Sentiment analysis", ":material/sentiment_satisfied:", "pages/sentiment.py",
         "Read the mood of customer messages one by one or 10,000 at a time, see which words decided, and "
         "teach the model by correcting it.", ("sentiment",)),
    Demo("Image classifier", ":material/image_search:", "pages/image_classifier.py",
         "Recognise 1,000 kinds of objects in a photo, or teach it your own classes from a handful of "
         "examples, like a teachable machine.", ("image_classifier",)),
    Demo("Credit-risk scoring", ":material/account_balance:", "pages/credit_risk.py",
         "Score loan applicants with calibrated models, explain each decision with reason codes, set the "
         "approval policy, and check it is fair across groups.", ("credit_risk",)),
    Demo("Movie recommender", ":material/movie:", "pages/recommender.py",
         "Recommendations from real ratings, each explained by a movie you liked; new visitors pick a few "
         "favourites and get suggestions at once.", ("recommender", "embedder")),
    Demo("Digit lab", ":material/draw:", "pages/digit_lab.py",
         "Watch a neural network learn to read handwriting in under a minute, then draw a digit and see "
         "what it reads; correct it and it learns.", ("digits",)),
]
