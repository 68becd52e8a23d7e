# The base model, materialized once as safetensors under results/models/base/.


rule base_model:
    input:
        code=script_code("base_model.py"),
    output:
        manifest=BASE,
    params:
        source=config["base_model"]["source"],
    log:
        "logs/base_model.log",
    resources:
        mem_mb=6000,
        runtime=30,
    script:
        "../scripts/base_model.py"
