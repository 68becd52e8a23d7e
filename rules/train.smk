# One PEFT adapter per run (mixture x recipe): TRL's SFTTrainer, or DPOTrainer on a preference
# mixture; a run may continue another run's adapter (init_from). Killed jobs resume. A run with
# judge rewards has its judges' files as inputs, so replacing a judge reruns it.


rule adapter:
    input:
        unpack(get_run_init),
        train=get_run_train,
        base=lambda w: base_input(w.run),
        code=script_code("adapter.py"),
        judge_models=get_run_judge_files,
    output:
        manifest="results/adapters/{run}/manifest.json",
        metrics="results/adapters/{run}/metrics.json",
    params:
        mixture=lambda w: config["runs"][w.run]["mixture"],
        recipe=lambda w: config["recipes"][config["runs"][w.run]["recipe"]],
        device=config["train"]["device"],
        processes=processes_for(config["train"]),
        strategy=config["train"]["strategy"],
        benchmark_dirs=list(benchmark_dirs(config)),
        chat_template_path=lambda w: base_config(config, GRAPH.base_of(w.run))["chat_template_path"],
        init_from=lambda w: config["runs"][w.run].get("init_from"),
        init_dir=lambda w: (f"results/adapters/{config['runs'][w.run]['init_from']}"
                            if config["runs"][w.run].get("init_from") else None),
        # judge rewards (deltaflow.training.judge_reward): each judge, its judgment cache, and how it
        # loads (the judge job's batch size and GGUF threads); None for a run without one
        judges=lambda w: run_judges(w.run),
        judge_cache=lambda w: f"results/adapters/.judge-cache/{w.run}" if run_judges(w.run) else None,
        judge_load=lambda w: ({"batch_size": config["eval"]["batch_size"], "threads": config["export"]["threads"]}
                              if run_judges(w.run) else None),
    log:
        "logs/adapters/{run}.log",
    threads: 2
    priority: 10  # before the eval jobs (rules/mixtures.smk says why)
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=config["train"]["gpus"],
    script:
        "../scripts/adapter.py"
