# Raw sources normalized to deltaflow's row schema; rejected rows kept, never dropped silently.


rule dataset:
    input:
        raw=get_dataset_input,
        code=script_code("dataset.py"),
    output:
        rows="results/data/{dataset}/rows.jsonl",
        rejected="results/data/{dataset}/rejected.jsonl",
        manifest="results/data/{dataset}/manifest.json",
    params:
        spec=lambda w: dataset_spec(w.dataset),
    log:
        "logs/data/{dataset}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/dataset.py"
