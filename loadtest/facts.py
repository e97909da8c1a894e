"""Gathering what the run left behind, while Redis, the store and the stub still answer."""

from __future__ import annotations

from pathlib import Path

import httpx
from redis.asyncio import Redis

from imagequeue_common.errors import CharacterNotFoundError, JobNotFoundError
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings
from imagequeue_common.store import CharacterStore
from loadtest.campaign import Plan, Results, read_results
from loadtest.checks import Facts, JobFacts
from loadtest.locust_csv import read_exceptions, read_failures, read_stats
from loadtest.options import Options


def load_results(path: Path) -> Results | None:
    """The Locust process's results, or None when it wrote none."""
    return read_results(path) if path.exists() else None


def count_files(assets_dir: Path) -> int:
    """Image files written under ``ASSETS_DIR/characters``."""
    return sum(1 for _ in (assets_dir / "characters").glob("*.png"))


async def job_facts(ledger: JobLedger, job_ids: list[str]) -> list[JobFacts]:
    """Each job as the queue recorded it; jobs the queue no longer has are left out."""
    found = []
    for job_id in job_ids:
        try:
            job = await ledger.get_job(job_id)
        except JobNotFoundError:
            continue
        found.append(JobFacts(job.id, job.priority.value, job.state.value, job.created_at,
                              job.started_at, job.finished_at, job.attempts,
                              job.user))  # fmt: skip
    return found


async def image_counts(store: CharacterStore, character_ids: list[str]) -> dict[str, int]:
    """Character id → images the store holds for it (-1 when the character is missing)."""
    counts = {}
    for character_id in character_ids:
        try:
            counts[character_id] = len((await store.get_character(character_id)).display_image_urls)
        except CharacterNotFoundError:
            counts[character_id] = -1
    return counts


class Gatherer:
    """Reads the queue, the store, the stub and Locust's files for one finished run."""

    def __init__(
        self, options: Options, client: Redis, store: CharacterStore, *, queue: str,
        stub_url: str, assets_dir: Path,
    ) -> None:  # fmt: skip
        self.options = options
        self.client = client
        self.store = store
        self.queue = queue
        self.ledger = JobLedger(client, Settings(queue_name=queue))
        self.stub_url = stub_url
        self.assets_dir = assets_dir

    async def gather(
        self, plan: Plan, locust_exit: int | None, csv_prefix: Path, results_path: Path
    ) -> Facts:
        """Everything the checks and the report need."""
        results = load_results(results_path)
        outcomes = results.outcomes if results else []
        job_ids = [o.job_id for o in outcomes if o.job_id]
        character_ids = [o.character_id for o in outcomes if o.character_id]
        async with httpx.AsyncClient(timeout=10) as http:
            stub = (await http.get(f"{self.stub_url}/stub/stats")).raise_for_status().json()
        per_user = {c.user_id: await self.store.count_characters(c.user_id) for c in plan.clients}
        server = await self.client.info("server")
        return Facts(
            options=self.options, queue=self.queue, locust_exit=locust_exit,
            stats=read_stats(csv_prefix),
            failures=read_failures(csv_prefix), exceptions=read_exceptions(csv_prefix),
            results=results, jobs=await job_facts(self.ledger, job_ids),
            images=await image_counts(self.store, character_ids), characters_per_user=per_user,
            planned={c.user_id: c.characters for c in plan.clients},
            files=count_files(self.assets_dir), stub_peak_per_second=stub["peak_per_second"],
            stub_submissions=stub["submissions"], stub_statuses=stub["statuses"],
            redis_version=str(server.get("redis_version", "?")),
        )  # fmt: skip
