"""Plain nn.Modules: the oracle networks and the flow-map autoencoder."""

from dsflow.models.autoencoder import FlowMapAutoencoder
from dsflow.models.lenet import LeNet5
from dsflow.models.resnet import ResNet18

__all__ = ["FlowMapAutoencoder", "LeNet5", "ResNet18"]
