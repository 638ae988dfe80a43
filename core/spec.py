"""Facts about the harness that every layer reads, written down once."""

# The inference benchmarks' axes: names as they appear in ids, extra_info, profiles and tables.
DTYPES = ("fp32", "bf16", "fp16")
MODES = ("eager", "compiled")
