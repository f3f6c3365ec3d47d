"""The term-level audio<->term retriever (seeds 001/002): towers, loss, data from packed shards,
evaluation against the whole glossary, and the training loop (`python -m asr_distill.retrieval.train`)."""
