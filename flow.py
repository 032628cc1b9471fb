"""Run a dataset gradient flow: ``python flow.py fit --config configs/flow/gaussians_2d.yaml``."""

from dsflow.cli import flow_main, run_script

if __name__ == "__main__":
    run_script(flow_main)
