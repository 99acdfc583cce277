"""The shipped styles' weights inside the GPU bundle's executables, taken out and put back.

Every stylemill executable embeds the five styles (about 17 MB that barely compress), and the
project tree, which travels to the GPU machine anyway, holds the same bytes in models/. So the
bundle stores its executables with those bytes zeroed, and scripts/gpu-check.sh puts them back
from the tree; the restored files are checked against the SHA-256 of the built ones.

Usage: python3 bundle_weights.py strip|restore BUNDLE_DIR MODELS_DIR
"""
import hashlib
import json
import pathlib
import sys

MANIFEST = "weights.json"


def executables(bundle):
    return sorted(p for p in (bundle / "elf").iterdir() if p.is_file())


def styles(models):
    return {p.name: p.read_bytes() for p in sorted(models.glob("*.safetensors"))}


def strip(bundle, models):
    weights = styles(models)
    manifest = {}
    for path in executables(bundle):
        data = bytearray(path.read_bytes())
        digest = hashlib.sha256(data).hexdigest()
        places = []
        for name, blob in weights.items():
            start = data.find(blob)
            while start != -1:
                places.append([name, start])
                data[start : start + len(blob)] = bytes(len(blob))
                start = data.find(blob, start + len(blob))
        path.write_bytes(data)
        manifest[path.name] = {"sha256": digest, "weights": places}
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def restore(bundle, models):
    weights = styles(models)
    manifest = json.loads((bundle / MANIFEST).read_text())
    for name, entry in manifest.items():
        path = bundle / "elf" / name
        data = bytearray(path.read_bytes())
        for style, start in entry["weights"]:
            blob = weights[style]
            data[start : start + len(blob)] = blob
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            sys.exit(f"{path}: the restored file differs from the one built; are {models}'s styles those it was built with?")
        path.write_bytes(data)


if __name__ == "__main__":
    action, bundle, models = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    manifest = {"strip": strip, "restore": restore}[action](bundle, models)
    if action == "strip":
        for name, entry in manifest.items():
            print(f"{name}: {len(entry['weights'])} embedded styles taken out")
