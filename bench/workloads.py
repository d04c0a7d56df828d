"""The two workloads of the pipeline suite: docpulse's documents, and arq's no-op floor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.documents import Document
from bench.noop_worker import enqueue_noop
from bench.throughput import Client
from store.enqueue import submit_document

TENANT: Final = "bench"


@dataclass(frozen=True)
class DocumentPipeline:
    """Documents submitted as the web app and `docpulse submit` do, run by `docpulse worker`."""

    documents: list[Document]
    command: tuple[str, ...] = ("-m", "cli", "worker")
    jobs_per_item: int = 3  # parse, chunk, embed

    async def enqueue(self, client: Client, item: int) -> None:
        document = self.documents[item]
        await submit_document(
            client.records,
            client.arq,
            client.keys,
            TENANT,
            filename=document.filename,
            content_type=document.content_type,
            content=document.content,
        )

    async def verify(self, client: Client, items: int) -> None:
        documents, total = await client.records.list_documents(TENANT, limit=items)
        states = [document.state for document in documents]
        if total != items or states.count("done") != items:
            failed = [f"{d.filename}: {d.error}" for d in documents if d.state != "done"]
            raise RuntimeError(f"{total} documents, {states.count('done')} done; {failed[:3]}")


@dataclass(frozen=True)
class NoopChain:
    """arq alone: per item, three no-op jobs that enqueue each other (`bench.noop_worker`)."""

    command: tuple[str, ...] = ("-m", "bench.noop_worker")
    jobs_per_item: int = 3

    async def enqueue(self, client: Client, item: int) -> None:
        await enqueue_noop(client.arq, client.keys, 1, item)

    async def verify(self, client: Client, items: int) -> None:
        return None  # every third job's result is there: nothing else to check
