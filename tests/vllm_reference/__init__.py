"""vLLM as the reference (issue 11): tiny committed checkpoints, recorders, shared texts.

* ``build_fixtures.py`` writes ``tests/fixtures/vllm/<name>/`` (run once; the files are
  committed so that vLLM's venv and ours load the very same bytes).
* ``record_offline.py`` / ``record_server.py`` run under ``.venv-vllm`` (vLLM 0.32 CPU) and write
  ``tests/golden/vllm/*.json``; ``make vllm-reference`` does all of it.
* ``tests/test_vllm_reference.py`` replays the golden files against our engine (no vLLM needed).
"""
