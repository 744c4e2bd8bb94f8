"""Folder jobs: resolve inputs, decode ahead in threads, batch across images, write results atomically, resume.

``smoothgan translate INPUT...`` and :meth:`Translator.translate_folder` / :meth:`Translator.iter_translate` run
here. The pipeline has three stages and bounded queues between them, so memory does not grow with the folder:

1. a small thread pool decodes and preprocesses the next ``prefetch`` images (Pillow releases the GIL);
2. the calling thread groups decoded images into batches of ``batch_size`` generator rows (an image with K
   styles or K interpolation steps is K rows) and runs the translator's batched calls, one group at a time;
3. a writer thread saves each input's outputs atomically and only then appends its ``manifest.jsonl`` line.

A manifest line therefore means "all outputs of this input are complete", which is what ``resume`` trusts: an
input is skipped when its last line says ``ok`` for the same job (domain, seed, styles, model) and its outputs
exist. A ``kill -9`` at any moment leaves complete outputs, at most one torn manifest line (dropped on resume)
and staging leftovers of the killed process, which :mod:`smoothgan.fileio` removes when the same output is
written again. Decoding, batching and writing overlap: the writer uses a small pool of threads.

Modules: :mod:`~smoothgan.jobs.inputs` (resolve and check), :mod:`~smoothgan.jobs.stream` (decode, batch,
translate), :mod:`~smoothgan.jobs.folder` (layouts, manifest, resume, writer).
"""

from __future__ import annotations

from smoothgan.jobs.folder import (LAYOUTS, FolderPlan, FolderSummary, execute, flat_outputs, make_record, open_manifest,
                                   plan_folder, read_manifest, record_line, run_folder, write_outputs)
from smoothgan.jobs.inputs import (MANIFEST, InputFile, InputSpec, check_header, resolve_inputs, unique_names,
                                   walk_images)
from smoothgan.jobs.stream import ItemResult, JobOptions, iter_results, make_options, stream

__all__ = ["MANIFEST", "LAYOUTS", "InputSpec", "InputFile", "JobOptions", "ItemResult", "FolderSummary",
           "FolderPlan", "resolve_inputs", "walk_images", "unique_names", "check_header", "make_options", "stream",
           "iter_results", "read_manifest", "flat_outputs", "write_outputs", "make_record", "record_line",
           "plan_folder", "open_manifest", "execute", "run_folder"]
