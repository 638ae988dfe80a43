"""The bottom layer every other package may use: atomic files, the benchmark JSON contract, variant ids, the
studies and methods as data. It imports nothing else of the project, and no torch, so the report can use it."""
