"""Breast-cancer classifier for the UCI Wisconsin (original) cytology scores.

>>> from oncology_model import Classifier, Tumor
>>> Classifier().predict(Tumor(4, 1, 2, 1, 2, 1, 1, 1, 1))
<Prediction.BENIGN: 'benign'>
"""

from oncology_model.classifier import Classifier
from oncology_model.datamodel import FEATURES, InvalidTumorError, Prediction, Tumor
from oncology_model.integrity import ArtifactError

__all__ = ["FEATURES", "ArtifactError", "Classifier", "InvalidTumorError", "Prediction", "Tumor"]
