# The base model, materialized once as safetensors under results/models/base/, and the models we
# did not train (`models:`), imported once each under results/models/outside/<name>/.


rule base_model:
    input:
        code=script_code("base_model.py"),
    output:
        manifest=BASE,
    params:
        # a tokenizer from another source goes with the weights' source (unset: the same params)
        source={**config["base_model"]["source"],
                **({"tokenizer": config["base_model"]["tokenizer"]} if config["base_model"].get("tokenizer") else {})},
    log:
        "logs/base_model.log",
    resources:
        mem_mb=6000,
        runtime=30,
    script:
        "../scripts/base_model.py"


# every other base (base_models:), the same way under results/models/bases/<name>/
rule other_base_model:
    input:
        code=script_code("base_model.py"),
    output:
        manifest="results/models/bases/{base}/manifest.json",
    wildcard_constraints:
        base=_alternatives([b for b in BASES if b != DEFAULT_BASE]) or "(?!)",
    params:
        source=lambda w: {**base_config(config, w.base)["source"],
                          **({"tokenizer": base_config(config, w.base)["tokenizer"]}
                             if base_config(config, w.base).get("tokenizer") else {})},
    log:
        "logs/bases/{base}.log",
    resources:
        mem_mb=6000,
        runtime=30,
    script:
        "../scripts/base_model.py"


rule outside_model:
    input:
        base=lambda w: base_input(w.outside),
        weights=outside_import_inputs,
        code=script_code("outside_model.py"),
    output:
        manifest="results/models/outside/{outside}/manifest.json",
    params:
        spec=lambda w: outside_import_spec(w.outside),
    log:
        "logs/models/outside/{outside}.log",
    resources:
        mem_mb=6000,
        runtime=30,
    script:
        "../scripts/outside_model.py"
