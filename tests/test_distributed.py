"""Training on several processes (DDP over gloo on CPU) trains as one process does."""

import pytest
from conftest import config_errors, tiny_config, tiny_random_model

from deltaflow.config import schema_defaults
from deltaflow.training.args import _training_args
from deltaflow.training.world import processes_for


def test_processes_default_to_one_per_gpu_on_cuda():
    assert processes_for({"device": "cpu", "gpus": 0, "processes": None}) == 1
    assert processes_for({"device": "cuda", "gpus": 4, "processes": None}) == 4
    assert processes_for({"device": "cuda", "gpus": 0, "processes": None}) == 1
    assert processes_for({"device": "cpu", "gpus": 0, "processes": 2}) == 2


def test_parallel_training_arguments(tmp_path):
    recipe = schema_defaults("recipe", {"batch_size": 8, "max_steps": 4})
    one = _training_args(recipe, "cpu", tmp_path, False, 4, False)
    assert one["per_device_train_batch_size"] == 8 and "ddp_backend" not in one
    two = _training_args(recipe, "cpu", tmp_path, False, 4, False, world=2)
    assert two["per_device_train_batch_size"] == 4 and two["ddp_backend"] == "gloo"
    fsdp = _training_args(recipe, "cuda", tmp_path, False, 4, False, world=4, strategy="fsdp")
    assert fsdp["per_device_train_batch_size"] == 2 and fsdp["ddp_backend"] == "nccl"
    assert (
        fsdp["fsdp"] == "full_shard auto_wrap"
        and fsdp["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    )


def test_parallel_config_errors():
    cfg = tiny_config()
    cfg["train"] = {"device": "cpu", "processes": 3, "strategy": "fsdp"}
    msg = config_errors(cfg)
    assert "config key 'train.strategy': fsdp shards the model over GPUs" in msg
    assert "recipes.tiny_lora.batch_size" in msg and "does not split over 3 training processes" in msg
    cfg["train"] = {"device": "cuda", "gpus": 1, "strategy": "fsdp"}
    assert "fsdp shards the model over the training processes and this job trains on one" in config_errors(
        cfg
    )


@pytest.mark.e2e
def test_fsdp_that_accelerate_does_not_turn_on_is_refused_not_run_as_ddp(tmp_path, capfd):
    """Past the config check (which refuses fsdp on cpu), two CPU processes asked for fsdp: on
    CPU accelerate sets up plain multi-CPU DDP, a whole model per process, so training stops
    with an error saying so instead of running unsharded."""
    from deltaflow.errors import DeltaflowError
    from deltaflow.io import write_jsonl
    from deltaflow.training.launch import launch

    base = tiny_random_model(tmp_path / "base")
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
            for i in range(8)]  # fmt: skip
    write_jsonl(tmp_path / "rows.jsonl", rows)
    recipe = schema_defaults("recipe", {"method": "full", "max_steps": 2, "batch_size": 2, "max_length": 32})
    job = {"base_dir": str(base), "recipe": recipe, "out_dir": str(tmp_path / "out"), "device": "cpu",
           "rows_file": str(tmp_path / "rows.jsonl"), "strategy": "fsdp"}  # fmt: skip
    with pytest.raises(DeltaflowError, match="distributed training"):
        launch(job, 2, tmp_path / "launch")
    err = capfd.readouterr().err
    assert "train.strategy: fsdp, but accelerate set up DistributedType.MULTI_CPU (FSDP needs GPUs)" in err
    assert not (tmp_path / "out/model.safetensors").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("sampling", ["group_by_length", "random"])
def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path, sampling):
    """The tiny model, 8 steps of a global batch of 4: one process, and two processes (gloo)
    with 2 rows each, log the same losses and tokens and save the same adapter."""
    from safetensors.torch import load_file

    from deltaflow.bench.synthetic_tasks import generate_task
    from deltaflow.io import write_jsonl
    from deltaflow.training.launch import launch
    from deltaflow.training.runner import train_adapter

    base = tiny_random_model(tmp_path / "base")
    rows = [
        r
        for r in generate_task("arithmetic", train_rows=40, eval_rows=0, seed=0, name="a")
        if r["split"] == "train"
    ]
    recipe = schema_defaults(
        "recipe",
        {
            "r": 4,
            "alpha": 8,
            "learning_rate": 1e-3,
            "max_steps": 8,
            "batch_size": 4,
            "max_length": 64,
            "sampling": sampling,
            "logging_steps": 1,
            "seed": 0,
            "save_every": 4,
        },
    )
    one = train_adapter(base, rows, recipe, tmp_path / "one", device="cpu")
    write_jsonl(tmp_path / "rows.jsonl", rows)
    two = launch(
        {
            "base_dir": str(base),
            "recipe": recipe,
            "out_dir": str(tmp_path / "two"),
            "device": "cpu",
            "rows_file": str(tmp_path / "rows.jsonl"),
            "resume_dir": str(tmp_path / "resume"),
            "resume_key": "k",
        },
        2,
        tmp_path / "launch",
    )
    assert one["processes"] == 1 and two["processes"] == 2 and two["strategy"] == "ddp"
    assert [c["step"] for c in two["loss_curve"]] == list(range(1, 9))
    assert [c["loss"] for c in two["loss_curve"]] == pytest.approx(
        [c["loss"] for c in one["loss_curve"]], rel=1e-4
    )
    assert two["tokens_seen"] == one["tokens_seen"]
    assert [a["step"] for a in two["checkpoints"]] == [4] and (tmp_path / "two/checkpoints/step4").is_dir()
    w1 = load_file(tmp_path / "one/adapter_model.safetensors")
    w2 = load_file(tmp_path / "two/adapter_model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        assert (w1[k] - w2[k]).abs().max() < 1e-4, k


@pytest.mark.e2e
def test_the_adapter_rule_trains_on_two_processes(tiny_workflow, tmp_path):
    """`train.processes: 2` reruns the adapter job (its params changed) through torchrun inside
    the job; the adapter's losses equal the one-process run's, step for step."""
    import json

    from conftest import copy_run, write_config

    run = copy_run(tiny_workflow, tmp_path / "ddp")
    run.cfg["train"] = {**run.cfg.get("train", {}), "processes": 2}
    write_config(run.work, run.cfg)
    target = "results/adapters/run_a/metrics.json"
    run.snakemake(target)
    two = json.loads((run.work / target).read_text())
    one = json.loads((tiny_workflow.work / target).read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    assert [c["loss"] for c in two["loss_curve"]] == pytest.approx(
        [c["loss"] for c in one["loss_curve"]], rel=1e-4
    )
    log = (run.work / "logs/adapters/run_a.log").read_text()
    assert "training on 2 processes (ddp)" in log and "rank1" in log
    assert not (run.work / "results/adapters/.resume").exists()


def test_vllm_splits_a_model_over_the_eval_jobs_gpus():
    """eval.gpus on cuda becomes vLLM's tensor_parallel_size (the worker's VLLM arguments);
    one GPU or CPU leaves it out, so those eval cache keys do not change."""
    from deltaflow.bench.vllm_backend import vllm_kwargs

    assert vllm_kwargs(None, None, {"tensor_parallel_size": 4})["tensor_parallel_size"] == 4
    assert "tensor_parallel_size" not in vllm_kwargs(None, None, {})
    assert "tensor_parallel_size" not in vllm_kwargs(None, None, {"tensor_parallel_size": 1})
