"""Training: backbone, head, model (strategy), imbalance, zero (DeepSpeed), the trainer and its checkpoints, several
processes (distributed); run.py is one training run."""
