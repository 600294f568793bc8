"""The Gradio app: "Text to 3D" (prompt -> views -> Gaussian splat, mesh, orbit video, consistency report) and
"Evaluate your own views" (a zip of posed views, or any generator's grid image, video or zip of images with a
camera rig -> the same report) and "Compare two generators" (two uploads side by side).

``build_app()`` constructs the Blocks without launching; ``launch_app()`` serves it with the queue limits and
private sessions (``ui.access``). Every session writes under ``root/sessions/<owner>/<session>/``, served in place
to its owner only; Gradio keeps its uploads in ``root/gradio/`` (``GRADIO_TEMP_DIR``), served to their uploader only.
"""

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from mvgen.data.captions import example_captions
from mvgen.generate import default_model_path
from mvgen.limits import ELEVATION, GUIDANCE, PART_GUIDANCE
from mvgen.settings import AppConfig
from ui.access import SessionAccess, SessionGuard
from ui.handlers import COMPARE_KEYS, REPORT_KEYS, TRANSFORMS_RIG, VIEWS_KEYS, Handlers, explain_missing_inputs
from ui.sessions import SessionFolders

INTRO = """# mvgen — text to 3D
Type what you want, get consistent views of it from every side, a 3D Gaussian splat, a mesh and an orbit video,
and a measure of how consistent the views were: the 3D model is fitted on the even views and asked to reproduce
the odd ones it never saw (PSNR / SSIM / LPIPS per held-out view; higher PSNR and SSIM, lower LPIPS are better)."""

EVALUATE_HELP = """Upload one object's views and get the same reconstruction and consistency report as for
generated views. Either a **.zip** of posed views with rig *transforms.json*: `transforms.json` (NeRF / nerfstudio
convention: `camera_angle_x` or `fl_x`/`fl_y`, `frames[].file_path`, `frames[].transform_matrix` camera-to-world,
OpenGL axes) and its images (RGBA PNG preferred; the alpha channel is the object mask) — `mvgen generate` folders,
our dataset folders and NeRF-synthetic scenes work as they are. Or any generator's output with a **rig**: one
**grid image** (e.g. Zero123++'s 3x2), a **video** of an orbit (e.g. SV3D's 21 frames) or a **.zip of images** in
view order; pick a preset or type an orbit such as `orbit:views=8,elev=20,fov=40` (fields: views, elev — one value
or several joined by `/` —, start, step or span, fov, radius). Views without alpha get a mask from the background
colour of the image borders (the tolerance is how far from it a pixel may be and still count as background)."""

COMPARE_HELP = """Two generators' views of the same object side by side: each upload as in "Evaluate your own views"
(a zip of posed views, or a grid image / video / zip of images with a rig), both fitted and scored the same way
(held-out protocol: fit the even views, score the odd ones)."""


@dataclass
class AppContext:
    """What ``launch_app`` needs besides the Blocks: the config, the app folder, the handlers and who owns what."""

    cfg: AppConfig
    root: Path
    handlers: Handlers
    access: SessionAccess


def _report_components(prefix: str) -> dict:
    """The output components of one report (gallery, 3D viewers, video, metrics, heatmaps, downloads)."""
    c = {}
    c["summary"] = gr.Markdown(elem_id=f"{prefix}-summary")
    c["gallery"] = gr.Gallery(label="Views (camera azimuth / elevation in the captions)", columns=4, height=300,
                              object_fit="contain", elem_id=f"{prefix}-gallery")
    with gr.Row():
        c["splat"] = gr.Model3D(label="Gaussian splat (.ply)", clear_color=(1.0, 1.0, 1.0, 1.0), height=360,
                                elem_id=f"{prefix}-splat")
        c["mesh"] = gr.Model3D(label="Mesh (.glb)", clear_color=(1.0, 1.0, 1.0, 1.0), height=360,
                               elem_id=f"{prefix}-mesh")
    with gr.Row():
        c["video"] = gr.Video(label="Novel-view orbit (rendered from the Gaussians)", autoplay=True, loop=True,
                              height=300, elem_id=f"{prefix}-video")
        c["plot"] = gr.BarPlot(x="view", y="PSNR dB", title="PSNR per held-out view", height=300, y_lim=[0, None],
                               elem_id=f"{prefix}-plot")
    c["table"] = gr.Dataframe(label="Held-out views: PSNR / SSIM / LPIPS", interactive=False,
                              elem_id=f"{prefix}-table")
    c["heatmaps"] = gr.Image(label="Held-out views: target | render | error heatmap", type="filepath",
                             interactive=False, elem_id=f"{prefix}-heatmaps")
    c["files"] = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id=f"{prefix}-files")
    return c


def build_app(model_path=None, config: AppConfig | None = None, workdir=None, preload: bool = False) -> gr.Blocks:
    """The app, not launched. ``model_path``: pipeline folder (default: the shipped model, ``MVGEN_MODEL``);
    ``config``: defaults and limits (default: configs/app.yaml); ``workdir``: the app folder (default: a new
    temporary folder, deleted at exit); ``preload``: start loading the model in the background when a browser has
    loaded the page (not before: loading competes with serving and rendering the page on a small CPU). The
    returned Blocks carries ``.mvgen`` (an ``AppContext``)."""
    cfg = config or AppConfig.from_yaml()
    root = _app_folder(workdir)
    folders = SessionFolders(root, cfg.session_max_age_minutes * 60, cfg.runs_per_session)
    access = SessionAccess(folders, root / "gradio")
    h = Handlers(cfg, model_path or default_model_path(), folders, access)
    problem = h.model_status()
    max_age = int(cfg.session_max_age_minutes * 60)
    with gr.Blocks(title="mvgen — text to 3D", delete_cache=(max(60, max_age // 4), max_age)) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(f"⚠ **{problem}**" if problem else "", visible=bool(problem), elem_id="model-status")
        with gr.Tabs():
            with gr.Tab("Text to 3D", id="generate"):
                gen = _generate_tab(cfg, h.output_sizes())
            with gr.Tab("Evaluate your own views", id="evaluate"):
                ev = _evaluate_tab(cfg)
            with gr.Tab("Compare two generators", id="compare"):
                cmp = _compare_tab(cfg)
        _wire_events(demo, h, cfg, gen, ev, cmp)
        if preload and not problem:
            demo.load(h.preload, None, None, queue=False, api_visibility="private")
    demo.queue(max_size=cfg.max_queue, default_concurrency_limit=cfg.concurrency_limit)
    explain_missing_inputs(demo)
    demo.mvgen = AppContext(cfg, root, h, access)
    return demo


def _app_folder(workdir) -> Path:
    """The app folder: ``workdir`` (created) or a new temporary folder deleted at exit. Gradio's uploads and its
    copies of our outputs go inside it (``GRADIO_TEMP_DIR``, read when components and the server are created), so
    serving that folder and nothing wider is enough."""
    if workdir is None:
        root = Path(tempfile.mkdtemp(prefix="mvgen-app-"))
        atexit.register(shutil.rmtree, root, True)
    else:
        root = Path(workdir).resolve()
        root.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    return root


def _generate_tab(cfg: AppConfig, output_sizes: tuple[int, ...] = ()) -> dict:
    """The "Text to 3D" tab: the prompt, its examples, the advanced settings (ranges from ``mvgen.limits`` and the
    config; the output size among the model's ``output_sizes``), the buttons and the report. Returns its
    components by name (inputs in the handler's order)."""
    c = {}
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            c["prompt"] = gr.Textbox(label="Prompt", placeholder="a red mug", max_lines=2, elem_id="prompt")
            gr.Examples([[e] for e in example_captions("train", cfg.prompt_examples, seed=0)],
                        inputs=[c["prompt"]], label="Examples (the shipped model's vocabulary)")
            with gr.Accordion("Advanced settings", open=False):
                c["views"] = gr.Slider(cfg.views_min, cfg.views_max, cfg.views, step=1, label="Views")
                c["elevation"] = gr.Slider(ELEVATION.low, ELEVATION.high, cfg.elevation, step=1,
                                           label="Elevation (degrees)")
                c["rings"] = gr.Textbox(",".join(f"{r:g}" for r in cfg.rings or ()), max_lines=1,
                                        label="Elevation rings (e.g. 10,30; empty = one ring)", elem_id="rings",
                                        info="several elevations instead of the one above: the views are taken in "
                                             "pairs from ring to ring, 2 views per ring at least")
                with gr.Row():
                    c["seed"] = gr.Number(cfg.seed, precision=0, label="Seed", minimum=0, scale=3)
                    c["dice"] = gr.Button("🎲 random seed", scale=1, size="sm")
                c["steps"] = gr.Slider(1, cfg.steps_max, cfg.steps, step=1, label="Denoising steps")
                c["guidance"] = gr.Slider(GUIDANCE.low, GUIDANCE.high, cfg.guidance, step=0.5, label="Guidance scale")
                c["part_guidance"] = gr.Slider(PART_GUIDANCE.low, PART_GUIDANCE.high, cfg.part_guidance, step=0.5,
                                               label="Part-colour guidance (0 = off)", elem_id="part-guidance",
                                               info="for prompts that name a part colour (\"... with white legs\"): "
                                                    "pushes the views toward that colour, one more pass per step; "
                                                    "measured on the shipped model: colours may bleed (README)")
                c["recon_steps"] = gr.Slider(1, cfg.recon_steps_max, cfg.recon_steps, step=1,
                                             label="Reconstruction steps")
                c["steer"] = gr.Checkbox(cfg.steer.mode != "off", label="3D-consistent sampling (slower)",
                                         elem_id="steer")
            c["output_size"] = _output_size_input(cfg, output_sizes)
            c["stop_after_views"] = gr.Checkbox(False, label="Stop after the views (skip the 3D stages)")
            c["run"] = gr.Button("Generate 3D", variant="primary", elem_id="generate-button")
        with gr.Column(scale=2):
            c["report"] = _report_components("gen")
    return c


def _output_size_input(cfg: AppConfig, sizes: tuple[int, ...]):
    """The "Output size" dropdown when the model has a 2x decoder (its sizes, native first); otherwise a hidden one
    holding the native size and a line saying why there is no choice."""
    if len(sizes) > 1:
        value = cfg.output_size if cfg.output_size in sizes else sizes[0]
        return gr.Dropdown(list(sizes), value=value, label="Output size (px)", elem_id="output-size",
                           info=f"{sizes[1]}: the model's 2x decoder draws the same views at twice the size (the 3D "
                                f"fit then takes longer)")
    if sizes:
        gr.Markdown(f"Output size: {sizes[0]} px (this model has no 2x decoder for {2 * sizes[0]} px views).",
                    elem_id="output-size-note")
    return gr.Dropdown(list(sizes), value=sizes[0] if sizes else None, visible=False, elem_id="output-size")


VIEW_FILE_TYPES = [".zip", ".png", ".jpg", ".jpeg", ".mp4", ".webm", ".mov", ".gif"]


def _rig_inputs(prefix: str) -> dict:
    """The rig (a preset, "transforms.json" or a typed orbit) and the grid of one upload."""
    from mvgen.rigs import PRESETS

    c = {"rig": gr.Dropdown([TRANSFORMS_RIG, *PRESETS, "orbit:views=8,elev=20,fov=40"], value=TRANSFORMS_RIG,
                            allow_custom_value=True, label="Rig (a preset, or type orbit:views=N,elev=E,...)",
                            elem_id=f"{prefix}-rig"),
         "grid": gr.Textbox("", label="Grid of a grid image, ROWSxCOLS (empty: the preset's)", max_lines=1,
                            elem_id=f"{prefix}-grid")}
    return c


def _evaluate_tab(cfg: AppConfig) -> dict:
    """The "Evaluate your own views" tab: the upload, its rig, grid, video frame step and background tolerance,
    the reconstruction steps, the button, the report and the masks."""
    c = {}
    gr.Markdown(EVALUATE_HELP)
    with gr.Row():
        c["upload"] = gr.File(label="Views: .zip, grid image or video", file_types=VIEW_FILE_TYPES, type="filepath",
                              elem_id="upload")
        with gr.Column():
            c.update(_rig_inputs("eval"))
            with gr.Row():
                c["frame_step"] = gr.Number(1, precision=0, minimum=1, label="Video: every k-th frame",
                                            elem_id="eval-frame-step")
                c["tolerance"] = gr.Number(0.1, minimum=0.01, maximum=0.45, label="Background tolerance (0-1)",
                                           elem_id="eval-tolerance")
            c["recon_steps"] = gr.Slider(1, cfg.recon_steps_max, cfg.recon_steps, step=1, label="Reconstruction steps")
            c["run"] = gr.Button("Reconstruct and evaluate", variant="primary", elem_id="evaluate-button")
            c["legacy"] = gr.Button("evaluate (zip of posed views)", visible=False)  # the /evaluate API endpoint
    c["report"] = _report_components("eval")
    c["report"]["masks"] = gr.Image(label="Masks (white: object) — from the alpha channel or the background",
                                    type="filepath", interactive=False, elem_id="eval-masks")
    return c


def _compare_tab(cfg: AppConfig) -> dict:
    """The "Compare two generators" tab: two uploads with their rigs, one button, the side-by-side table and plot,
    each upload's heatmaps and masks."""
    c = {}
    gr.Markdown(COMPARE_HELP)
    with gr.Row():
        for side in ("a", "b"):
            with gr.Column():
                c[f"upload_{side}"] = gr.File(label=f"Views {side.upper()}: .zip, grid image or video",
                                              file_types=VIEW_FILE_TYPES, type="filepath", elem_id=f"upload-{side}")
                inputs = _rig_inputs(f"cmp-{side}")
                c[f"rig_{side}"], c[f"grid_{side}"] = inputs["rig"], inputs["grid"]
    c["recon_steps"] = gr.Slider(1, cfg.recon_steps_max, cfg.recon_steps, step=1, label="Reconstruction steps")
    c["run"] = gr.Button("Evaluate both", variant="primary", elem_id="compare-button")
    r = c["report"] = {}
    r["summary"] = gr.Markdown(elem_id="cmp-summary")
    with gr.Row():
        r["table"] = gr.Dataframe(label="Side by side", interactive=False, elem_id="cmp-table")
        r["plot"] = gr.BarPlot(x="upload", y="PSNR dB", title="Held-out PSNR", height=260, y_lim=[0, None],
                               elem_id="cmp-plot")
    with gr.Row():
        r["heatmaps_a"] = gr.Image(label="A: target | render | error", type="filepath", interactive=False,
                                   elem_id="cmp-heatmaps-a")
        r["heatmaps_b"] = gr.Image(label="B: target | render | error", type="filepath", interactive=False,
                                   elem_id="cmp-heatmaps-b")
    with gr.Row():
        r["masks_a"] = gr.Image(label="A: masks", type="filepath", interactive=False, elem_id="cmp-masks-a")
        r["masks_b"] = gr.Image(label="B: masks", type="filepath", interactive=False, elem_id="cmp-masks-b")
    return c


GENERATE_INPUTS = ("prompt", "views", "elevation", "seed", "steps", "guidance", "recon_steps", "stop_after_views",
                   "steer", "output_size", "rings", "part_guidance")


def _wire_events(demo: gr.Blocks, h: Handlers, cfg: AppConfig, gen: dict, ev: dict, cmp: dict) -> None:
    """The buttons' events. Generation and evaluation share one concurrency group: the CPU runs
    ``concurrency_limit`` of them at once. preprocess=False: the handlers get the raw values and name a bad one
    ("views must be a whole number, got 'eight'"); Gradio's own conversion would fail with a bare "Error" or a
    message without the field."""

    def on_generate(prompt, views, elevation, seed, steps, guidance, recon_steps, stop_after_views, steer,
                    output_size, rings, part_guidance, request: gr.Request, progress=gr.Progress()):
        out = h.generate(prompt, views, elevation, seed, steps, guidance, recon_steps, stop_after_views, steer,
                         output_size, rings, part_guidance, request=request, progress=progress)
        return [out[k] for k in REPORT_KEYS]

    def on_evaluate(upload, recon_steps, request: gr.Request, progress=gr.Progress()):
        out = h.evaluate_zip(upload, recon_steps, request=request, progress=progress)
        return [out[k] for k in REPORT_KEYS]

    def on_evaluate_views(upload, rig, grid, frame_step, tolerance, recon_steps, request: gr.Request,
                          progress=gr.Progress()):
        out = h.evaluate_views(upload, rig, grid, frame_step, tolerance, recon_steps, request=request,
                               progress=progress)
        return [out[k] for k in VIEWS_KEYS]

    def on_compare(upload_a, rig_a, grid_a, upload_b, rig_b, grid_b, recon_steps, request: gr.Request,
                   progress=gr.Progress()):
        out = h.compare_views(upload_a, rig_a, grid_a, upload_b, rig_b, grid_b, recon_steps, request=request,
                              progress=progress)
        return [out[k] for k in COMPARE_KEYS]

    def on_unload(request: gr.Request):
        h.end_session(request)

    gen["dice"].click(h.random_seed, None, gen["seed"], api_name="random_seed", queue=False)
    compute = {"concurrency_id": "compute", "concurrency_limit": cfg.concurrency_limit, "preprocess": False}
    gen_inputs = [gen[k] for k in GENERATE_INPUTS]
    gen_outputs = [gen["report"][k] for k in REPORT_KEYS]
    gen["run"].click(on_generate, gen_inputs, gen_outputs, api_name="generate", **compute)
    gen["prompt"].submit(on_generate, gen_inputs, gen_outputs, api_visibility="private", **compute)
    ev["legacy"].click(on_evaluate, [ev["upload"], ev["recon_steps"]], [ev["report"][k] for k in REPORT_KEYS],
                       api_name="evaluate", **compute)
    ev["run"].click(on_evaluate_views, [ev[k] for k in ("upload", "rig", "grid", "frame_step", "tolerance",
                                                        "recon_steps")],
                    [ev["report"][k] for k in VIEWS_KEYS], api_name="evaluate_views", **compute)
    cmp["run"].click(on_compare, [cmp[k] for k in ("upload_a", "rig_a", "grid_a", "upload_b", "rig_b", "grid_b",
                                                   "recon_steps")],
                     [cmp["report"][k] for k in COMPARE_KEYS], api_name="compare_views", **compute)
    demo.unload(on_unload)


# The splat viewer (gsplat.js) clears to transparent and shows its canvas' CSS background, black by default:
# white here, like the mesh viewer's clear colour and the views' background.
VIEWER_CSS = "#gen-splat canvas, #eval-splat canvas { background: #ffffff !important; }"

# A session's files are served only with its cookie (ui.access); the splat viewer (gsplat.js) fetches its file with
# credentials "omit". Same-origin fetches send the cookie; the server's rule stays as it is.
SAME_ORIGIN_FETCH_JS = """<script>
(() => {
  const fetch0 = window.fetch.bind(window);
  window.fetch = (input, init) => {
    if (init && init.credentials === "omit") {
      const url = new URL(typeof input === "string" ? input : (input.url ?? String(input)), location.href);
      if (url.origin === location.origin) init = {...init, credentials: "same-origin"};
    }
    return fetch0(input, init);
  };
})();
</script>"""


def launch_app(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, **kwargs):
    """Serve ``demo`` (from ``build_app``) with private sessions: ``ui.access.SessionGuard`` in front of Gradio's
    routes serves a session's files to its owner only; outputs are static paths (served in place, never copied into
    Gradio's cache), so a deleted session folder is unreachable at once. No Node proxy, static file workers or MCP
    server (each would serve files past the guard), whatever the environment says. Uploads capped at the config's
    size. Extra keyword arguments go to ``gr.Blocks.launch`` (e.g. ``prevent_thread_lock=True`` in tests)."""
    from starlette.middleware import Middleware

    ctx: AppContext = demo.mvgen
    sessions = str(ctx.root / "sessions")
    gr.set_static_paths([sessions])  # outputs are not copied: their only copy is in the session's folder
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(SessionGuard, access=ctx.access)]
    kwargs.update(ssr_mode=False, num_workers=0, mcp_server=False,
                  head=SAME_ORIGIN_FETCH_JS + (kwargs.get("head") or ""))
    # allowed_paths: Gradio checks a video's source folder before probing it (the guard decides who is served)
    return demo.launch(server_name=host, server_port=port, allowed_paths=[sessions], css=VIEWER_CSS,
                       max_file_size=int(ctx.cfg.max_upload_mb * 2**20), show_error=False, app_kwargs=app_kwargs,
                       **kwargs)
