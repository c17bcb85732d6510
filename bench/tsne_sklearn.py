"""scikit-learn Barnes-Hut t-SNE on a float32 file written by bench/tsne.ts (reference only,
never a dependency). Defaults as sklearn's: perplexity 30, 1000 iterations, theta 0.5,
init='pca', learning_rate='auto'.

    python3 bench/tsne_sklearn.py DATA.f32 N DIM OUT.f32   # prints one JSON line
"""
import json
import resource
import sys
import time

import numpy as np

try:
    import sklearn
    from sklearn.manifold import TSNE, trustworthiness
except ImportError:
    sys.exit("scikit-learn is not installed for this python: Debian `sudo apt-get install -y python3-sklearn`, or `pip install scikit-learn`")


def main():
    path, n, dim, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    x = np.fromfile(path, dtype="<f4").reshape(n, dim)
    kw = dict(n_components=2, perplexity=30.0, init="pca", learning_rate="auto", method="barnes_hut", angle=0.5, random_state=0, n_jobs=1)
    # sklearn >= 1.5 renamed n_iter to max_iter
    try:
        model = TSNE(max_iter=1000, **kw)
    except TypeError:
        model = TSNE(n_iter=1000, **kw)
    t0 = time.perf_counter()
    c0 = time.process_time()
    y = model.fit_transform(x).astype("<f4")
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    y.tofile(out)
    info = {"version": sklearn.__version__, "wallS": wall, "cpuS": cpu, "rssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "embedding": out, "kl": float(model.kl_divergence_)}
    if n <= 2000:
        info["sklearnTrust10"] = float(trustworthiness(x, y, n_neighbors=10))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
