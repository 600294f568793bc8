"""Gradio app (only this package imports gradio: ui.app, ui.handlers) and the headless `mvgen run` (ui.run)."""
