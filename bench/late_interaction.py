"""Late-interaction rerank of 100 SciFact passages with the real all-MiniLM-L6-v2, cold and cached.

The contenders and how they are timed are described in bench/embedding_rerank.py.
Run: ``python -m bench.late_interaction [--quick] [--json]``.
"""

from __future__ import annotations

from bench.embedding_rerank import main

if __name__ == "__main__":
    raise SystemExit(main(kinds=("late-interaction",)))
