"""A judge reward steers RL training: a tiny judge trained to rate longer answers higher raises
the completion length under grpo, rloo and online DPO, and the same judge with a negative weight
(a penalty) lowers it. Both models are real tiny Llamas fine-tuned here with TRL's SFTTrainer: the
judge on the reward's own prompt (judging._prompt with the reward's template), rated 1 + the
answer's word count; the policy on short answers of 1-3 words, so its samples vary in length."""

import random
import re

import pytest
from conftest import REPO, save_tiny_llama, tiny_random_model

from deltaflow.bench import judging
from deltaflow.bench.raw_outputs import ref_identity
from deltaflow.training.judge_reward import JudgeReward

TEMPLATE = "Q: {{question}}\nA: {{answer}}\n"  # short: the judge trains on it in seconds
WORDS = sorted(
    {w for w in re.findall(r"[a-z]+", (REPO / "tests/fixtures/tiny_corpus.txt").read_text()) if len(w) > 2}
)


def sft(model_dir, rows: list[dict], steps: int):
    """TRL's SFTTrainer on prompt/completion rows (loss on the completion only), saved in place."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    args = SFTConfig(
        output_dir=str(model_dir / "sft"), max_steps=steps, per_device_train_batch_size=32,
        learning_rate=3e-3, lr_scheduler_type="constant", logging_steps=steps, report_to=[],
        save_strategy="no", use_cpu=True, completion_only_loss=True, seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    trainer.train()
    trainer.model.save_pretrained(model_dir)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="module")
def length_judge(tmp_path_factory):
    """A judge whose rubric rating is 1 + the answer's word count (0-8 words)."""
    judge = save_tiny_llama(tmp_path_factory.mktemp("length") / "judge")
    s = judging.judge_settings({"kind": "rubric", "template": TEMPLATE})
    rng, rows = random.Random(0), []
    for _ in range(32 * 150):
        n = rng.randint(0, 8)
        prompt = judging._prompt(
            s, question=f"Tell me about {rng.choice(WORDS)}.", answer=words(rng, n), reference=""
        )
        rows.append({"prompt": prompt, "completion": str(1 + n)})
    sft(judge, rows, steps=150)
    return judge


@pytest.fixture(scope="module")
def short_policy(tmp_path_factory):
    """The tiny chat model, taught to answer in 1-3 words and stop."""
    policy = tiny_random_model(tmp_path_factory.mktemp("length") / "policy")
    rng = random.Random(1)
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Tell me about {rng.choice(WORDS)}."}],
            "completion": [{"role": "assistant", "content": words(rng, rng.randint(1, 3))}],
        }
        for _ in range(32 * 100)
    ]
    sft(policy, rows, steps=100)
    return policy


def judge_spec(judge) -> dict:
    return {"kind": "rubric", "path": str(judge), "rating": "expected", "template": TEMPLATE}


def test_the_trained_judge_rates_longer_answers_higher(length_judge, tmp_path):
    ref = {"path": str(length_judge)}
    reward = JudgeReward(
        "length",
        judge_spec(length_judge),
        ref,
        ref_identity(ref, None),
        cache_dir=tmp_path,
        load={"device": "cpu", "batch_size": 16, "threads": 1, "base_dir": str(length_judge)},
    )
    answers = [" ".join(WORDS[100 : 100 + n]) for n in (0, 2, 4, 6, 8)]  # words it never saw in a row
    scores = reward.score(answers, ["Tell me about tea."] * 5, [""] * 5)
    assert scores == sorted(scores) and scores[-1] - scores[0] > 0.3, scores


@pytest.mark.parametrize(
    "objective, weight",
    [("grpo", 1.0), ("rloo", 1.0), ("online_dpo", 1.0), ("rloo", -1.0)],
    ids=["grpo", "rloo", "online_dpo", "rloo-penalty"],
)
def test_a_judge_preferring_longer_answers_moves_the_completion_length(
    length_judge, short_policy, tmp_path, monkeypatch, objective, weight
):
    """16 steps of 8 prompts (grpo, rloo: groups of 4 completions; online DPO: pairs): the mean
    word count of the completions the judge scored, over the last 4 steps against the first 2.
    With the judge as a reward it grows by a quarter at least (1.38-1.44x when measured) and the
    mean reward rises; as a penalty it falls below half (0.14x). grpo and rloo also log TRL's own
    completions/mean_length (tokens), which moves the same way."""
    from deltaflow.config import schema_defaults
    from deltaflow.training import runner

    rng = random.Random(2)
    rows = [
        {
            "id": f"p{i}",
            "messages": [
                {"role": "user", "content": f"Tell me about {w}."},
                {"role": "assistant", "content": w},
            ],
        }
        for i, w in enumerate(rng.sample(WORDS, 16))
    ]
    recipe = schema_defaults(
        "recipe",
        {
            "objective": objective, "r": 8, "alpha": 16, "learning_rate": 0.02, "lr_scheduler": "constant",
            "warmup_ratio": 0.0, "max_steps": 16, "batch_size": 8,
            "num_generations": 2 if objective == "online_dpo" else 4, "max_completion_length": 16,
            "max_length": 64, "seed": 0, "logging_steps": 1,
            "rewards": [{"name": "length", "judge": judge_spec(length_judge), "weight": weight}],
        },
    )  # fmt: skip
    ref = {"path": str(length_judge)}
    judging_job = {
        "rewards": {"length": {"ref": ref, "identity": ref_identity(ref, None)}},
        "cache_dir": str(tmp_path / "judge-cache"),
        "load": {"device": "cpu", "batch_size": 16, "threads": 1, "base_dir": str(short_policy)},
    }
    lengths, real = [], JudgeReward.score

    def measured(self, texts, *args):
        lengths.append(sum(len(t.split()) for t in texts) / len(texts))
        return real(self, texts, *args)

    monkeypatch.setattr(JudgeReward, "score", measured)
    metrics = runner.train_adapter(
        short_policy, rows, recipe, tmp_path / "out", resume_dir=tmp_path / "resume", judging=judging_job
    )
    per_step = 16 if objective == "online_dpo" else 8  # online DPO: two completions of each of 8 prompts
    assert len(lengths) == 16 and metrics["judges"]["length"]["completions"] == 16 * per_step
    first, last = sum(lengths[:2]) / 2, sum(lengths[-4:]) / 4
    curve = metrics["reward_curve"]
    key = "objective/scores" if objective == "online_dpo" else "rewards/length/mean"
    reward_first = sum(c[key] for c in curve[:2]) / 2
    reward_last = sum(c[key] for c in curve[-4:]) / 4
    tokens = [c.get("completions/mean_length") for c in curve]
    if weight > 0:
        assert last > 1.25 * first, lengths
        assert reward_last > reward_first, [c[key] for c in curve]
        if objective != "online_dpo":
            assert sum(tokens[-4:]) / 4 > sum(tokens[:2]) / 2, tokens
    else:
        assert last < 0.5 * first, lengths
        assert sum(tokens[-4:]) / 4 < sum(tokens[:2]) / 2, tokens
