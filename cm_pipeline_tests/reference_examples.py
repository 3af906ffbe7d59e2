"""The customer examples of the ChartMogul reference pages (list-customers.txt, retrieve-customer.txt), verbatim;
shared by the sandbox conformance tests and the warehouse mapping tests."""

from __future__ import annotations

from datetime import datetime, timezone

# list-customers.txt, the JSON response's first entry, verbatim.
LIST_EXAMPLE = {
    "id": 25647,
    "uuid": "cus_de305d54-75b4-431b-adb2-eb6b9e546012",
    "external_id": "34916129",
    "name": "Example Company",
    "email": "[email protected]",
    "status": "Active",
    "customer-since": "2023-06-09T13:16:00-04:00",
    "attributes": {
        "tags": ["engage", "unit loss", "discountable"],
        "stripe": {"uid": 7, "coupon": True},
        "custom": {
            "CAC": 213,
            "utmCampaign": "social media 1",
            "convertedAt": "2023-09-08 00:00:00",
            "pro": False,
            "salesRep": "Gabi",
        },
    },
    "address": {"address_zip": "0185128", "city": "Nowhereville", "state": "Alaska", "country": "US"},
    "data_source_uuid": "ds_fef05d54-47b4-431b-aed2-eb6b9e545430",
    "data_source_uuids": ["ds_fef05d54-47b4-431b-aed2-eb6b9e545430"],
    "external_ids": ["34916129"],
    "company": "",
    "country": "US",
    "state": "AK",
    "city": "Nowhereville",
    "zip": "0185128",
    "lead_created_at": None,
    "free_trial_started_at": None,
    "mrr": 3000,
    "arr": 36000,
    "billing-system-url": "https://dashboard.stripe.com/customers/cus_4Z2ZpyJFuQ0XMb",
    "chartmogul-url": "https://app.chartmogul.com/#customers/25647-Example_Company",
    "billing-system-type": "Stripe",
    "currency": "USD",
    "currency-sign": "$",
}

# retrieve-customer.txt, the JSON response, verbatim (it adds owner and website_url).
RETRIEVE_EXAMPLE = {
    "id": 25647,
    "uuid": "cus_de305d54-75b4-431b-adb2-eb6b9e546012",
    "external_id": "34916129",
    "external_ids": ["34916129"],
    "data_source_uuid": "ds_fef05d54-47b4-431b-aed2-eb6b9e545430",
    "data_source_uuids": ["ds_fef05d54-47b4-431b-aed2-eb6b9e545430"],
    "name": "Example Company",
    "email": "[email protected]",
    "company": "",
    "status": "Active",
    "lead_created_at": None,
    "free_trial_started_at": None,
    "customer-since": "2023-06-09T13:16:00-04:00",
    "zip": "0185128",
    "city": "Nowhereville",
    "state": "AK",
    "country": "US",
    "address": {"address_zip": "0185128", "city": "Nowhereville", "state": "Alaska", "country": "US"},
    "attributes": {
        "tags": ["engage", "unit loss", "discountable"],
        "custom": {
            "CAC": 213,
            "utmCampaign": "social media 1",
            "convertedAt": "2023-09-08 00:00:00",
            "pro": False,
            "salesRep": "Gabi",
        },
        "stripe": {"uid": 7, "coupon": True},
    },
    "mrr": 3000,
    "arr": 36000,
    "billing-system-type": "Stripe",
    "billing-system-url": "https://dashboard.stripe.com/customers/cus_4Z2ZpyJFuQ0XMb",
    "chartmogul-url": "https://app.chartmogul.com/#/customers/25647-Example_Company",
    "currency": "USD",
    "currency-sign": "$",
    "owner": None,
    "website_url": "https://example.com",
}


def expected_columns(entry: dict) -> dict:
    """Every data column the reference examples must map to, written out by hand from the pages."""
    return {
        "uuid": "cus_de305d54-75b4-431b-adb2-eb6b9e546012",
        "id": 25647,
        "external_id": "34916129",
        "external_ids": ["34916129"],
        "data_source_uuid": "ds_fef05d54-47b4-431b-aed2-eb6b9e545430",
        "data_source_uuids": ["ds_fef05d54-47b4-431b-aed2-eb6b9e545430"],
        "name": "Example Company",
        "email": "[email protected]",
        "company": "",
        "status": "Active",
        "customer_since": datetime(2023, 6, 9, 17, 16, tzinfo=timezone.utc),
        "lead_created_at": None,
        "free_trial_started_at": None,
        "country": "US",
        "state": "AK",
        "city": "Nowhereville",
        "zip": "0185128",
        "address": {"address_zip": "0185128", "city": "Nowhereville", "state": "Alaska", "country": "US"},
        "tags": ["engage", "unit loss", "discountable"],
        "custom_attributes": {
            "CAC": 213,
            "utmCampaign": "social media 1",
            "convertedAt": "2023-09-08 00:00:00",
            "pro": False,
            "salesRep": "Gabi",
        },
        "stripe": {"uid": 7, "coupon": True},
        "mrr": 3000,
        "arr": 36000,
        "currency": "USD",
        "currency_sign": "$",
        "billing_system_type": "Stripe",
        "billing_system_url": "https://dashboard.stripe.com/customers/cus_4Z2ZpyJFuQ0XMb",
        "chartmogul_url": entry["chartmogul-url"],
        "owner": None,
        "website_url": entry.get("website_url"),
        "raw": entry,
    }


# Strings that must round-trip exactly through COPY, jsonb and back.
TRICKY_STRINGS = [
    "Zoë Ørsted — 東京 🚀 \u00a0nbsp",
    'O\'Brien "quoted" `back` ; DROP TABLE chartmogul.customers; --',
    "back\\slash \\N \\t literal, tab\there, newline\nthere, cr\rthere",
    "percent %s %(x)s {0} $1 $$dollar$$ E'\\x00'",
    "\\",
    "",
    " leading and trailing ",
    "\u200b zero width, \u202e rtl override, \U0001f468\u200d\U0001f469\u200d\U0001f467 family",
]
