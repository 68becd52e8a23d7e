# One LoRA adapter per run (mixture x recipe), trained with TRL's SFTTrainer.


rule adapter:
    input:
        train=get_run_train,
        base=BASE,
        code=stage_code("adapter"),
    output:
        manifest="results/adapters/{run}/manifest.json",
        metrics="results/adapters/{run}/metrics.json",
    params:
        mixture=lambda w: config["runs"][w.run]["mixture"],
        recipe=lambda w: config["recipes"][config["runs"][w.run]["recipe"]],
        device=config["train"]["device"],
        chat_template_path=config["base_model"]["chat_template_path"],
    log:
        "logs/adapters/{run}.log",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=config["train"]["gpus"],
    script:
        "../scripts/train_adapter.py"
