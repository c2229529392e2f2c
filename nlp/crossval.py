"""Cross-validated scores of the classical heads, printed by `intakebot nlp train`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from nlp.backend_classical import make_head
from nlp.backends import TASKS, Progress
from nlp.corpus import Example, for_task
from nlp.features import build_vectorizer
from nlp.normalize import normalize


def cross_validate(examples: list[Example], folds: int, progress: Progress | None = None
                   ) -> Iterator[str]:
    """One line per task: k-fold accuracy and macro-F1 of its head.

    The (unsupervised) features are fitted once on every text; only the heads are refitted per
    fold, which keeps this to seconds and leaks no labels.
    """
    row = {ex.text: i for i, ex in enumerate(examples)}
    features = build_vectorizer().fit_transform([normalize(ex.text) for ex in examples]).tocsr()
    for n, task in enumerate(TASKS):
        if progress:
            progress(f"cv {task}", n, len(TASKS))
        raw, labels = for_task(examples, task)
        x = features[[row[t] for t in raw]]
        y = np.asarray(labels)
        predicted = np.empty_like(y)
        k = min(folds, int(np.unique(y, return_counts=True)[1].min()))
        if k < 2:
            yield f"{task:<12} too few examples per class for cross-validation"
            continue
        for train_idx, test_idx in StratifiedKFold(k, shuffle=True, random_state=0).split(x, y):
            head = make_head(task).fit(x[train_idx], y[train_idx])
            predicted[test_idx] = head.predict(x[test_idx])
        yield (f"{task:<12} {k}-fold accuracy {accuracy_score(y, predicted):.3f}  "
               f"macro-F1 {f1_score(y, predicted, average='macro'):.3f}  (n={len(y)})")
