"""One module per study: each trains its models, writes checkpoints and `summary.json` under results/<profile>/."""
from training.studies import attention, lora, svd

STUDIES = {"svd": svd, "lora": lora, "attention": attention}  # in dependency order: lora starts from svd's dense
