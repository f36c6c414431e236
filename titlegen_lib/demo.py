"""The ipywidgets demo: type a title, and the base and the fine-tuned model write a description side by side.

Both sides use the training prompt (`generate.stream_description`) and one copy of the base model: the base
side switches the LoRA adapter off, so the only difference between them is the adapter. Text streams into
the page as it is generated; an error shows in the page and the button comes back.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from titlegen_lib.config import Config
from titlegen_lib.data import load_split
from titlegen_lib.generate import DecodingSettings, max_new_tokens_for, stream_description
from titlegen_lib.models import LoadedModel, load_model

FALLBACK_TITLE = "Stainless Steel Insulated Water Bottle, 32 oz, Leak-Proof Lid"
_BOX = ("font-family:system-ui,sans-serif;white-space:pre-wrap;border:1px solid #ccc;border-radius:4px;"
        "padding:8px;min-height:6em")


def adapter_exists(config: Config) -> bool:
    return (Path(config.adapter_dir) / "adapter_config.json").is_file()


def missing_adapter_message(config: Config) -> str:
    return (f"No fine-tuned adapter for run {config.run_name!r} (looked in {config.adapter_dir}). "
            "Run 03_finetune first, or set run_name to a run you trained.")


def example_title(config: Config) -> str:
    """A title from the prepared test split, so the demo opens on an unseen product."""
    path = config.data_dir / "test.jsonl"
    if path.is_file():
        rows = load_split(path)
        if rows:
            return rows[0]["input"]
    return FALLBACK_TITLE


def _box(text: str, colour: str = "inherit") -> str:
    return f'<div style="{_BOX};color:{colour}">{html.escape(text)}</div>'


class Demo:
    """The widget and its controls; `generate()` is what the button does, and it also works without a browser.

    `model` is the base model with the run's adapter loaded (or the base model alone, before training)."""

    def __init__(self, config: Config, model: LoadedModel):
        import ipywidgets as w

        self.config, self.model = config, model
        self.has_adapter = model.adapter is not None
        self.base_text = ""
        self.finetuned_text = "" if self.has_adapter else missing_adapter_message(config)
        self.error: str | None = None
        wide = w.Layout(width="100%")
        self.title = w.Text(value=example_title(config), placeholder="Type a product title",
                            description="Title", layout=wide)
        self.button = w.Button(description="Generate", button_style="primary", icon="play")
        self.temperature = w.FloatSlider(value=config.temperature, min=0.0, max=1.5, step=0.05,
                                         description="temperature", tooltip="0 = greedy (top-p is then unused)")
        self.top_p = w.FloatSlider(value=config.top_p, min=0.05, max=1.0, step=0.05, description="top-p")
        budget = max_new_tokens_for(config, model.tokenizer)
        self.max_new_tokens = w.IntSlider(value=budget, min=16, max=max(512, budget), step=16, description="max tokens")
        self.language = w.ToggleButtons(options=[("English", "en"), ("Português", "pt")], value=config.language,
                                        description="prompt")
        self.base_area = w.HTML(_box(""))
        self.finetuned_area = w.HTML(_box(self.finetuned_text, "#b00020") if not self.has_adapter else _box(""))
        half = w.Layout(width="50%", padding="0 6px")
        sides = w.HBox([w.VBox([w.HTML("<b>Base model</b> (adapter off)"), self.base_area], layout=half),
                        w.VBox([w.HTML(f"<b>Fine-tuned</b> (run {html.escape(config.run_name)})"),
                                self.finetuned_area], layout=half)], layout=wide)
        self.widget = w.VBox([self.title, w.HBox([self.temperature, self.top_p]),
                              w.HBox([self.max_new_tokens, self.language]), self.button, sides])
        self.button.on_click(lambda _button: self.generate())

    def settings(self) -> DecodingSettings:
        """The decoding settings the sliders show; everything else comes from the config."""
        return DecodingSettings.from_config(self.config, self.model.tokenizer, temperature=float(self.temperature.value),
                                            top_p=float(self.top_p.value),
                                            max_new_tokens=int(self.max_new_tokens.value))

    def generate(self) -> dict[str, str]:
        """Write a description for the title with both models, streaming each into its side."""
        title = self.title.value.strip()
        if not title:
            self.base_area.value = _box("Type a product title first.", "#b00020")
            return {"base": "", "finetuned": ""}
        self.error = None
        self.button.disabled, self.button.description = True, "Generating..."
        try:
            settings = self.settings()
            self.base_text = self._stream(self.base_area, title, settings, adapter=False)
            if self.has_adapter:
                self.finetuned_text = self._stream(self.finetuned_area, title, settings, adapter=True)
        finally:
            self.button.disabled, self.button.description = False, "Generate"
        return {"base": self.base_text, "finetuned": self.finetuned_text}

    def _stream(self, area: Any, title: str, settings: DecodingSettings, adapter: bool) -> str:
        text = ""
        area.value = _box("...")
        try:
            for piece in stream_description(self.model, title, self.config, settings, language=self.language.value,
                                            adapter=adapter):
                text += piece
                area.value = _box(text + "\u258c")  # a cursor while the model is still writing
        except Exception as exc:  # shown in the page: a button callback's traceback is invisible on Colab
            self.error = f"{type(exc).__name__}: {exc}"
            area.value = _box(f"Generation failed: {self.error}", "#b00020")
            return ""
        text = text.strip()
        area.value = _box(text or "(the model wrote nothing: it ended with EOS at once)")
        return text

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def build_demo(config: Config, model: LoadedModel | None = None) -> Demo:
    """The demo for this run: the base model with the run's adapter when it exists (one copy in memory)."""
    if model is None:
        model = load_model(config, adapter_dir=config.adapter_dir if adapter_exists(config) else None)
    if model.adapter is None:
        print(f"[titlegen] {missing_adapter_message(config)}")
    return Demo(config, model)
