"""``smoothgan serve`` / ``smoothgan batch`` benchmark (the code lives in :mod:`smoothgan.serving.benchmark`).

    python benchmarks/serve_bench.py --clients 16 --requests 20 --files 200 --threads 1 --out benchmarks/results
"""

from smoothgan.serving.benchmark import main

if __name__ == "__main__":
    main()
