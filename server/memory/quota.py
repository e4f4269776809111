"""Per-tenant quotas on the correction memory: records, and bytes of stored text.

Why: ``/cot/edit`` stores what a client sends, so without a bound one API key could fill the
disk and slow every tenant's recall. ``MemoryQuota`` keeps each tenant's usage (records, and
UTF-8 bytes of the text fields, ``record_bytes``) in memory: read from the store once at
startup (``MemoryStore.usage``), then kept current by the service's ``remember`` and
``delete``.

A request that would store ``reserve``s one record and the bytes it brings (question, mistake,
corrected prefix, feedback) *before anything is generated*; over a limit it is a
``QuotaExceededError`` (429 ``insufficient_quota``) and nothing runs. The reservation counts
against later requests until it is ``commit``ted with the stored record's real size, or
``release``d when the request ends without storing (a refusal, an error, a disconnect), so
concurrent requests cannot overshoot the record limit. What the model writes is not known
beforehand: the bytes limit can be passed by at most that part of the last record (bounded
by ``TEXT_LIMITS``), never refused after generating.

With SQLite, records imported with ``safework memory import`` while the server runs are
counted at its next start. With a shared PostgreSQL store each change another process makes
(a replica, an import) refreshes the tenant's usage from the database as it is announced;
requests racing on several replicas can each pass a limit by one record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from safework.errors import QuotaExceededError
from safework.memory.records import TEXT_LIMITS

MiB = 2**20


def text_bytes(*texts: str | None) -> int:
    """UTF-8 bytes of ``texts`` (None counts 0).

    >>> text_bytes("abc", None, "é")
    5
    """
    return sum(len(t.encode()) for t in texts if t)


def record_bytes(fields: Mapping[str, object]) -> int:
    """What a record's text fields (the keys of ``TEXT_LIMITS``) weigh against the quota."""
    return text_bytes(*(v for k, v in fields.items() if k in TEXT_LIMITS and isinstance(v, str)))


@dataclass
class Usage:
    records: int = 0
    bytes: int = 0


class Reservation:
    """One request's claim on its tenant's quota, until it stores or ends."""

    def __init__(self, quota: MemoryQuota, tenant: str, size: int) -> None:
        self.quota, self.tenant, self.size = quota, tenant, size
        self.open = True

    def release(self) -> None:
        """Give the claim back (idempotent)."""
        if self.open:
            self.open = False
            self.quota._settle(self.tenant, Usage(1, self.size), pending=True)

    def commit(self, size: int) -> None:
        """The record was stored with ``size`` bytes: it now counts as used."""
        self.release()
        self.quota.added(self.tenant, size)


class MemoryQuota:
    """Each tenant's records and bytes, used and reserved; 0 as a limit means none."""

    def __init__(
        self, max_records: int, max_bytes: int, used: Mapping[str, tuple[int, int]] | None = None
    ) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.used: defaultdict[str, Usage] = defaultdict(Usage)
        self.pending: defaultdict[str, Usage] = defaultdict(Usage)
        for tenant, (records, size) in (used or {}).items():
            self.used[tenant] = Usage(records, size)

    def usage(self, tenant: str) -> Usage:
        """Used and reserved together."""
        used, pending = self.used.get(tenant, Usage()), self.pending.get(tenant, Usage())
        return Usage(used.records + pending.records, used.bytes + pending.bytes)

    def reserve(self, tenant: str, size: int) -> Reservation:
        """Claim one record of at least ``size`` bytes, or refuse (``QuotaExceededError``)."""
        now = self.usage(tenant)
        if self.max_records and now.records + 1 > self.max_records:
            raise self._refusal(f"{now.records} of {self.max_records} records")
        if self.max_bytes and now.bytes + size > self.max_bytes:
            raise self._refusal(
                f"{now.bytes / MiB:.1f} of {self.max_bytes / MiB:.1f} MiB, and this correction "
                f"brings {size / 1024:.1f} KiB"
            )
        pending = self.pending[tenant]
        pending.records, pending.bytes = pending.records + 1, pending.bytes + size
        return Reservation(self, tenant, size)

    def set_used(self, tenant: str, records: int, size: int) -> None:
        """The tenant's stored usage as the database now has it (another process wrote)."""
        if records or size:
            self.used[tenant] = Usage(records, size)
        else:
            self.used.pop(tenant, None)

    def added(self, tenant: str, size: int) -> None:
        used = self.used[tenant]
        used.records, used.bytes = used.records + 1, used.bytes + size

    def removed(self, tenant: str, size: int) -> None:
        self._settle(tenant, Usage(1, size), pending=False)

    def _settle(self, tenant: str, amount: Usage, *, pending: bool) -> None:
        table = self.pending if pending else self.used
        usage = table[tenant]
        usage.records = max(0, usage.records - amount.records)
        usage.bytes = max(0, usage.bytes - amount.bytes)
        if not usage.records and not usage.bytes:
            del table[tenant]

    @staticmethod
    def _refusal(detail: str) -> QuotaExceededError:
        return QuotaExceededError(
            f"This API key's correction memory is full ({detail}). Delete corrections "
            "(DELETE /v1/memory/{id}) or send remember=false.",
            param="remember",
            code="memory_quota_exceeded",
        )
