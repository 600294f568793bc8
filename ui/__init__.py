"""The Gradio app only (design.md §2): components (ui.app), handlers (ui.handlers), sessions (ui.sessions) and who
may read them (ui.access), safe uploads (ui.uploads) and `mvgen app`'s registration (ui.cli). Only this package
imports gradio; the job it runs is mvgen.job."""
