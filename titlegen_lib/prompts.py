"""The single source of truth for the prompt: training examples and inference prompts both come from here.

A training example is exactly `render_prompt(title)` + description + EOS, so the model is trained on
the prompt it will see at inference and learns to stop. The title is always in the prompt (the
seed notebook trained on the description alone); the loss covers only the description and EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Language = Literal["en", "pt"]

INSTRUCTIONS: dict[str, str] = {
    "en": "Write a product description for an online store listing, based on the product title.",
    "pt": "Escreva uma descrição de produto para uma loja virtual, com base no título do produto.",
}
_TITLE_LABEL = {"en": "Title", "pt": "Título"}
# Plain (no chat template) layout, as in the seed's "### Instrução: ... ### Resposta:" prompt.
_PLAIN = {
    "en": "### Instruction:\n{instruction}\n\n### Input:\n{title}\n\n### Response:\n",
    "pt": "### Instrução:\n{instruction}\n\n### Entrada:\n{title}\n\n### Resposta:\n",
}


class PromptError(ValueError):
    """The tokenizer or the example cannot be rendered with this template."""


@dataclass(frozen=True)
class PromptTemplate:
    """How a title becomes a prompt: the language of the instruction and whether the chat template is used."""

    language: Language = "en"
    use_chat_template: bool = False

    @property
    def instruction(self) -> str:
        return INSTRUCTIONS[self.language]


def choose_template(tokenizer: Any, language: Language = "en", prompt_format: str = "auto") -> PromptTemplate:
    """Pick plain or chat rendering: "auto" uses the chat template when the tokenizer has one."""
    if language not in INSTRUCTIONS:
        raise PromptError(f"language {language!r} is not supported; use one of {sorted(INSTRUCTIONS)}")
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if prompt_format == "chat" and not has_chat:
        raise PromptError("prompt_format is 'chat' but the tokenizer has no chat template; use 'auto' or 'plain'")
    use_chat = has_chat if prompt_format == "auto" else prompt_format == "chat"
    return PromptTemplate(language=language, use_chat_template=use_chat)


def user_message(title: str, template: PromptTemplate) -> str:
    """The instruction and the title, as one user turn."""
    return f"{template.instruction}\n\n{_TITLE_LABEL[template.language]}: {title.strip()}"


def render_prompt(title: str, tokenizer: Any, template: PromptTemplate) -> str:
    """The exact text the model sees before it writes the description (training and inference)."""
    if template.use_chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message(title, template)}],
            tokenize=False,
            add_generation_prompt=True,
        )
    return _PLAIN[template.language].format(instruction=template.instruction, title=title.strip())


def eos_token_id(tokenizer: Any) -> int:
    """The id that ends every completion; a tokenizer without one cannot be trained to stop."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise PromptError("the tokenizer has no eos_token; set one before training so the model learns to stop")
    return int(eos)


def render_training_text(title: str, description: str, tokenizer: Any, template: PromptTemplate) -> str:
    """Prompt + description + EOS as text (for display and tests; training uses token ids)."""
    return render_prompt(title, tokenizer, template) + description + tokenizer.eos_token


def tokenize_example(
    title: str, description: str, tokenizer: Any, template: PromptTemplate
) -> dict[str, list[int]]:
    """Token ids of prompt + description + EOS, with completion_mask 1 on the description and EOS only.

    The prompt and the full text are tokenized exactly as at inference (`tokenizer(prompt)`), so the
    prompt tokens are a prefix of the full text's; EOS is appended as an id, never masked.
    """
    prompt = render_prompt(title, tokenizer, template)
    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + description)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        # The tokenizer merged the prompt's last token with the description's first; cut at the prompt.
        full_ids = prompt_ids + tokenizer(description, add_special_tokens=False)["input_ids"]
    if full_ids and full_ids[-1] == tokenizer.eos_token_id and len(full_ids) > len(prompt_ids):
        full_ids = full_ids[:-1]  # tokenizers that add EOS themselves: keep exactly one
    input_ids = full_ids + [eos_token_id(tokenizer)]
    completion_mask = [0] * len(prompt_ids) + [1] * (len(input_ids) - len(prompt_ids))
    return {"input_ids": input_ids, "completion_mask": completion_mask}
