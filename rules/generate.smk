# Model-written training data (deltaflow.generation): a model answers a prompt set and the
# answers become a dataset results/data/<generation>/ that mixtures name like any other. One job
# per generation; its model loads once (twice for pairs from two models), and its outputs are
# cached by content and resumed by chunks like an eval's (results/generations/.cache).


rule generate:
    input:
        unpack(get_generation_input),
    output:
        rows="results/data/{generation}/rows.jsonl",
        rejected="results/data/{generation}/rejected.jsonl",
        manifest="results/data/{generation}/manifest.json",
    params:
        spec=lambda w: GENERATIONS[w.generation],
        models=lambda w: generation_models(w.generation),
        verifier=lambda w: generation_verifier(w.generation),
        origin=lambda w: ORIGINS.dataset(w.generation).to_dict(),
        batch_size=config["eval"]["batch_size"],
        device=config["eval"]["device"],
        chunk_size=config["eval"]["chunk_size"],
        backend=config["eval"]["backend"],
        vllm_python=config["eval"]["vllm"].get("python"),
        vllm_options={k: v for k, v in config["eval"]["vllm"].items() if k != "python"},
        cache_dir="results/generations/.cache",
    log:
        "logs/data/{generation}.generate.log",
    threads: 2
    # the training that reads these rows waits on this job: before the evals
    priority: 10
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=config["eval"]["gpus"],
    script:
        "../scripts/generate.py"
