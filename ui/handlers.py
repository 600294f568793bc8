"""What the app's buttons call: plain methods of ``Handlers`` that return dicts of output values, testable
without a browser (pass any ``progress(fraction, desc)`` callable and ``request=None``).

Bad input becomes ``gr.Error`` (the message names the field and shows paths relative to the upload, never the
server's folders or the session id; the session keeps working; the server logs one line, no traceback); things
worth knowing (prompt outside the shipped model's vocabulary, no mesh) become ``gr.Warning``. The app's events
pass raw values (``preprocess=False``), so a raw API call with "eight" views gets the same named message.
"""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path

import gradio as gr

from mvgen.job import RunResult, load_model, model_output_sizes, model_problem, run_prompt, run_views
from mvgen.settings import AppConfig, check_prompt, check_recon_steps, check_run_settings
from ui.access import SessionAccess
from ui.sessions import LOCAL, SessionFolders

# Keys of the dicts returned by generate() / evaluate_zip(), in the order app.py wires its outputs; evaluate_views()
# adds the masks sheet; compare_views() returns COMPARE_KEYS.
REPORT_KEYS = ("gallery", "splat", "mesh", "video", "summary", "table", "plot", "heatmaps", "files")
VIEWS_KEYS = REPORT_KEYS + ("masks",)
COMPARE_KEYS = ("summary", "table", "plot", "heatmaps_a", "heatmaps_b", "masks_a", "masks_b")
TRANSFORMS_RIG = "transforms.json"  # the rig choice "cameras from the zip's transforms.json"


def _session(request) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def _no_progress(fraction: float, desc: str | None = None) -> None:
    return None


def user_error(message: str, action: str = "app") -> gr.Error:
    """The gr.Error for a user's bad input: shown in the page; logged as one line (Gradio would print a traceback)."""
    print(f"mvgen {action}: refused: {' '.join(message.split())}", file=sys.stderr)
    return gr.Error(message, print_exception=False)


def explain_missing_inputs(demo: gr.Blocks) -> None:
    """Raw API calls with too few values get a gr.Error naming the expected inputs (Gradio's own check raises a
    ValueError that the page shows as a bare "Error")."""
    import inspect

    validate = demo.validate_inputs

    def validate_inputs(block_fn, inputs):
        try:
            validate(block_fn, inputs)
        except ValueError:
            names = [n for n in inspect.signature(block_fn.fn).parameters if n not in ("request", "progress")]
            api = block_fn.api_name or block_fn.name
            raise user_error(f"{api}: expected {len(block_fn.inputs)} values ({', '.join(names)}), got "
                             f"{len(inputs)}", api) from None

    def validate_file_inputs(block_fn, inputs):
        """A file input that is not a file reference (5, "path", {"path": ...} without Gradio's meta) is named
        here; Gradio's own check (pydantic, before the handler) would show a bare "Error"."""
        import pydantic

        from mvgen.checks import short_repr

        validate_inputs(block_fn, inputs)
        for i, block in enumerate(block_fn.inputs):
            model = getattr(block, "data_model", None)
            if model is None or i >= len(inputs) or inputs[i] is None or getattr(block, "stateful", False) \
                    or i in getattr(block_fn, "component_prop_inputs", ()):  # those send {"value": ...}
                continue
            try:
                model.model_validate(inputs[i], context={"validate_meta": True})
            except pydantic.ValidationError:
                names = [n for n in inspect.signature(block_fn.fn).parameters if n not in ("request", "progress")]
                api = block_fn.api_name or block_fn.name
                name = names[i] if i < len(names) else f"{api} input {i}"
                raise user_error(f"{name}: expected an uploaded file (gradio_client: handle_file(path)), got "
                                 f"{short_repr(inputs[i])}", api) from None

    demo.validate_inputs = validate_file_inputs


def upload_path(upload) -> Path | None:
    """The uploaded file's path from what the File component sends: a path, a tempfile-like object, or (events
    with ``preprocess=False``, raw API calls) its FileData dict."""
    if upload is None:
        return None
    if isinstance(upload, dict):
        upload = upload.get("path")
    elif not isinstance(upload, (str, Path)):
        upload = getattr(upload, "name", None)
    return Path(upload) if isinstance(upload, (str, Path)) and str(upload) else None


class Handlers:
    """State shared by all sessions: the config, the (lazily loaded) pipeline and the session folders."""

    def __init__(self, cfg: AppConfig, model_path: str | Path, folders: SessionFolders,
                 access: SessionAccess | None = None):
        self.cfg = cfg
        self.model_path = Path(model_path)
        self.folders = folders
        self.access = access or SessionAccess(folders)  # who owns which session and upload (ui.access)
        self._pipe = None
        self._lock = threading.Lock()
        self._preloading = False

    # --------------------------------------------------------------------------------------------- model
    def model_status(self) -> str | None:
        """A message when the model folder is missing (the app still runs; generation says why it cannot)."""
        return None if self._pipe is not None else model_problem(self.model_path)

    def output_sizes(self) -> tuple[int, ...]:
        """The view sizes the model makes, from its folder's configs (nothing loaded): native first, twice it with a
        2x decoder; () when the folder is missing."""
        return model_output_sizes(self.model_path)

    def pipeline(self):
        """The pipeline, loaded once (thread-safe). gr.Error when the model is missing or unreadable."""
        with self._lock:
            if self._pipe is None:
                problem = model_problem(self.model_path)
                if problem:
                    raise user_error(self.public(problem), "generate")  # shown to every request: one log line
                try:
                    self._pipe, _ = load_model(self.model_path, self.cfg.device)
                except (ValueError, OSError) as e:
                    raise gr.Error(self.public(f"cannot load the model {self.model_path.name}: {e}")) from None
            return self._pipe

    def preload(self) -> None:
        """Start loading the pipeline in a background thread (once; later calls do nothing). A failure is printed
        here and raised again as gr.Error by the first request that needs the model."""
        with self._lock:
            if self._pipe is not None or self._preloading:
                return
            self._preloading = True

        def load():
            try:
                self.pipeline()
            except gr.Error as e:
                print(f"warning: {e.message}", file=sys.stderr)

        threading.Thread(target=load, name="mvgen-preload", daemon=True).start()

    # ------------------------------------------------------------------------------------------- buttons
    def random_seed(self) -> int:
        return random.randrange(0, 2**31)

    def generate(self, prompt, views, elevation, seed, steps, guidance, recon_steps, stop_after_views=False,
                 steer=None, output_size=None, rings=None, part_guidance=None, request=None, progress=None) -> dict:
        """Prompt -> views -> Gaussians -> exports -> held-out evaluation (or only the views); ``steer``: the
        "3D-consistent sampling" checkbox (None: the config's); ``output_size``: the "Output size" dropdown (None:
        the config's; one of ``output_sizes``); ``rings``: the "Elevation rings" box ("10,30"; "": one ring at
        ``elevation``; None: the config's); ``part_guidance``: the "Part-colour guidance" slider (None: the
        config's). Returns REPORT_KEYS."""
        from mvgen.generate import vocabulary_warning

        progress = progress or _no_progress
        try:
            prompt = check_prompt(prompt)
            settings = check_run_settings(self.cfg, views, elevation, steps, guidance, seed, recon_steps, steer,
                                          output_size, self.output_sizes(), rings, part_guidance)
            if stop_after_views not in (None, True, False):  # 0 / 1 compare equal to False / True: fine
                raise ValueError(f"stop_after_views must be true or false, got {stop_after_views!r}")
            if not stop_after_views or settings["steer"].mode != "off":
                self.cfg.fit_config(settings["recon_steps"])  # a broken preset fails before generating
        except ValueError as e:
            raise user_error(self.public(str(e), request), "generate") from None
        owner = self._owner(request, "generate")
        pipe = self.pipeline()
        warn = vocabulary_warning(prompt, self.model_path)
        if warn:
            gr.Warning(warn)
        out = self._new_run(request, owner, "generate")
        try:
            result = run_prompt(pipe, prompt, out, self.cfg, settings, self.model_path, bool(stop_after_views),
                                sink=progress)
        except ValueError as e:  # PromptError (too many tokens), CameraError, FitError ...
            raise user_error(self.public(str(e), request, out), "generate") from None
        return self._report(result)

    def evaluate_zip(self, upload, recon_steps, request=None, progress=None) -> dict:
        """A zip of posed views (transforms.json + images) -> reconstruction -> the same report."""
        from ui.uploads import unpack_views

        progress = progress or _no_progress
        zip_path = upload_path(upload)
        if zip_path is None:
            raise user_error("upload: choose a .zip with transforms.json and its images first", "evaluate")
        cfg = self.cfg
        owner = self._owner(request, "evaluate")
        run = None
        try:
            steps = check_recon_steps(cfg, recon_steps)
            cfg.fit_config(steps)
            # an HTTP client may name only its own upload (not another's, nor a file of any session folder)
            if not zip_path.is_file() or (owner != LOCAL and not self.access.owns_upload(owner, zip_path)):
                raise ValueError(f"upload: file {zip_path.name} not found; upload it again")
            run = self._new_run(request, owner, "evaluate")  # run/upload/ (the views), run/report/
            run.mkdir()
            progress(0.0, "unpacking the zip")
            folder = unpack_views(zip_path, run / "upload", **cfg.upload_limits())
            result = run_views(folder, run / "report", cfg, steps, seed=cfg.seed, sink=progress)
        except ValueError as e:  # UploadError, CameraError, FitError ...
            raise user_error(self.public(str(e), request, run), "evaluate") from None
        except OSError as e:  # unreadable image inside the zip, disk full
            raise user_error(self.public(f"upload: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
                                         request, run), "evaluate") from None
        return self._report(result)

    def evaluate_views(self, upload, rig, grid, frame_step, tolerance, recon_steps, request=None,
                       progress=None) -> dict:
        """Any generator's views -> the same report as ``evaluate_zip``, plus the masks sheet (``masks``): a zip of
        posed views (rig "transforms.json"), or a zip of images, a grid image or a video with a rig (a preset of
        ``mvgen.rigs`` or a typed orbit); ``grid`` "RxC" ("" : the preset's), every ``frame_step``-th frame of a
        video, ``tolerance`` of the background mask."""
        progress = progress or _no_progress
        path = upload_path(upload)
        if path is None:
            raise user_error("upload: choose a .zip, a grid image or a video first", "evaluate")
        owner = self._owner(request, "evaluate")
        run = None
        try:
            steps, options = self._view_options(rig, grid, frame_step, tolerance, recon_steps)
            self._check_upload(owner, path)
            run = self._new_run(request, owner, "evaluate")  # run/upload/ (the views), run/report/
            run.mkdir()
            result, mask = self._evaluate_upload(path, run, steps, options, progress)
        except ValueError as e:  # UploadError, ViewsError, RigError, CameraError, FitError ...
            raise user_error(self.public(str(e), request, run), "evaluate") from None
        except OSError as e:  # unreadable image, disk full
            raise user_error(self.public(f"upload: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
                                         request, run), "evaluate") from None
        out = self._report(result)
        out["summary"] = mask_line(mask) + "\n\n" + out["summary"]
        masks = run / "upload" / "views" / "masks.png"
        out["masks"] = str(masks) if masks.is_file() else None
        return out

    def compare_views(self, upload_a, rig_a, grid_a, upload_b, rig_b, grid_b, recon_steps, request=None,
                      progress=None) -> dict:
        """Two uploads (each as in ``evaluate_views``) side by side: ``table`` (metric x upload), ``plot`` (the same,
        long form), ``summary``, and each one's ``heatmaps_a`` / ``heatmaps_b`` and ``masks_a`` / ``masks_b``."""
        progress = progress or _no_progress
        paths = [upload_path(upload_a), upload_path(upload_b)]
        if None in paths:
            raise user_error(f"upload {'A' if paths[0] is None else 'B'}: choose a .zip, a grid image or a video "
                             f"first", "compare")
        owner = self._owner(request, "compare")
        run, results = None, []
        try:
            parsed = []
            for label, rig, grid in (("A", rig_a, grid_a), ("B", rig_b, grid_b)):
                try:
                    parsed.append(self._view_options(rig, grid, 1, 0.1, recon_steps))
                except ValueError as e:
                    raise ValueError(f"upload {label}: {e}") from None
            for path in paths:
                self._check_upload(owner, path)
            run = self._new_run(request, owner, "compare")
            for label, path, (steps, options) in zip("ab", paths, parsed):
                (run / label).mkdir(parents=True)
                half = (lambda f, d, k=len(results): progress(0.5 * (k + f), d))  # noqa: E731
                try:
                    results.append(self._evaluate_upload(path, run / label, steps, options, half))
                except ValueError as e:
                    raise ValueError(f"upload {label.upper()}: {e}") from None
        except ValueError as e:
            raise user_error(self.public(str(e), request, run), "compare") from None
        except OSError as e:
            raise user_error(self.public(f"upload: {e.strerror or e}", request, run), "compare") from None
        names = [f"A: {paths[0].name}", f"B: {paths[1].name}"]
        return {"summary": compare_markdown(names, results), "table": compare_table(names, results),
                "plot": compare_plot(names, results),
                "heatmaps_a": str(results[0][0].files["heatmaps"]), "heatmaps_b": str(results[1][0].files["heatmaps"]),
                "masks_a": _masks(run / "a"), "masks_b": _masks(run / "b")}

    def _view_options(self, rig, grid, frame_step, tolerance, recon_steps) -> tuple[int, dict]:
        """(reconstruction steps, ``ui.uploads.stage_views`` options) from the form's raw values; ValueError naming
        the field."""
        from mvgen.checks import check_int, check_number
        from mvgen.rigs import parse_rig
        from mvgen.views_input import parse_grid

        steps = check_recon_steps(self.cfg, recon_steps)
        self.cfg.fit_config(steps)
        if rig is not None and not isinstance(rig, str):
            raise ValueError(f"rig must be text, got {type(rig).__name__}")
        rig = None if rig is None or rig.strip() in ("", TRANSFORMS_RIG) else rig.strip()
        if rig is not None:
            parse_rig(rig)
        grid = None if grid is None or (isinstance(grid, str) and not grid.strip()) else grid
        parse_grid(grid)
        return steps, {"rig": rig, "grid": grid, "frame_step": check_int("frame_step", frame_step, 1, 1000),
                       "tolerance": check_number("tolerance", tolerance, 0.01, 0.45)}

    def _check_upload(self, owner: str, path: Path) -> None:
        """An HTTP client may name only its own upload (not another's, nor a file of any session folder)."""
        if not path.is_file() or (owner != LOCAL and not self.access.owns_upload(owner, path)):
            raise ValueError(f"upload: file {path.name} not found; upload it again")

    def _evaluate_upload(self, path: Path, run: Path, steps: int, options: dict, progress) -> tuple:
        """(``RunResult``, mask report) of one upload staged into ``run``/upload and reported into ``run``/report."""
        from ui.uploads import stage_views

        progress(0.0, "reading the views")
        folder, mask = stage_views(path, run / "upload", **options, **self.cfg.upload_limits(),
                                   max_side=self.cfg.max_image_size)
        return run_views(folder, run / "report", self.cfg, steps, seed=self.cfg.seed, sink=progress), mask

    def public(self, message: str, request=None, run: Path | None = None) -> str:
        """``message`` as a user may see it: paths relative to the run's upload / run folder / the app folder, the
        model by its folder name, and no session id."""
        from ui.uploads import relative_message

        owner = self.access.request_owner(request) or LOCAL
        roots = [run / "upload", run] if run is not None else []
        roots += [self.folders.session_dir(_session(request), owner), self.folders.root, self.model_path.parent]
        message = relative_message(message, *roots)
        for private in (_session(request), owner):  # long random tokens; a short one would match ordinary words
            if private and len(private) >= 8:
                message = message.replace(private, "(session)")
        return message

    def _owner(self, request, action: str) -> str:
        """The request's owner (``ui.access``): its browser's or client's cookie, ``LOCAL`` for direct calls."""
        owner = self.access.request_owner(request)
        if owner is None:  # cannot happen behind ui.access.SessionGuard, which gives every request a cookie
            raise user_error("session: this page has no valid session; reload the page", action)
        return owner

    def _new_run(self, request, owner: str, kind: str) -> Path:
        self.access.sweep()
        if owner != LOCAL and not self.access.claim(_session(request) or "", owner):
            raise user_error("session: this session belongs to another client; reload the page", kind)
        return self.folders.new_run(_session(request), kind, owner)

    def end_session(self, request=None) -> None:
        """Delete the session's folders (called when its tab closes); its uploads become unreachable when it was
        its browser's last tab."""
        owner = self.access.request_owner(request)
        if owner is None:
            return
        self.folders.end(_session(request), owner)
        self.access.end(_session(request), owner)

    # ------------------------------------------------------------------------------------------- report
    def _report(self, result: RunResult) -> dict:
        for w in result.warnings:
            gr.Warning(w)
        files = [str(p) for k, p in result.files.items() if k not in ("grid", "viewer_ply") and Path(p).is_file()]
        out = {"gallery": [(str(p), c) for p, c in result.views], "splat": None, "mesh": None, "video": None,
               "summary": summary_markdown(result), "table": None, "plot": None, "heatmaps": None, "files": files}
        if result.metrics is None:
            return out
        f = result.files
        out.update(splat=str(f["viewer_ply"]), mesh=str(f["glb"]) if "glb" in f else None, video=str(f["mp4"]),
                   table=metrics_table(result.metrics), plot=psnr_plot(result.metrics),
                   heatmaps=str(f["heatmaps"]))
        return out


def lpips_label(metrics: dict) -> str:
    return f"LPIPS ({metrics['lpips_impl']})" if "lpips_impl" in metrics else "LPIPS"


def metrics_table(metrics: dict):
    """Per scored view: view, azimuth, elevation, PSNR, SSIM, LPIPS (column named with its implementation),
    then a mean row."""
    import pandas as pd

    rows = []
    lp = metrics.get("lpips_per_view")
    for k, i in enumerate(metrics["views"]):
        az, el = metrics["view_angles"][k]
        rows.append({"view": str(i), "azimuth °": az, "elevation °": el,
                     "PSNR dB": round(metrics["psnr_per_view"][k], 2), "SSIM": round(metrics["ssim_per_view"][k], 4),
                     lpips_label(metrics): round(lp[k], 4) if lp else None})
    rows.append({"view": "mean", "azimuth °": None, "elevation °": None, "PSNR dB": round(metrics["psnr"], 2),
                 "SSIM": round(metrics["ssim"], 4), lpips_label(metrics): round(metrics["lpips"], 4) if lp else None})
    return pd.DataFrame(rows)


def psnr_plot(metrics: dict):
    """Bar plot data: PSNR per scored view."""
    import pandas as pd

    return pd.DataFrame({"view": [f"view {i}" for i in metrics["views"]],
                         "PSNR dB": [round(v, 2) for v in metrics["psnr_per_view"]]})


def _asset_line(m: dict) -> str:
    """Which views the downloadable asset has seen."""
    if m.get("asset_steps"):
        return (f"The asset (downloads, viewers, video) continued {m['asset_steps']} steps on all "
                f"{len(m['asset_views'])} views ({m['asset_gaussians']} Gaussians).")
    return "The asset (downloads, viewers, video) is this fit."


def summary_markdown(result: RunResult) -> str:
    """The report's headline: protocol, mean metrics (naming the LPIPS implementation), sizes, stage seconds."""
    secs = " · ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    m = result.metrics
    if m is None:
        return f"**{len(result.views)} views generated** (stopped after the views). Time: {secs}."
    lp = f" · **{lpips_label(m)}** {m['lpips']:.4f}" if "lpips" in m else ""
    fit_views = ", ".join(str(i) for i in m["fit_views"])
    scored = ", ".join(str(i) for i in m["views"])
    lines = [f"**Consistency ({m['protocol']})**: fitted on views {fit_views}, scored on views {scored}.",
             f"**PSNR** {m['psnr']:.2f} dB · **SSIM** {m['ssim']:.4f}{lp} — "
             f"fitted views PSNR {m['train_psnr']:.2f} dB.",
             f"{m['n_gaussians']} Gaussians after {m['fit_steps']} steps. " + _asset_line(m) + f" Time: {secs}."]
    lines += [f"⚠ {w}" for w in result.warnings]
    return "\n\n".join(lines)



def mask_line(mask: dict | None) -> str:
    """How the views got their alpha, for the report's headline."""
    if mask is None or mask.get("mode") == "alpha":
        return "**Masks**: the images' alpha channel."
    if mask["mode"] == "none":
        return "**Masks**: none (every pixel counts as object)."
    colour = "#" + "".join(f"{c:02x}" for c in mask["background"])
    return (f"**Masks**: from the background {colour} (estimated from the image borders), tolerance "
            f"{mask['tolerance']:g}; {100 * mask['coverage']:.0f}% of the pixels are object (see the masks below).")


def _masks(run: Path) -> str | None:
    path = run / "upload" / "views" / "masks.png"
    return str(path) if path.is_file() else None


COMPARE_ROWS = (("held-out PSNR dB", "psnr", 2), ("held-out SSIM", "ssim", 4), ("held-out LPIPS", "lpips", 4))


def compare_table(names: list, results: list):
    """Metric rows x one column per upload (held-out PSNR / SSIM / LPIPS, views, Gaussians)."""
    import pandas as pd

    rows = []
    for label, key, digits in COMPARE_ROWS:
        rows.append({"metric": label, **{n: round(r.metrics[key], digits) if key in r.metrics else None
                                         for n, (r, _) in zip(names, results)}})
    rows.append({"metric": "views", **{n: len(r.views) for n, (r, _) in zip(names, results)}})
    rows.append({"metric": "Gaussians", **{n: r.metrics["n_gaussians"] for n, (r, _) in zip(names, results)}})
    return pd.DataFrame(rows)


def compare_plot(names: list, results: list):
    """Bar plot data: held-out PSNR of each upload."""
    import pandas as pd

    return pd.DataFrame({"upload": names, "PSNR dB": [round(r.metrics["psnr"], 2) for r, _ in results]})


def compare_markdown(names: list, results: list) -> str:
    lines = []
    for n, (r, mask) in zip(names, results):
        m = r.metrics
        lp = f" · {lpips_label(m)} {m['lpips']:.4f}" if "lpips" in m else ""
        lines.append(f"**{n}** — {m['protocol']}: PSNR {m['psnr']:.2f} dB · SSIM {m['ssim']:.4f}{lp} "
                     f"({len(r.views)} views). {mask_line(mask)}")
    return "\n\n".join(lines)
