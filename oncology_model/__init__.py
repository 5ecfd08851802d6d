"""Breast-cancer classifier for the UCI Wisconsin (original) cytology scores.

>>> from oncology_model import Classifier, Tumor
>>> Classifier().predict(Tumor(4, 1, 2, 1, 2, 1, 1, 1, 1))
<Prediction.BENIGN: 'benign'>
"""

import os

# ONNX Runtime (1.29+) starts a telemetry uploader when it is imported: it would send usage events
# and persist a device id under $XDG_CACHE_HOME or ~/.cache, warning in every process where that is
# read-only (as in the pod). Opt out before any module of this package imports it; a value the
# user set wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from oncology_model.classifier import Classifier
from oncology_model.datamodel import FEATURES, InvalidTumorError, Prediction, Tumor
from oncology_model.integrity import ArtifactError

__all__ = ["FEATURES", "ArtifactError", "Classifier", "InvalidTumorError", "Prediction", "Tumor"]
