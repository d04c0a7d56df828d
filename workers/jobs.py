"""The arq jobs: `ingest_document` and one job per stage (names: `docpulse.queue`)."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import numpy as np

from docpulse.tenants import validate_tenant_id
from store.enqueue import submit_document
from workers.attempt import run_stage
from workers.deps import deps_of
from workers.stage_run import StageRun
from workers.stages import DocumentError
from workers.stages.chunk import chunk_text
from workers.stages.parse import ParsedDocument, ParseLimits, detect_kind
from workers.stages.parse import parse_document as parse_content

# work on no more input than this runs on the event loop when it is cheap (StageRun.in_thread)
INLINE_MAX_BYTES: Final = 16 * 1024


async def ingest_document(
    ctx: dict[str, Any], tenant_id: str, filename: str, content: bytes, content_type: str = ""
) -> dict[str, int]:
    """Store a document sent through arq by another service and start its pipeline."""
    deps = deps_of(ctx)
    doc, job = await submit_document(
        deps.records,
        deps.arq,
        deps.keys,
        validate_tenant_id(tenant_id),
        filename=filename,
        content_type=content_type,
        content=bytes(content),
    )
    return {"document_id": doc.document_id, "job_id": job.job_id}


async def parse_document(ctx: dict[str, Any], tenant_id: str, document_id: int, job_id: int) -> str:
    return await run_stage(ctx, "parse", tenant_id, document_id, job_id, _parse)


async def chunk_document(ctx: dict[str, Any], tenant_id: str, document_id: int, job_id: int) -> str:
    return await run_stage(ctx, "chunk", tenant_id, document_id, job_id, _chunk)


async def embed_document(ctx: dict[str, Any], tenant_id: str, document_id: int, job_id: int) -> str:
    return await run_stage(ctx, "embed", tenant_id, document_id, job_id, _embed)


async def _parse(run: StageRun) -> dict[str, Any]:
    records = run.deps.records
    # parsing holds the most memory, so a worker parses a few documents at once (the content is
    # read only once it is this one's turn)
    async with run.deps.parse_turns:
        doc, content = await records.get_source(run.tenant_id, run.document_id)
        if doc is None or content is None:
            raise DocumentError("the document's content is gone (deleted or expired)")
        parsed = await _parse_in_thread(run, content, doc.filename, doc.content_type)
    run.outputs.append(records.text_output(run.tenant_id, run.document_id, parsed.text))
    return {"sections": parsed.sections}


async def _parse_in_thread(
    run: StageRun, content: bytes, filename: str, content_type: str
) -> ParsedDocument:
    settings = run.deps.settings
    return await run.in_thread(
        parse_content,
        content,
        # plain text this small parses in well under a millisecond (HTML and Markdown do not)
        inline=len(content) <= INLINE_MAX_BYTES
        and detect_kind(filename, content_type, content) == "text",
        filename=filename,
        content_type=content_type,
        max_bytes=settings.max_document_bytes,
        limits=ParseLimits(
            max_text_chars=settings.max_text_chars,
            max_pdf_pages=settings.max_pdf_pages,
            max_pdf_content_bytes=settings.max_pdf_content_bytes,
            max_html_depth=settings.max_html_depth,
            max_html_elements=settings.max_html_elements,
        ),
    )


async def _chunk(run: StageRun) -> dict[str, Any]:
    records, settings = run.deps.records, run.deps.settings
    text = await records.get_text(run.tenant_id, run.document_id)
    if text is None:
        raise DocumentError("the document's text is gone (deleted or expired)")
    chunks = await run.in_thread(
        chunk_text,
        text,
        inline=len(text) <= INLINE_MAX_BYTES,  # splitting this much takes well under 1 ms
        size=settings.chunk_size,
        overlap=settings.chunk_overlap,
        max_chunks=settings.max_chunks,
    )
    run.outputs.append(records.chunks_output(run.tenant_id, run.document_id, chunks))
    return {"chunk_count": len(chunks)}


async def _embed(run: StageRun) -> dict[str, Any]:
    records, embedder = run.deps.records, run.deps.embedder
    batch = run.deps.settings.embed_batch
    texts = [c.text for c in await records.get_chunks(run.tenant_id, run.document_id)]
    if not texts:
        raise DocumentError("the document has no chunks to embed")
    for start in range(0, len(texts), batch):
        vectors = await asyncio.to_thread(embedder.embed, texts[start : start + batch])
        data = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
        if start + batch >= len(texts):  # the last batch is written with the job's ending
            output = records.vectors_output(run.tenant_id, run.document_id, data, first=not start)
            run.outputs.append(output)
            break
        # the first batch replaces what an interrupted attempt may have left
        write = records.append_vectors if start else records.set_vectors
        await write(run.tenant_id, run.document_id, data)
        await run.progress(100 * min(start + batch, len(texts)) // len(texts))
    return {"vector_dim": embedder.dim, "state": "done"}
