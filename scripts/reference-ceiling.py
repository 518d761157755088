#!/usr/bin/env python3
"""How far strong off-the-shelf text classifiers get on leadsift's validation split.

A measurement for issue 3's bars, not part of leadsift: scikit-learn's TF-IDF
word 1-2-grams + character n-grams with logistic regression and a linear SVM,
trained per corpus on the training side of the same split `leadsift train`
uses and scored on its validation side. Reported per corpus, spam against
everything else:

* oracle: the best spam F1 at a threshold chosen *on the validation side*
  with at most `budget` of its non-spam called spam — an upper bound, no
  deployable filter chooses its threshold on the test messages;
* honest: the threshold set on 5-fold out-of-fold scores of the training side
  at 0.15 %, then applied to the validation side.

Then one SVM per channel group (e-mail: Enron + SpamAssassin + Markup; short:
SMS + Telegram RU + STANKIN), as leadsift deploys it: one model and one
threshold for every message of the group, the threshold set out of fold so
that no corpus's training ham exceeds 0.15 %; beside it the per-corpus
oracle of that same joint model.

    cargo run --release -p leadsift-model --example export -- --out /tmp/corpus.jsonl
    pip install scikit-learn
    python3 scripts/reference-ceiling.py /tmp/corpus.jsonl
"""
import json
import sys

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.svm import LinearSVC

CORPORA = ["enron", "spamassassin", "sms", "telegram_ru"]
BUDGETS = [0.0, 0.0015, 0.005]


def f1_at(scores, spam, threshold):
    tp = int((scores[spam] > threshold).sum())
    fp = int((scores[~spam] > threshold).sum())
    fn = int(spam.sum()) - tp
    return (2 * tp / (2 * tp + fp + fn) if tp else 0.0), fp


def threshold_for(scores, spam, budget):
    """The lowest threshold letting at most floor(budget · hams) hams through."""
    hams = np.sort(scores[~spam])[::-1]
    allowed = int(np.floor(budget * len(hams) + 1e-9))
    return hams[allowed] if allowed < len(hams) else -np.inf


def tfidf(train, valid, short, text):
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=1 if short else 2, sublinear_tf=True,
                            max_features=400_000)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2 if short else 3, 5), min_df=2,
                            sublinear_tf=True, max_features=400_000)
    x_train = hstack([words.fit_transform(map(text, train)), chars.fit_transform(map(text, train))]).tocsr()
    x_valid = hstack([words.transform(map(text, valid)), chars.transform(map(text, valid))]).tocsr()
    return x_train, x_valid


def text(r):
    return ((r["subject"] or "") + "\n" + r["text"])[:4096]


def joint(rows):
    groups = [("e-mail", ["enron", "spamassassin", "markup"], False),
              ("short", ["sms", "telegram_ru", "stankin"], True)]
    print("\none SVM C=1 per channel group, one out-of-fold threshold (0.15 % of each corpus's training ham):")
    for group, corpora, short in groups:
        mine = [r for r in rows if r["corpus"] in corpora]
        train = [r for r in mine if r["split"] == "train"]
        valid = [r for r in mine if r["split"] == "validation"]
        if not train or not valid:
            continue
        y_train = np.array([r["class"] == "spam" for r in train])
        y_valid = np.array([r["class"] == "spam" for r in valid])
        c_train = np.array([r["corpus"] for r in train])
        c_valid = np.array([r["corpus"] for r in valid])
        x_train, x_valid = tfidf(train, valid, short, text)
        scores = LinearSVC(C=1).fit(x_train, y_train).decision_function(x_valid)
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        oof = cross_val_predict(LinearSVC(C=1), x_train, y_train, cv=folds, method="decision_function")
        threshold = max(threshold_for(oof[c_train == c], y_train[c_train == c], 0.0015)
                        for c in corpora if (c_train == c).any() and (~y_train[c_train == c]).any())
        for corpus in corpora:
            m = c_valid == corpus
            if not y_valid[m].any():
                continue
            f1, fp = f1_at(scores[m], y_valid[m], threshold)
            oracle, oracle_fp = f1_at(scores[m], y_valid[m], threshold_for(scores[m], y_valid[m], 0.0015))
            print(f"{group:7s} {corpus:13s} shared threshold {f1:.3f} ({fp} FP of {int((~y_valid[m]).sum())})"
                  f"   per-corpus oracle@0.15% {oracle:.3f} ({oracle_fp} FP)", flush=True)


def main(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    print(f"{'corpus':13s} {'model':9s} {'val spam/ham':>13s} "
          + " ".join(f"oracle@{b * 100:.2f}%" for b in BUDGETS) + "  honest@0.15%")
    for corpus in CORPORA:
        mine = [r for r in rows if r["corpus"] == corpus]
        if not mine:
            continue
        short = mine[0]["channel"] != "email"

        train = [r for r in mine if r["split"] == "train"]
        valid = [r for r in mine if r["split"] == "validation"]
        y_train = np.array([r["class"] == "spam" for r in train])
        y_valid = np.array([r["class"] == "spam" for r in valid])
        x_train, x_valid = tfidf(train, valid, short, text)
        for name, make in [("LR C=100", lambda: LogisticRegression(C=100, max_iter=3000)),
                           ("SVM C=1", lambda: LinearSVC(C=1))]:
            scores = make().fit(x_train, y_train).decision_function(x_valid)
            cells = []
            for budget in BUDGETS:
                f1, fp = f1_at(scores, y_valid, threshold_for(scores, y_valid, budget))
                cells.append(f"{f1:.3f} ({fp:2d} FP)")
            folds = StratifiedKFold(5, shuffle=True, random_state=0)
            oof = cross_val_predict(make(), x_train, y_train, cv=folds, method="decision_function")
            f1, fp = f1_at(scores, y_valid, threshold_for(oof, y_train, 0.0015))
            print(f"{corpus:13s} {name:9s} {int(y_valid.sum()):6d}/{int((~y_valid).sum()):<6d} "
                  + " ".join(f"{c:>15s}" for c in cells) + f"  {f1:.3f} ({fp} FP)", flush=True)
    joint(rows)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/corpus.jsonl")
