"""One module per study: each trains its models, writes checkpoints and `summary.json` under results/<profile>/."""
