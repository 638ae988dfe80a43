"""Facts about the harness that every layer reads, written down once."""

# The inference benchmarks' axes: names as they appear in ids, extra_info, profiles and tables.
DTYPES = ("fp32", "bf16", "fp16")
MODES = ("eager", "compiled")

# The studies, the methods each trains (`method` of a variant, core/variants.py) and where attention factors start.
STUDIES = ("svd", "lora", "attention")
METHODS = {"svd": ("dense", "svd"), "lora": ("pretrained", "head", "full", "scratch", "lora"),
           "attention": ("dense", "svd")}
INITS = ("random", "trained")
# What a benchmark times (extra_info `kind`): a model's forward pass, one training step, the bare matrix products of
# the dense or factored chain, one attention block.
KINDS = ("infer", "train_step", "gemm_dense", "gemm_factored", "attention_block")
