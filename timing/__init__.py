"""Timing, in one place: `measure` times one benchmark (and pools repeated runs), `pair` derives ratios of two
benchmarks' times, `decide` holds the statistics on timing rounds (numpy/scipy only: the report and the gate use it
without torch)."""
