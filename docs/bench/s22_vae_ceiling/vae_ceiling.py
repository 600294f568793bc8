"""How much of the attribute judgement survives the latent space alone? For each caption that
`mvgen evaluate attributes --split heldout --limit 24` scores (same captions, rigs and judge), the true views are
encoded by the shipped VAE and decoded again (the latent mean, no sampling), and the round trip is judged as if it
were a generated sample. A miss here is a miss no transformer can fix at this latent size.

    python docs/bench/s22_vae_ceiling/vae_ceiling.py [out.json]
"""

import json
import sys

import torch
from diffusers import AutoencoderKL

from mvgen.data.captions import parse_caption
from mvgen.evaluate import eval_rig, render_truth
from mvgen.evaluate_attributes import attribute_rows, nearest, specs_for
from mvgen.metrics import get_lpips, psnr

torch.set_num_threads(2)
vae = AutoencoderKL.from_pretrained("assets/mvgen-tiny/vae").eval()
lpips_fn = get_lpips()
rows = attribute_rows(specs_for("heldout", 24, 0, with_part=True))
out, hits = [], {}
with torch.no_grad():
    for i, row in enumerate(rows):
        rig = eval_rig(i, 8, 128, 0)
        truth = render_truth(row["prompt"], rig)
        z = vae.encode(truth * 2 - 1).latent_dist.mean
        back = ((vae.decode(z).sample + 1) / 2).clamp(0, 1)
        got = {a: nearest(back, row["spec"], a, rig, lpips_fn) for a in row["attributes"]}
        r = {"prompt": row["prompt"], "psnr": round(float(psnr(back, truth).mean()), 2),
             "hits": {a: got[a] == row["spec"] for a in got}, "nearest": {a: getattr(got[a], a) for a in got}}
        for a, h in r["hits"].items():
            hits.setdefault(a, []).append(h)
        out.append(r)
        print(i, r, flush=True)
acc = {a: sum(h) / len(h) for a, h in hits.items()}
print("accuracy of the VAE round trip:", acc)
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump({"what": "VAE round trip of the true views, judged like a sample", "accuracy": acc, "rows": out},
                  f, indent=2)
