import functools, sys, time, os
os.environ["MPLBACKEND"] = "Agg"
from pathlib import Path
from llava_mini import zoo
root = Path(os.environ.get("ZOO_ROOT", zoo.ZOO_DIR))
_load, _man = zoo.load, zoo.read_manifest
zoo.load = lambda name, root=root: _load(name, root)
zoo.read_manifest = lambda root=root: _man(root)
import matplotlib.pyplot as plt
plt.show = lambda *a, **k: plt.close("all")
src = Path(sys.argv[1]).read_text()
start = time.perf_counter()
g = {"__name__": "__main__"}
for chunk in src.split("\n# %%CELL ")[1:]:
    head, body = chunk.split("\n", 1)
    if head in os.environ.get("SKIP", "").split(","):
        print(f"[cell {head}: skipped]", file=sys.stderr)
        continue
    t0 = time.perf_counter()
    exec(compile(body, f"cell{head}", "exec"), g)
    print(f"[cell {head}: {time.perf_counter() - t0:.1f}s]", file=sys.stderr)
print("TOTAL", round(time.perf_counter() - start, 1), file=sys.stderr)
