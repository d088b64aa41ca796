"""Texts shared by the fixture builder (vocabularies) and the recorders (requests).

Plain data, no imports: it is read under both venvs. The golden files carry every request in
full, so ``tests/test_vllm_reference.py`` does not import this module.
"""

from __future__ import annotations

QUERY = "what is the capital of france?"
QUERIES = [QUERY, "vitamin c and scurvy"]
DOCS = [
    "paris is the capital and largest city of france",
    "berlin is in germany",
    "sailors got scurvy from a lack of vitamin c, yes",
    "the quick brown fox jumps over the lazy dog",
    "bm25 is a ranking function",
]
# N:N needs as many queries as documents.
NN_QUERIES = [QUERIES[i % 2] for i in range(len(DOCS))]
# Equal inputs must score bit-identically whatever their batch position.
SAME_DOCS = [DOCS[0], DOCS[1], DOCS[0], DOCS[3], DOCS[0]]
# Longer than every fixture's max_model_len (128 for encoders, 256 for decoders).
LONG_DOC = "the quick brown fox jumps over the lazy dog " * 40
INSTRUCTION = "find passages about cities"

# Words the tokenizers must know (WordPiece vocabularies are written out from these).
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a cat sat on the mat and looked at the dog",
    "vitamin c deficiency causes scurvy in sailors",
    "the stock market fell sharply on monday morning",
    "paris is the capital and largest city of france",
    "neural networks learn representations from data",
    "what is the capital of france? berlin is in germany.",
    "bm25 is a ranking function used by search engines",
    "sailors got scurvy from a lack of vitamin c, yes",
    "find passages about cities",
    "query: document: question: passage: relevance: instruction:",
    "yes no Yes No 0 1",
]
