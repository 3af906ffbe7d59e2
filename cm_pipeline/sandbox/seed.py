"""Seeded synthetic customers: reproducible for a seed, realistic mix, hostile text on purpose.

Two account shapes (`account=`):
  uniform    the sandbox's first shape: seven data sources of similar size, Active the largest status
             (its draw is fixed: the same seed gives byte-identical customers, other tests rely on it)
  realistic  shaped like real accounts (issue 11): ~45% Cancelled and ~35% Active, one Stripe source with
             ~70% of the customers, smaller Recurly / Chargebee / Braintree ones, a Custom one (the API
             creates there), a second Stripe source never imported (no customers); ~2% merged customers (two data
             sources and external ids, tag `merged-customer`) and ~15% of Cancelled customers carrying
             ChartMogul's `auto-churned-delinquent-subscription` tag.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cm_pipeline.chartmogul.vocabulary import STATUSES
from cm_pipeline.sandbox.validation import US_STATES

# The reference pages' data source is always present (a Custom source) so their examples replay as-is.
DOCS_DATA_SOURCE = "ds_fef05d54-47b4-431b-aed2-eb6b9e545430"

DATA_SOURCES: tuple[tuple[str, str, str], ...] = (
    # (uuid, name, billing system)
    (DOCS_DATA_SOURCE, "Custom import", "Custom"),
    ("ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0001", "Stripe EU", "Stripe"),
    ("ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0002", "Stripe US", "Stripe"),
    ("ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0003", "Recurly", "Recurly"),
    ("ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0004", "Chargebee", "Chargebee"),
    ("ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0005", "Braintree", "Braintree"),
    ("ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0006", "CRM import", "Custom"),
)
_DS_WEIGHTS = (10, 25, 20, 15, 12, 8, 10)

REALISTIC_DATA_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("ds_5e0b7a3c-4c1d-11ef-8f2a-0b9d6c1e0001", "Stripe", "Stripe"),
    ("ds_5e0b7a3c-4c1d-11ef-8f2a-0b9d6c1e0002", "Recurly", "Recurly"),
    ("ds_5e0b7a3c-4c1d-11ef-8f2a-0b9d6c1e0003", "Chargebee", "Chargebee"),
    ("ds_5e0b7a3c-4c1d-11ef-8f2a-0b9d6c1e0004", "Braintree", "Braintree"),
    (DOCS_DATA_SOURCE, "Custom import", "Custom"),
    ("ds_5e0b7a3c-4c1d-11ef-8f2a-0b9d6c1e0005", "Stripe (test mode)", "Stripe"),
)
_REALISTIC_DS_WEIGHTS = (70, 9, 6, 4, 11, 0)

# ChartMogul's own tags (it writes them; a PATCH that replaces tags deletes them unless it carries them).
MERGED_TAG = "merged-customer"
AUTO_CHURNED_TAG = "auto-churned-delinquent-subscription"
SYSTEM_TAGS = (MERGED_TAG, AUTO_CHURNED_TAG)

# Account-wide custom attribute definitions of the seeded account (key -> type).
SEED_DEFINITIONS: dict[str, str] = {
    "CAC": "Integer",
    "utmCampaign": "String",
    "convertedAt": "Timestamp",
    "pro": "Boolean",
    "salesRep": "String",
    "channel": "String",
    "healthScore": "Decimal",
    "seats": "Integer",
}

# The API's statuses, customers first, then leads: this order, with these weights, fixes the seeded draw.
# Active 45, Past Due 5, Cancelled 20, New Lead 12, Working Lead 8, Qualified Lead 6, Unqualified Lead 4.
_STATUSES = STATUSES[4:] + STATUSES[:4]
_STATUS_WEIGHTS = (45, 5, 20, 12, 8, 6, 4)
# Realistic: Active 35, Past Due 6, Cancelled 45, New Lead 6, Working Lead 4, Qualified 2, Unqualified 2.
_REALISTIC_STATUS_WEIGHTS = (35, 6, 45, 6, 4, 2, 2)


@dataclass(frozen=True)
class Shape:
    """An account shape: its data sources with their weights, its status weights, and the share of
    merged customers and of Cancelled customers auto-churned by ChartMogul (0 for both: none drawn)."""

    name: str
    data_sources: tuple[tuple[str, str, str], ...]
    ds_weights: tuple[int, ...]
    status_weights: tuple[int, ...]
    merged_share: float = 0.0
    auto_churned_share: float = 0.0
    created_at: str = "2018-01-01T00:00:00.000Z"  # every data source of the shape


ACCOUNTS: dict[str, Shape] = {
    "uniform": Shape("uniform", DATA_SOURCES, _DS_WEIGHTS, _STATUS_WEIGHTS),
    "realistic": Shape(
        "realistic", REALISTIC_DATA_SOURCES, _REALISTIC_DS_WEIGHTS, _REALISTIC_STATUS_WEIGHTS,
        merged_share=0.02, auto_churned_share=0.15, created_at="2019-03-04T10:00:00.000Z",
    ),
}  # fmt: skip


def shape(account: str) -> Shape:
    """The shape named `account`; ValueError naming the known ones otherwise."""
    if account not in ACCOUNTS:
        raise ValueError(f"account must be one of {', '.join(ACCOUNTS)}, got {account!r}")
    return ACCOUNTS[account]


def data_source_records(account: str) -> list[dict]:
    """The data sources of a seeded account as GET /v1/data_sources answers them."""
    sh = shape(account)
    return [
        data_source_record(uuid, name, system, sh.created_at, "idle" if weight else "never_imported")
        for (uuid, name, system), weight in zip(sh.data_sources, sh.ds_weights, strict=True)
    ]


def data_source_record(uuid: str, name: str, system: str, created_at: str, status: str = "idle") -> dict:
    return {"uuid": uuid, "name": name, "system": system, "created_at": created_at, "status": status}


FIRST = ("Anna", "Ben", "Chloé", "Dmitri", "Émile", "Fatima", "György", "Hiro", "Inés", "Jürgen", "Kai",
         "Lena", "Mateo", "Nnamdi", "Olga", "Priya", "Quinn", "Rosa", "Søren", "Tomás", "李", "Ζωή")  # fmt: skip
LAST = ("Smith", "O'Brien", "García", "Müller", "Nguyen", "Kowalski", "D'Angelo", "Østergaard", "田中",
        "Schmidt", "Rossi", "Silva", "Novák", "Hernández", "Çelik", "Ivanov")  # fmt: skip
COMPANY_WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Pied Piper", "Stark", "Wayne",
                 "Tyrell", "Soylent", "Cyberdyne", "Vandelay", "Wonka", "Aperture")  # fmt: skip
COMPANY_SUFFIX = ("Inc", "Ltd", "GmbH", "S.A.", "LLC", "Co", "AG", "BV", "株式会社", "SARL")
# Text that breaks naive CSV/COPY/SQL/JSON handling.
ODD_TEXT = (
    "Robert'); DROP TABLE customers;--",
    'The "Quoted" Company',
    "Back\\slash \\N Ltd",
    "Tab\there & new\nline",
    "100% off; -- $$ dollar $$",
    "🚀 Rocket Émoji 😀",
    "東京ソフト株式会社",
    "Zoë's Café, Inc.",
    "null",
    "\\N",
    "semi;colon|pipe,comma",
    "  leading and trailing  ",
)
TAGS = ("engage", "unit loss", "discountable", "vip", "high-value", "churn-risk", "enterprise", "smb",
        "webinar", "trial", "Prio1", "important", "ünïcødé", "emoji-🎉", "quote'tag", 'dq"tag',
        "semi;colon", "back\\slash")  # fmt: skip
CAMPAIGNS = ("social media 1", "newsletter", "google ads", "partner", "webinar-2024", "ß-campaign")
REPS = ("Gabi", "Mike", "Anna", "Jürgen", "O'Neil", "Zoë")
CHANNELS = ("Facebook", "Twitter", "Google", "Referral", "Direct", "LinkedIn")
CITIES_US = (("Nowhereville", "AK"), ("New York", "NY"), ("San Francisco", "CA"), ("Austin", "TX"),
             ("Seattle", "WA"), ("Boston", "MA"), ("Chicago", "IL"), ("Denver", "CO"))  # fmt: skip
CITIES_OTHER = (("Berlin", "DE"), ("London", "GB"), ("Paris", "FR"), ("Tokyo", "JP"), ("São Paulo", "BR"),
                ("Zürich", "CH"), ("Kraków", "PL"), ("Madrid", "ES"))  # fmt: skip
SHARED_EMAIL_POOL = 40  # a few percent of customers share one of these addresses

_NOW = 1_735_689_600  # 2025-01-01T00:00:00Z: seeded timestamps are all before this, so always "in the past"
_EPOCH_2018 = 1_514_764_800


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def _attribute_ts(epoch: int) -> str:
    """A Timestamp custom attribute as the pages show one ("2023-09-08 00:00:00")."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def _since(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(epoch))


def chartmogul_url(cid: int, label: str | None) -> str:
    slug = "_".join((label or "customer").split())[:40] or "customer"
    return f"https://app.chartmogul.com/#/customers/{cid}-{slug}"


Rand = Callable[[], float]  # random.Random(seed).random: every draw of one generate() call


def _randint(rand: Rand, a: int, b: int) -> int:
    return a + int(rand() * (b - a + 1))  # faster than Random.randint


def _choice(rand: Rand, seq):
    return seq[int(rand() * len(seq))]


def generate(count: int, seed: int, first_id: int = 1, account: str = "uniform") -> Iterator[dict]:
    """Yield `count` customer documents (retrieve shape) for `seed`; ids first_id, first_id+1, ..."""
    sh = shape(account)
    rng = random.Random(seed)
    ds_choices = rng.choices(sh.data_sources, weights=sh.ds_weights, k=count)
    status_choices = rng.choices(_STATUSES, weights=sh.status_weights, k=count)
    # Batch draws for the per-customer picks that every customer needs (much faster than choice()).
    firsts, lasts = rng.choices(FIRST, k=count), rng.choices(LAST, k=count)
    words, suffixes = rng.choices(COMPANY_WORDS, k=count), rng.choices(COMPANY_SUFFIX, k=count)
    us_cities, other_cities = rng.choices(CITIES_US, k=count), rng.choices(CITIES_OTHER, k=count)
    channels = rng.choices(CHANNELS, k=count)
    tag_counts = rng.choices((0, 1, 2, 3), k=count)
    picks = zip(
        ds_choices, status_choices, firsts, lasts, words, suffixes, us_cities, other_cities, channels,
        tag_counts, strict=True,
    )  # fmt: skip
    if not (sh.merged_share or sh.auto_churned_share):
        for i, pick in enumerate(picks):
            yield _customer(rng, seed, first_id + i, i, pick)
        return
    # ChartMogul's own doings draw from a generator of their own, so the customers' draw stays the same.
    extra = random.Random(f"{account}-{seed}").random
    for i, pick in enumerate(picks):
        doc = _customer(rng, seed, first_id + i, i, pick)
        _chartmogul_doings(extra, sh, doc, seed, i)
        yield doc


def _chartmogul_doings(rand: Rand, sh: Shape, doc: dict, seed: int, i: int) -> None:
    """What ChartMogul itself did to a seeded customer: merged it with a record of another data source,
    auto-churned it (Cancelled only). Each adds its system tag."""
    if rand() < sh.merged_share:
        others = [(ds, w) for ds, w in zip(sh.data_sources, sh.ds_weights, strict=True)
                  if w and ds[0] != doc["data_source_uuid"]]  # fmt: skip
        ds_uuid, _, system = _weighted(rand, others)
        merge_record(doc, [ds_uuid], [f"{system.lower()}_{seed}_{i}_merged"])
    if doc["status"] == "Cancelled" and rand() < sh.auto_churned_share:
        add_tag(doc, AUTO_CHURNED_TAG)


def _weighted(rand: Rand, weighted: list[tuple[tuple, int]]) -> tuple:
    """One item of (item, weight) pairs, drawn in proportion to the weights."""
    pick = rand() * sum(w for _, w in weighted)
    for item, weight in weighted:
        pick -= weight
        if pick < 0:
            return item
    return weighted[-1][0]


def merge_record(doc: dict, data_source_uuids: list[str], external_ids: list[str]) -> None:
    """`doc` absorbs customer records of other data sources, as ChartMogul's merge does: their data sources
    and external ids join data_source_uuids and external_ids (the primary's stay first) and the customer
    gets the `merged-customer` tag."""
    doc["data_source_uuids"] = list(
        dict.fromkeys([*(doc.get("data_source_uuids") or []), *data_source_uuids])
    )
    doc["external_ids"] = list(dict.fromkeys([*(doc.get("external_ids") or []), *external_ids]))
    add_tag(doc, MERGED_TAG)


def add_tag(doc: dict, tag: str) -> None:
    attributes = doc.get("attributes")
    if not isinstance(attributes, dict):
        attributes = doc["attributes"] = {"tags": [], "custom": {}, "stripe": {}}
    if not isinstance(attributes.get("tags"), list):
        attributes["tags"] = []
    if tag not in attributes["tags"]:
        attributes["tags"].append(tag)


def _customer(rng: random.Random, seed: int, cid: int, i: int, pick: tuple) -> dict:
    """Customer number `i` of a seed's draw, with id `cid`."""
    rand = rng.random
    (ds_uuid, _, system), status, first, last, word, suffix, us_city, other_city, channel, ntags = pick
    h = f"{rng.getrandbits(128):032x}"
    cuuid = f"cus_{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
    external_id = f"cus_{h[20:]}{i:x}" if system == "Stripe" else f"{system.lower()}_{seed}_{i}"
    roll = rand()
    name = _choice(rand, ODD_TEXT) if roll < 0.04 else f"{first} {last}"
    company = _choice(rand, ODD_TEXT) if roll > 0.96 else f"{word} {suffix}"
    email = _email(rand, seed, i)
    city, state, country, address = _place(rand, us_city, other_city)
    lead_at, lead_created_at, trial, customer_since, mrr = _history(rand, status)
    tags = list(dict.fromkeys(_choice(rand, TAGS) for _ in range(ntags))) if ntags else []
    custom = _custom(rand, channel, lead_at)
    if system == "Stripe":
        stripe = {"uid": _randint(rand, 1, 10**6), "coupon": rand() < 0.2}
        billing_url = f"https://dashboard.stripe.com/customers/{external_id}"
    else:
        stripe, billing_url = {}, None
    return {
        "id": cid,
        "uuid": cuuid,
        "external_id": external_id,
        "external_ids": [external_id],
        "data_source_uuid": ds_uuid,
        "data_source_uuids": [ds_uuid],
        "name": name,
        "email": email,
        "company": company,
        "status": status,
        "lead_created_at": lead_created_at,
        "free_trial_started_at": trial if (trial and lead_created_at) else None,
        "customer-since": customer_since,
        "zip": address["address_zip"],
        "city": city,
        "state": state,
        "country": country,
        "address": address,
        "attributes": {"tags": tags, "custom": custom, "stripe": stripe},
        "mrr": mrr,
        "arr": mrr * 12,
        "billing-system-type": system,
        "billing-system-url": billing_url,
        "chartmogul-url": chartmogul_url(cid, company),
        "currency": "USD",
        "currency-sign": "$",
        "owner": "owner@example.com" if rand() < 0.1 else None,
        "website_url": f"https://www.example{i % 997}.com" if rand() < 0.3 else None,
    }


def _email(rand: Rand, seed: int, i: int) -> str:
    if rand() < 0.03:
        k = _randint(rand, 0, SHARED_EMAIL_POOL - 1)
        return f"billing{k}@shared.example.com" if rand() < 0.7 else f"Billing{k}@Shared.Example.com"
    return f"user{seed}.{i}@example.com"


def _place(rand: Rand, us_city: tuple, other_city: tuple) -> tuple[str, str | None, str, dict]:
    """(city, state code, country, address): 70% in the US."""
    if rand() < 0.7:
        city, state = us_city
        address = {"address_zip": f"{_randint(rand, 501, 99950):05d}", "city": city,
                   "state": US_STATES[state], "country": "US"}  # fmt: skip
        return city, state, "US", address
    city, country = other_city
    address = {"address_zip": str(_randint(rand, 1000, 99999)), "city": city, "state": None,
               "country": country}  # fmt: skip
    return city, None, country, address


def _history(rand: Rand, status: str) -> tuple[int, str | None, str | None, str | None, int]:
    """(lead epoch, lead_created_at, trial start, customer-since, mrr) for a customer of `status`."""
    is_lead = status.endswith("Lead")
    lead_at = _EPOCH_2018 + _randint(rand, 0, _NOW - _EPOCH_2018 - 86400 * 60)
    lead_created_at = _ts(lead_at) if (is_lead or rand() < 0.5) else None
    trial = _ts(lead_at + _randint(rand, 0, 86400 * 30)) if rand() < 0.4 else None
    if is_lead:
        return lead_at, lead_created_at, trial, None, 0
    customer_since = _since(lead_at + _randint(rand, 86400, 86400 * 45))
    mrr = 0 if status == "Cancelled" else _randint(rand, 10, 5000) * 100 + _choice(rand, (0, 0, 50, 99))
    return lead_at, lead_created_at, trial, customer_since, mrr


def _custom(rand: Rand, channel: str, lead_at: int) -> dict:
    custom: dict = {}
    if rand() < 0.8:
        custom["CAC"] = _randint(rand, 0, 2000)
        custom["channel"] = channel
    if rand() < 0.5:
        custom["utmCampaign"] = _choice(rand, CAMPAIGNS)
        custom["pro"] = rand() < 0.5
    if rand() < 0.4:
        custom["convertedAt"] = _attribute_ts(lead_at + _randint(rand, 0, 86400 * 90))
        custom["healthScore"] = round(rand() * 100, 2)
    if rand() < 0.3:
        custom["salesRep"] = _choice(rand, REPS)
        custom["seats"] = _randint(rand, 1, 500)
    return custom
