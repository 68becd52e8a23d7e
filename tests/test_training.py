"""Recipe -> PEFT/transformers settings (the training itself runs in the e2e tests)."""
import pytest

from deltaflow.errors import DeltaflowError
from deltaflow.training import load_base_for_training, peft_config_for

RECIPE = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


def test_lora_dora_rslora_configs():
    lora = peft_config_for({**RECIPE, "method": "lora"})
    assert not lora.use_dora and not lora.use_rslora and lora.target_modules == "all-linear"
    dora = peft_config_for({**RECIPE, "method": "dora", "use_rslora": True})
    assert dora.use_dora and dora.use_rslora and dora.r == 4 and dora.lora_alpha == 8


def test_qlora_on_cpu_is_refused_before_loading_anything(tmp_path):
    # tmp_path holds no model: the error must come before any load is attempted
    with pytest.raises(DeltaflowError, match=r"QLoRA \(load_in_4bit\) needs a CUDA GPU.*train.device: cuda"):
        load_base_for_training(tmp_path, {**RECIPE, "load_in_4bit": True}, "cpu")
