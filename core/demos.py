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


@dataclass(frozen=True)
class TourStep:
    minutes: float
    page: str  # a DEMOS page, or an Operations page
    label: str
    click: str  # what to do on the page
    say: str  # what it shows a stakeholder


# Home's guided tour: a five-minute stakeholder demo, in order. Every step uses what the page offers on a fresh
# start (sample FAQ, sample photos, sample applicants, the MovieLens sample); tests/test_pages.py checks the pages exist.
TOUR: list[TourStep] = [
    TourStep(1.5, "pages/chatbot.py", "Support chatbot",
             "Ask \"How do I reset my password?\", open the cited article under the answer, then ask \"What's the "
             "weather in Paris tomorrow?\"",
             "It answers from your own help centre and shows where each answer came from; when the question is not "
             "covered it says so and offers a ticket to a person instead of making something up."),
    TourStep(1.0, "pages/sentiment.py", "Sentiment analysis",
             "Paste a customer message (\"The app is great but support never answered my email\"), press Analyse, "
             "then look at the highlighted words.",
             "Thousands of messages can be triaged by mood in seconds, and the words that decided are shown, so "
             "nobody has to trust a black box. Correcting it teaches it."),
    TourStep(1.0, "pages/image_classifier.py", "Image classifier",
             "Keep the two sample photos and look at the top answers; then open \"Teach your own classes\".",
             "A product team can teach it their own categories from a handful of photos, without a data scientist."),
    TourStep(1.0, "pages/credit_risk.py", "Credit-risk scoring",
             "Open \"One applicant\", change the income, and watch the decision and its reasons; then open "
             "\"Fairness\".",
             "Every decision comes with reason codes a loan officer can read out, and the approval policy is a "
             "slider the business sets, checked for fairness across groups."),
    TourStep(0.5, "pages/recommender.py", "Movie recommender",
             "As a new visitor, pick three films you like.",
             "Suggestions appear at once, each explained by a film you picked: the same engine ranks products, "
             "articles or courses."),
]
