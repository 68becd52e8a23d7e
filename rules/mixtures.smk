# SFT mixtures: weighted components, every row tagged with its mixture and component.


rule mixture:
    input:
        rows=get_mixture_rows,
        base=BASE,
        code=stage_code("mixture"),
    output:
        train="results/mixtures/{mixture}/train.jsonl",
        manifest="results/mixtures/{mixture}/manifest.json",
    params:
        spec=lambda w: config["mixtures"][w.mixture],
    log:
        "logs/mixtures/{mixture}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/build_mixture.py"
