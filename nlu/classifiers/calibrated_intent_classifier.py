"""Linear intent classifier over dense + sparse sentence features, with calibrated confidences."""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional, Text, Tuple, Type

import numpy as np
import scipy.sparse
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers import LABEL_RANKING_LENGTH
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.constants import DEFAULT_NLU_FALLBACK_INTENT_NAME as FALLBACK_INTENT_NAME
from rasa.nlu.featurizers.featurizer import Featurizer
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from rasa.utils.tensorflow.constants import RANKING_LENGTH

logger = logging.getLogger(__name__)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponents = np.exp(shifted)
    return exponents / exponents.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of held-out predictions."""
    from scipy.optimize import minimize_scalar

    def nll(log_temperature: float) -> float:
        probabilities = _softmax(logits / np.exp(log_temperature))
        return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-12)))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True
)
class CalibratedIntentClassifier(IntentClassifier, GraphComponent):
    """Multinomial logistic regression on sentence embeddings plus TF-IDF-weighted n-grams.

    Dense sentence embeddings carry meaning across paraphrases and languages; the sparse
    character/word n-grams of ``CountVectorsFeaturizer`` carry typos, transliteration and
    domain words. Confidences are temperature-scaled on cross-validated predictions, so a
    ``FallbackClassifier`` threshold means the same thing on every training run (see
    ``python -m nlu.calibration``). Trains in seconds on CPU, predicts in well under 1 ms.
    """

    # Bump when what persist() writes changes: the fingerprint then makes `rasa train` retrain
    # instead of reusing a model this code cannot load.
    FORMAT_VERSION = "2"
    MODEL_FILE = "classifier.skops"
    STATE_FILE = "state.json"
    IDF_FILE = "idf.npy"

    @classmethod
    def required_components(cls) -> List[Type]:
        return [Featurizer]

    @classmethod
    def fingerprint_addon(cls, config: Dict[Text, Any]) -> Optional[Text]:
        return f"{cls.__name__}-format-{cls.FORMAT_VERSION}"

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            # Inverse L2 regularisation strength of the logistic regression.
            "C": 10.0,
            # Weight of the dense block relative to the (L2-normalised) sparse block.
            "dense_weight": 1.0,
            "max_iter": 500,
            "tol": 1e-4,
            # "balanced" reweights rare intents; None trusts the data's frequencies.
            "class_weight": "balanced",
            # Intents that stand for "none of ours" (a background class trained on out-of-scope
            # examples); their probability is reported as `nlu_fallback`.
            "fallback_intents": ["out_of_scope"],
            # Folds used to fit the confidence temperature; 0 or 1 switches calibration off.
            "calibration_folds": 5,
            # Above this many examples one stratified 20% hold-out replaces the folds: the
            # temperature is one number and does not need k extra fits on a large data set.
            "calibration_max_examples": 4000,
            "random_state": 42,
            RANKING_LENGTH: LABEL_RANKING_LENGTH,
        }

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
    ) -> None:
        self._config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self._clf = None
        self._weights: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._idf: Optional[np.ndarray] = None
        self._temperature = 1.0
        self._labels: List[Text] = []
        # Feature widths seen in training: a message without some features (e.g. empty text
        # gets no n-grams) is padded with zeros instead of breaking the model.
        self._dense_width = 0
        self._sparse_width = 0

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> CalibratedIntentClassifier:
        return cls(config, model_storage, resource)

    # --- features -------------------------------------------------------------------------

    def _raw_features(self, messages: List[Message]) -> Tuple[np.ndarray, scipy.sparse.csr_matrix]:
        dense_rows, sparse_rows = [], []
        for message in messages:
            _, dense = message.get_dense_features(TEXT)
            _, sparse = message.get_sparse_features(TEXT)
            dense_rows.append(
                np.asarray(dense.features, dtype=np.float32).reshape(1, -1) if dense else None
            )
            sparse_rows.append(scipy.sparse.csr_matrix(sparse.features) if sparse else None)
        return (
            _stack_dense(dense_rows, self._dense_width),
            _stack_sparse(sparse_rows, self._sparse_width),
        )

    def _design_matrix(self, dense: np.ndarray, sparse: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
        blocks = []
        if dense.shape[1]:
            blocks.append(scipy.sparse.csr_matrix(dense * float(self._config["dense_weight"])))
        if sparse.shape[1]:
            weighted = sparse.copy().astype(np.float32)
            weighted.data = np.log1p(weighted.data)
            if self._idf is not None and self._idf.shape[0] == weighted.shape[1]:
                weighted = weighted.multiply(self._idf[None, :]).tocsr()
            norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
            weighted = scipy.sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ weighted
            blocks.append(weighted)
        if not blocks:
            return scipy.sparse.csr_matrix((dense.shape[0], 1), dtype=np.float32)
        return scipy.sparse.hstack(blocks).tocsr()

    def _new_model(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(
            C=float(self._config["C"]),
            max_iter=int(self._config["max_iter"]),
            tol=float(self._config["tol"]),
            class_weight=self._config["class_weight"],
            random_state=self._config["random_state"],
            solver="lbfgs",
            multi_class="multinomial",
        )

    # --- training -------------------------------------------------------------------------

    def train(self, training_data: TrainingData) -> Resource:
        examples = [e for e in training_data.intent_examples if e.get(INTENT) and e.get(TEXT)]
        labels = sorted({e.get(INTENT) for e in examples})
        if len(labels) < 2:
            logger.warning("CalibratedIntentClassifier needs at least two intents; skipping training.")
            return self._resource
        dense, sparse = self._raw_features(examples)
        self._dense_width, self._sparse_width = dense.shape[1], sparse.shape[1]
        if sparse.shape[1]:
            document_frequency = np.asarray((sparse > 0).sum(axis=0)).ravel()
            self._idf = (np.log((1 + sparse.shape[0]) / (1 + document_frequency)) + 1).astype(np.float32)
        X = self._design_matrix(dense, sparse)
        y = np.array([labels.index(e.get(INTENT)) for e in examples])
        self._labels = labels
        self._temperature = self._calibrate(X, y)
        self._clf = self._new_model().fit(X, y)
        self._weights = None
        self.persist()
        return self._resource

    def _calibrate(self, X: scipy.sparse.csr_matrix, y: np.ndarray) -> float:
        folds = int(self._config["calibration_folds"])
        smallest_class = int(np.bincount(y).min())
        if folds < 2 or smallest_class < 2:
            return 1.0
        from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

        if X.shape[0] > int(self._config["calibration_max_examples"]):
            splitter = StratifiedShuffleSplit(
                n_splits=1, test_size=0.2, random_state=self._config["random_state"]
            )
        else:
            splitter = StratifiedKFold(
                n_splits=min(folds, smallest_class), shuffle=True, random_state=self._config["random_state"]
            )
        logits = np.zeros((X.shape[0], len(self._labels)))
        held_out = np.zeros(X.shape[0], dtype=bool)
        for train_index, test_index in splitter.split(X, y):
            model = self._new_model().fit(X[train_index], y[train_index])
            fold_logits = np.full((len(test_index), len(self._labels)), -1e4)
            fold_logits[:, model.classes_] = _logits(_contiguous_weights(model), X[test_index])
            logits[test_index] = fold_logits
            held_out[test_index] = True
        temperature = fit_temperature(logits[held_out], y[held_out])
        logger.debug(f"CalibratedIntentClassifier: temperature {temperature:.3f}")
        return temperature

    # --- inference ------------------------------------------------------------------------

    def predict_probabilities(self, messages: List[Message]) -> np.ndarray:
        dense, sparse = self._raw_features(messages)
        if self._weights is None:
            self._weights = _contiguous_weights(self._clf)
        return _softmax(self._prediction_logits(dense, sparse) / self._temperature)

    def _prediction_logits(self, dense: np.ndarray, sparse: scipy.sparse.csr_matrix) -> np.ndarray:
        """``_logits(weights, _design_matrix(dense, sparse))`` without building the design matrix:
        the same weighting of the sparse counts, done on their non-zeros, times the matching rows
        of the weights. Building the sparse blocks cost more than the model for one message."""
        coef_t, intercept = self._weights
        dense_width = dense.shape[1]
        scores = np.zeros((dense.shape[0], coef_t.shape[1]), dtype=np.float64) + intercept
        if dense_width:
            scores += (dense * float(self._config["dense_weight"])) @ coef_t[:dense_width]
        if sparse.shape[1] and sparse.nnz:
            sparse = sparse.tocsr()
            values = np.log1p(sparse.data.astype(np.float32))
            if self._idf is not None and self._idf.shape[0] == sparse.shape[1]:
                values = values * self._idf[sparse.indices]
            sparse_weights = coef_t[dense_width:]
            for row in range(sparse.shape[0]):
                start, end = sparse.indptr[row], sparse.indptr[row + 1]
                if start == end:
                    continue
                row_values = values[start:end]
                norm = max(float(np.sqrt(np.dot(row_values, row_values))), 1e-12)
                scores[row] += (row_values / norm) @ sparse_weights[sparse.indices[start:end]]
        if scores.shape[1] == 1:  # scikit-learn keeps one column for two classes
            scores = np.hstack([-scores / 2, scores / 2])
        return scores

    def process(self, messages: List[Message]) -> List[Message]:
        if self._clf is None or not messages:
            return messages
        probabilities = self.predict_probabilities(messages)
        ranking_length = int(self._config[RANKING_LENGTH])
        for message, row in zip(messages, probabilities):
            ranking = self._ranking(row)
            message.set(INTENT, ranking[0], add_to_output=True)
            if ranking_length > 0:
                ranking = ranking[:ranking_length]
            message.set("intent_ranking", ranking, add_to_output=True)
        return messages

    def _ranking(self, row: np.ndarray) -> List[Dict[Text, Any]]:
        fallback_labels = set(self._config["fallback_intents"] or [])
        scores: Dict[Text, float] = {}
        for label, probability in zip(self._labels, row):
            name = FALLBACK_INTENT_NAME if label in fallback_labels else label
            scores[name] = scores.get(name, 0.0) + float(probability)
        return [
            {"name": name, "confidence": confidence}
            for name, confidence in sorted(scores.items(), key=lambda item: -item[1])
        ]

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    # --- persistence ----------------------------------------------------------------------

    def persist(self) -> None:
        import skops.io as sio

        with self._model_storage.write_to(self._resource) as directory:
            sio.dump(self._clf, directory / self.MODEL_FILE)
            if self._idf is not None:
                np.save(directory / self.IDF_FILE, self._idf)
            (directory / self.STATE_FILE).write_text(
                json.dumps(
                    {
                        "labels": self._labels,
                        "temperature": self._temperature,
                        "dense_width": self._dense_width,
                        "sparse_width": self._sparse_width,
                    },
                    ensure_ascii=False,
                ),
                encoding="utf-8",
            )

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> CalibratedIntentClassifier:
        import skops.io as sio

        component = cls(config, model_storage, resource)
        try:
            with model_storage.read_from(resource) as directory:
                model_file = directory / cls.MODEL_FILE
                component._clf = sio.load(model_file, trusted=sio.get_untrusted_types(file=model_file))
                state = json.loads((directory / cls.STATE_FILE).read_text(encoding="utf-8"))
                component._labels = list(state["labels"])
                component._temperature = float(state["temperature"])
                component._dense_width = int(state.get("dense_width", 0))
                component._sparse_width = int(state.get("sparse_width", 0))
                if (directory / cls.IDF_FILE).exists():
                    component._idf = np.load(directory / cls.IDF_FILE)
        except (ValueError, FileNotFoundError, KeyError):
            logger.warning("CalibratedIntentClassifier: no trained model found; it will predict nothing.")
        return component


def _contiguous_weights(model) -> Tuple[np.ndarray, np.ndarray]:
    """``coef_.T`` as contiguous memory, and the intercept.

    scikit-learn's ``decision_function`` multiplies the sparse X by ``coef_.T``, a transposed view
    that scipy copies into contiguous memory on every call (features x classes floats: tens of
    milliseconds per message on a large model); this copy is made once per model instead.
    """
    return np.ascontiguousarray(model.coef_.T), np.asarray(model.intercept_)


def _logits(weights: Tuple[np.ndarray, np.ndarray], X) -> np.ndarray:
    coef_t, intercept = weights
    scores = np.asarray(X @ coef_t) + intercept
    if scores.shape[1] == 1:  # scikit-learn keeps one column for two classes
        scores = np.hstack([-scores / 2, scores / 2])
    return scores


def _stack_dense(rows: List[Optional[np.ndarray]], width: int) -> np.ndarray:
    """Rows of one width; ``width`` 0 means "learn it from the rows" (training)."""
    width = width or next((row.shape[1] for row in rows if row is not None), 0)
    return np.vstack(
        [row if row is not None and row.shape[1] == width else np.zeros((1, width), np.float32) for row in rows]
    )


def _stack_sparse(rows: List[Optional[scipy.sparse.csr_matrix]], width: int) -> scipy.sparse.csr_matrix:
    width = width or next((row.shape[1] for row in rows if row is not None), 0)
    return scipy.sparse.vstack(
        [row if row is not None and row.shape[1] == width else scipy.sparse.csr_matrix((1, width)) for row in rows]
    ).tocsr()
