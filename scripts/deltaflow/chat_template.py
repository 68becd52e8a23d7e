"""Chat templates fit for assistant-only loss.

TRL's ``assistant_only_loss`` needs ``{% generation %}`` markers around the
assistant text, and TRL 1.16 only patches templates it recognises (SmolLM2's is
not one). Training and eval must render identical text (a template that differs shifts every score),
so we patch the common ChatML message expression and *prove* the patch renders
byte-identical text on probe conversations before using it; otherwise we stop
and ask for ``base_model.chat_template_path``.
"""

from __future__ import annotations

import re

from .errors import ConfigError

# The ChatML per-message expression as SmolLM2 / Qwen-style templates write it.
# A newline inside the Jinja string may be written as an escape or as a real newline.
_NL = r"'(?:\\n|\n)'"
_CHATML_MESSAGE = re.compile(
    r"\{\{\s*'<\|im_start\|>'\s*\+\s*message\['role'\]\s*\+\s*" + _NL + r"\s*\+\s*"
    r"message\['content'\]\s*\+\s*'<\|im_end\|>'\s*\+\s*" + _NL + r"\s*\}\}"
)
_CHATML_PATCHED = (
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
)

PROBES = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6\nDone."},
    ],
]


_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: str | None) -> bool:
    return bool(template and _GENERATION_TAG.search(template))


def patch_generation_markers(template: str) -> str:
    """Return ``template`` with generation markers around assistant content + end token."""
    if has_generation_markers(template):
        return template
    patched, count = _CHATML_MESSAGE.subn(lambda _m: _CHATML_PATCHED, template)
    if count != 1:
        raise ConfigError(
            "the base model's chat template has no {% generation %} markers and is not a "
            "ChatML template deltaflow knows how to patch; write one that renders the same "
            "text with {% generation %}...{% endgeneration %} around each assistant message "
            "and set base_model.chat_template_path to it (or set the recipe's "
            "assistant_only_loss: false)"
        )
    return patched


def render(tokenizer, template: str, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)


def training_template(tokenizer, override: str | None = None) -> str:
    """The template to train with: ``override`` if given, else the patched original.

    Raises ConfigError if it does not render exactly like the model's own template.
    """
    original = tokenizer.chat_template
    if not original:
        raise ConfigError(
            "the base model's tokenizer has no chat template; set "
            "base_model.chat_template_path to a Jinja template"
        )
    candidate = override if override is not None else patch_generation_markers(original)
    if not has_generation_markers(candidate):
        raise ConfigError("base_model.chat_template_path has no {% generation %} markers")
    for probe in PROBES:
        a, b = render(tokenizer, original, probe), render(tokenizer, candidate, probe)
        if a != b:
            raise ConfigError(
                "the training chat template renders different text than the model's own "
                f"template (model: {a!r}, training: {b!r}); training and evaluation must see "
                "identical prompts — fix base_model.chat_template_path"
            )
    return candidate
