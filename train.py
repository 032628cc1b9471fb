"""Train an oracle classifier: ``python train.py fit --config configs/train/lenet_mnist.yaml``."""

from dsflow.cli import train_main, run_script

if __name__ == "__main__":
    run_script(train_main)
