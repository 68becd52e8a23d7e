"""Benchmarks: what a benchmark is (spec), where its items come from (registry, loaders, items,
lmeval), how a model is run on them (raw_outputs, run, shared_context, vllm_backend) and how its
outputs are scored (scoring, judging)."""
