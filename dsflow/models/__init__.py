"""Plain nn.Modules: the oracle networks."""

from dsflow.models.lenet import LeNet5
from dsflow.models.resnet import ResNet18

__all__ = ["LeNet5", "ResNet18"]
