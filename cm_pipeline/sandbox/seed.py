"""Seeded synthetic customers: reproducible for a seed, realistic mix, hostile text on purpose."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

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


def generate(count: int, seed: int, first_id: int = 1) -> Iterator[dict]:
    """Yield `count` customer documents (retrieve shape) for `seed`; ids first_id, first_id+1, ..."""
    rng = random.Random(seed)
    ds_choices = rng.choices(range(len(DATA_SOURCES)), weights=_DS_WEIGHTS, k=count)
    status_choices = rng.choices(_STATUSES, weights=_STATUS_WEIGHTS, k=count)
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
    for i, pick in enumerate(picks):
        yield _customer(rng, seed, first_id + i, i, pick)


def _customer(rng: random.Random, seed: int, cid: int, i: int, pick: tuple) -> dict:
    """Customer number `i` of a seed's draw, with id `cid`."""
    rand = rng.random
    ds_index, status, first, last, word, suffix, us_city, other_city, channel, ntags = pick
    ds_uuid, _, system = DATA_SOURCES[ds_index]
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
