"""The `transformers` backend: one fine-tuned sequence classifier per task, from local directories.

An operator points the backend at a model directory laid out as ``{path}/{task}/`` (one Hugging
Face model + tokenizer per task, the labels in ``config.json``'s ``id2label``). Tasks without a
sub-directory are left to the default backend. Nothing is ever downloaded: every load passes
``local_files_only``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# Heavy imports live here, in the only module that needs them: importing nlp does not load torch.
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from nlp.backends import TASKS, Progress, Scores, TriageBackend
from nlp.corpus import Example, for_task
from nlp.labels import SUBCATEGORIES, Category, Emotion, Intent, Priority
from nlp.normalize import normalize

MAX_LENGTH: Final = 256  # tokens; complaints longer than this are triaged on their opening
DEFAULT_TRAIN_TASKS: Final = ("intent", "category", "emotion")

# Labels a model may predict per task; anything else could not be mapped onto the Triage result.
_VOCABULARY: Final[Mapping[str, frozenset[str]]] = {
    "intent": frozenset(i.value for i in Intent),
    "category": frozenset({c.value for c in Category} | {"none"}),
    "subcategory": frozenset({s for subs in SUBCATEGORIES.values() for s in subs} | {"none"}),
    "emotion": frozenset(e.value for e in Emotion),
    "priority": frozenset(p.value for p in Priority),
}


class TransformersModelError(ValueError):
    """A model directory holds nothing this backend can load, or a model's labels do not fit."""


@dataclass(frozen=True, slots=True)
class TaskModel:
    """A sequence classifier, its tokenizer and its labels in output order."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    labels: tuple[str, ...]


class TransformersBackend(TriageBackend):
    """Per-task AutoModelForSequenceClassification models scored on CPU (or wherever they live).

    Args:
        models: The classifier of each task; tasks absent here are absent from the scores.
        batch_size: Texts per forward pass at inference.
    """

    name = "transformers"

    def __init__(self, models: Mapping[str, TaskModel], batch_size: int = 32) -> None:
        unknown = set(models) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; tasks are {TASKS}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        # Keep the triage's task order whatever order the caller gave.
        self._models = {task: models[task] for task in TASKS if task in models}
        self._batch_size = batch_size

    @classmethod
    def load(cls, path: Path, batch_size: int = 32) -> TransformersBackend:
        """Load every ``{path}/{task}/`` sub-directory that holds a model.

        Raises:
            TransformersModelError: path holds no task sub-directory with a config.json, or a
                model's id2label has labels outside the task's vocabulary.
        """
        models = {
            task: _load_task(path / task, task)
            for task in TASKS
            if (path / task / "config.json").is_file()
        }
        if not models:
            raise TransformersModelError(
                f"no transformers model in {path}: expected sub-directories named after tasks "
                f"({', '.join(TASKS)}), each with config.json, model weights and tokenizer files"
            )
        return cls(models, batch_size=batch_size)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self._models)

    def labels(self, task: str) -> tuple[str, ...]:
        """The labels a task's model predicts, in its output order."""
        return self._models[task].labels

    def _score(self, texts: list[str]) -> list[Scores]:
        results: list[Scores] = [{} for _ in texts]
        # Batches of similar length waste little compute on padding; results go back by index.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for task, tm in self._models.items():
                for start in range(0, len(order), self._batch_size):
                    batch = order[start : start + self._batch_size]
                    enc = _encode(tm.tokenizer, [texts[i] for i in batch])
                    logits = tm.model(**enc).logits
                    probs: list[list[float]] = torch.softmax(logits.float(), dim=-1).tolist()
                    for i, row in zip(batch, probs, strict=True):
                        results[i][task] = dict(zip(tm.labels, row, strict=True))
        return results

    def save(self, directory: Path) -> None:
        """Write each task's model and tokenizer to ``{directory}/{task}/``."""
        for task, tm in self._models.items():
            target = directory / task
            target.mkdir(parents=True, exist_ok=True)
            tm.model.save_pretrained(target)
            tm.tokenizer.save_pretrained(target)


def train_transformers(
    examples: Sequence[Example],
    base_model: Path,
    out_dir: Path,
    tasks: Iterable[str] = DEFAULT_TRAIN_TASKS,
    *,
    epochs: int = 3,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    warmup_ratio: float = 0.1,
    seed: int = 0,
    progress: Progress | None = None,
) -> TransformersBackend:
    """Fine-tune a local base model once per task and save each to ``{out_dir}/{task}/``.

    Texts are normalised as at inference. Other task directories already in out_dir are kept, so
    the returned backend (loaded back from out_dir) scores those tasks too.

    Args:
        examples: Labelled corpus (nlp.corpus.load()); each task uses the examples that label it.
        base_model: Local directory of a pretrained encoder and its tokenizer (e.g. a Chinese
            RoBERTa); a fresh classification head is put on top for each task.
        out_dir: Where the fine-tuned models go.
        tasks: Tasks to fine-tune, a subset of nlp.backends.TASKS.
        epochs: Passes over each task's examples.
        batch_size: Examples per optimiser step.
        learning_rate: Peak AdamW learning rate of the linear warm-up/decay schedule.
        warmup_ratio: Share of the steps spent warming up.
        seed: Seeds head initialisation and shuffling; the global torch RNG is left as it was.
        progress: Called with (task, steps done, total steps) after every optimiser step.

    Raises:
        TransformersModelError: base_model is not a local model directory.
        ValueError: An unknown task, or a task with fewer than two labels in the examples.
    """
    tasks = tuple(tasks)
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be at least 1")
    if not (base_model / "config.json").is_file():
        raise TransformersModelError(f"no base model in {base_model}: config.json is missing")
    data = {task: for_task(list(examples), task) for task in tasks}
    for task, (_, labels) in data.items():
        if len(set(labels)) < 2:
            raise ValueError(f"task {task}: the examples carry fewer than two labels")
    for task, (texts, labels) in data.items():
        target = out_dir / task
        target.mkdir(parents=True, exist_ok=True)
        model, tokenizer = _fine_tune(
            [normalize(t) for t in texts], labels, base_model,
            task=task, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            warmup_ratio=warmup_ratio, seed=seed, progress=progress,
        )
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    return TransformersBackend.load(out_dir)


def _fine_tune(
    texts: list[str],
    labels: list[str],
    base_model: Path,
    *,
    task: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    warmup_ratio: float,
    seed: int,
    progress: Progress | None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    names = sorted(set(labels))
    label2id = {name: i for i, name in enumerate(names)}
    targets = torch.tensor([label2id[lab] for lab in labels])
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    total = steps_per_epoch * epochs
    # fork_rng restores the caller's RNG state afterwards: training is reproducible from `seed`
    # without reseeding the process for everyone else.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            base_model,
            local_files_only=True,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id=label2id,
            problem_type="single_label_classification",
            # The base may itself be a classifier with another label count: replace its head.
            ignore_mismatched_sizes=True,
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
        schedule = _linear_schedule(optimizer, int(total * warmup_ratio), total)
        shuffler = torch.Generator().manual_seed(seed)
        model.train()
        step = 0
        for _ in range(epochs):
            perm: list[int] = torch.randperm(len(texts), generator=shuffler).tolist()
            for start in range(0, len(perm), batch_size):
                batch = perm[start : start + batch_size]
                enc = _encode(tokenizer, [texts[i] for i in batch])
                loss = model(**enc, labels=targets[batch]).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                step += 1
                if progress is not None:
                    progress(task, step, total)
        model.eval()
    return model, tokenizer


def _linear_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak rate, then linear decay to zero at the last step."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> Any:
    return tokenizer(
        texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )


def _load_task(directory: Path, task: str) -> TaskModel:
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            directory, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise TransformersModelError(f"cannot load the {task} model in {directory}: {exc}") from exc
    model.eval()
    id2label: dict[int, str] = model.config.id2label
    if sorted(id2label) != list(range(model.config.num_labels)):
        raise TransformersModelError(
            f"{directory}/config.json: id2label does not name every output of the model"
        )
    labels = tuple(id2label[i] for i in range(len(id2label)))
    stray = set(labels) - _VOCABULARY[task]
    if stray:
        raise TransformersModelError(
            f"{directory}/config.json: id2label has {sorted(stray)}, not {task} labels "
            f"({', '.join(sorted(_VOCABULARY[task]))})"
        )
    return TaskModel(model=model, tokenizer=tokenizer, labels=labels)
