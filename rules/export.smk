# GGUF exports of the merged adapters and whole models with llama.cpp's converter and quantizer, and a parity
# check of every GGUF against the HF model it came from (its own report, results/tables/gguf_parity.md).
PARITY_PROMPTS = config["export"]["parity"]["prompts"] or os.path.relpath(
    Path(workflow.basedir) / "config" / "parity_prompts.txt")


rule gguf_convert:
    input:
        merged=lambda w: exported_manifest(w.export),
        code=script_code("gguf_convert.py"),
    output:
        gguf="results/gguf/{export}/model-{ctype}.gguf",
        manifest="results/gguf/{export}/model-{ctype}.json",
    params:
        model_dir=lambda w: exported_dir(w.export),
    log:
        "logs/gguf/{export}.{ctype}.log",
    priority: 5  # models to evaluate come before the evals (two run side by side)
    resources:
        mem_mb=6000,
        runtime=30,
    script:
        "../scripts/gguf_convert.py"


rule gguf_quantize:
    input:
        source="results/gguf/{export}/model-f16.gguf",
        code=script_code("gguf_quantize.py"),
    output:
        gguf="results/gguf/{export}/model-{qtype}.gguf",
        manifest="results/gguf/{export}/model-{qtype}.json",
    log:
        "logs/gguf/{export}.{qtype}.log",
    threads: config["export"]["threads"]
    priority: 5  # models to evaluate come before the evals (two run side by side)
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/gguf_quantize.py"


rule gguf_parity:
    input:
        merged=lambda w: exported_manifest(w.export),
        gguf="results/gguf/{export}/model-{gtype}.gguf",
        prompts=PARITY_PROMPTS,
        code=script_code("gguf_parity.py"),
    output:
        "results/gguf/{export}/parity-{gtype}.json",
    params:
        model_dir=lambda w: exported_dir(w.export),
        thresholds=config["export"]["parity"]["thresholds"],
        max_new_tokens=config["export"]["parity"]["max_new_tokens"],
    log:
        "logs/gguf/{export}.{gtype}.parity.log",
    threads: config["export"]["threads"]
    resources:
        mem_mb=6000,
        runtime=30,
    script:
        "../scripts/gguf_parity.py"


rule gguf_parity_report:
    input:
        reports=parity_reports(),
        models=expand("results/gguf/{export}/model-{gtype}.json", export=EXPORTED, gtype=GGUF_TYPES),
        code=script_code("gguf_parity_report.py"),
    output:
        md=report("results/tables/gguf_parity.md", caption="report/gguf_parity.rst", category="Tables"),
        csv="results/tables/gguf_parity.csv",
    log:
        "logs/gguf/parity_report.log",
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/gguf_parity_report.py"
