"""Command-line options: ours in a PipelineOptions subclass; every other flag goes to Beam."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class DistillOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input_index", help="Index file(s): JSONL, Parquet or WebDataset .tar shards, globs allowed.")
        parser.add_argument("--output", help="Output directory (local path or any FileSystems scheme).")
        parser.add_argument("--config", default=None, help="YAML config file (defaults apply without one).")
        parser.add_argument("--backend", default=None, help="ASR backend, overriding the config's.")
        parser.add_argument("--resume", action="store_true", default=False,
                            help="Finish an interrupted run (or add new index rows to a finished one): keys "
                            "with a transcript in --output are skipped, segments already transcribed reused.")
        parser.add_argument("--skip_failed", action="store_true", default=False,
                            help="With --resume: also skip keys that already have a file-level failure "
                            "record (default: try them again).")
        parser.add_argument("--stop_after", choices=["segment"], default=None,
                            help="'segment': write segments-*.jsonl instead of transcribing.")
        parser.add_argument("--glossary", default=None,
                            help="Glossary JSON (a list of terms, or {terms, alt2main}): also cut term chunks for "
                            "the retriever (term_chunks-*.jsonl and term-shards/ in --output).")
        parser.add_argument("--retriever", default=None,
                            help="With --glossary: a trained term retriever (final.pt) that finds each segment's "
                            "likely glossary terms and puts them in the teacher's prompt (terms.retriever).")
        parser.add_argument("--quiet", action="store_true", default=False,
                            help="No live progress line (for CI logs); the summary at the end is still printed.")
