# Adapters made from adapters (PEFT add_weighted_adapter): `merges:` combinations (linear, TIES,
# DARE, ...) and coefficient-sweep arms `<model>.x<coef>`, or of whole models (method full runs,
# mergekit); and full models (merge_and_unload) for the adapters `export:` lists, which the GGUF
# export (rules/export.smk) reads.


rule merge_adapters:
    input:
        adapters=get_merge_inputs,
        base=lambda w: base_input(w.merge),
        code=script_code("merge_adapters.py"),
    output:
        manifest="results/merges/{merge}/manifest.json",
    params:
        spec=lambda w: MERGES[w.merge],
        adapter_dirs=lambda w: {m: model_weights_dir(m) for m in MERGES[w.merge]["adapters"]},
        form=lambda w: GRAPH.node(w.merge).form,
    log:
        "logs/merges/{merge}.log",
    priority: 5  # models to evaluate come before the evals (two run side by side)
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/merge_adapters.py"


rule merge_full:
    input:
        adapter=lambda w: model_adapter_manifest(w.export),
        base=lambda w: base_input(w.export),
        code=script_code("merge_full.py"),
    output:
        manifest="results/models/merged/{export}/manifest.json",
    wildcard_constraints:
        export=_alternatives([m for m in EXPORTED if GRAPH.node(m).form == "adapter"]) or "(?!)",
    params:
        adapter_dir=lambda w: model_adapter_dir(w.export),
    log:
        "logs/merges/{export}.merged.log",
    priority: 5  # models to evaluate come before the evals (two run side by side)
    resources:
        mem_mb=6000,
        runtime=20,
    script:
        "../scripts/merge_full.py"
