"""How much the shipped storage changes the views: the same prompts, seeds and cameras sampled (fp32, 20 steps)
from a checkpoint's float32 weights and from its exports in bfloat16 and in 8 bits (`export-model --dtype int8`);
PSNR of each export's views against the float32 views (higher = closer; the generator's own error against ground
truth is ~22 dB). Usage:
  python docs/bench/s26_deep/storage_vs_fp32.py CHECKPOINT_PIPELINE BF16_EXPORT INT8_EXPORT OUT.json"""

import json
import sys

import torch

from mvgen.pipeline import PTDiTMultiViewPipeline

PROMPTS = ["a red chair with white legs", "a tall purple donut with green sprinkles", "a wide red table with black legs",
           "a green bowl with an orange rim", "a tall blue mushroom with a red stem", "a pink car with gray wheels"]


def views(folder):
    pipe = PTDiTMultiViewPipeline.from_pretrained(folder)
    out = []
    for i, p in enumerate(PROMPTS):
        g = torch.Generator().manual_seed(i)
        out.append(pipe(p, num_views=8, generator=g, output_type="pt", autocast=False).images.float())
    return out


def psnr(a, b):
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def main():
    ref_dir, bf16_dir, int8_dir, out = sys.argv[1:5]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ref = views(ref_dir)
    rows = {}
    for name, folder in (("bfloat16", bf16_dir), ("int8", int8_dir)):
        got = views(folder)
        rows[name] = [psnr(a, b) for a, b in zip(got, ref)]
    rep = {"prompts": PROMPTS, "reference": ref_dir, "psnr_vs_fp32": rows,
           "mean": {k: sum(v) / len(v) for k, v in rows.items()}}
    json.dump(rep, open(out, "w"), indent=1)
    print(json.dumps(rep["mean"]))


if __name__ == "__main__":
    main()
