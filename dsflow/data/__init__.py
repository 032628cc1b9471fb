"""Datasets and LightningDataModules."""

from dsflow.data.base import DatasetSource, LabeledData
from dsflow.data.pair import FlowDataModule
from dsflow.data.swiss_roll import SwissRoll
from dsflow.data.synthetic import GaussianMixture

__all__ = ["DatasetSource", "FlowDataModule", "GaussianMixture", "LabeledData", "SwissRoll"]
