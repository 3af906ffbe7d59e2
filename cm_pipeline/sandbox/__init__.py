"""A ChartMogul-compatible local HTTP API for the demo and the tests (stdlib only).

    python -m cm_pipeline.sandbox --port 8089 --customers 100000 [--seed 1] [--account uniform|realistic]
        [--state-file PATH] [--legacy-page-fields on|off] [--api-key K] [--latency-ms L] [--rate-limit RPS]
        [--retry-after S] [--max-connections C] [--fault-rate F] [--fault-kinds 500,drop]
        [--fault-phase before|after] [--fault-methods POST,PATCH] [--fault-seed N]
        [--pagination-fault repeat_cursor|rewind_cursor|has_more_without_cursor]

Base URL http://127.0.0.1:PORT/v1; HTTP Basic with the key as username (any non-empty key without --api-key).
Routes: GET /v1/customers, GET /v1/customers/search?email=, GET|PATCH /v1/customers/{uuid},
POST /v1/customers, POST /v1/customers/attributes/custom, GET /v1/data_sources.
In Python: SandboxServer (in-process thread), SandboxProcess (child process), SandboxControl (/_sandbox/ admin);
both servers take customers, seed, account, state_file, api_key and every knob of faults.Knobs as keywords.
Inside: server.py (HTTP plumbing, auth, knobs), api.py (/v1 routing), listing.py (list, search, data sources),
writes.py (the API's writes), admin.py (/_sandbox/ routes and writes), store.py (account state, indexes),
paging.py (filters, cursors), journal.py (the state file), validation.py and attributes.py (request checks),
responses.py (bodies, error shapes), faults.py (knobs), seed.py (data, account shapes).

Choices where the reference pages leave room (all deliberate, all tested):
- POST /v1/customers answers 201 with the customer; its status is "Active" as create-customer.txt's example shows.
- PATCH with an `attributes` object replaces tags AND custom; whichever of the two it omits becomes empty
  (update-customer.txt: "Any tags and custom attributes not specified in this object will be deleted").
  A PATCH without `attributes` leaves both untouched. Custom keys must already be defined (422 naming the key).
- POST /v1/customers only into a Custom data source; any other (Stripe, Recurly, ...) answers 422
  {"errors": {"data_source_uuid": "..."}}. Why: list-customers.txt says customers created using the API
  belong to Custom data sources (filter data_source_uuid of a Custom source, or system=Custom, to find them)
  and create-customer.txt's response shows "billing-system-type": "Custom"; an integration's source is fed
  by its billing system, not by the API. An unknown data source stays the documented 422 "Data source not
  found".
- Add-by-email for an email with no customer: 404 {"code":404,"message":...,"param":"email"}; no key is
  defined. Why: the page shows only the matched case; the API's documented "not found" is a 404 in the
  {code,message,param} shape, and a 200 with empty entries would let a mistyped email pass as success.
  (A client should still treat an empty `entries` as "nobody matched".)
- address.country is the ISO 3166-1 alpha-2 code ("US"), the same as the top-level country. Why: the pages
  disagree (create-customer.txt's example and the create/retrieve field lists say the full name, "United
  States"), but list-customers.txt's field description says "country code ... as per the ISO-3166 alpha-2
  standard", and the JSON examples of list, retrieve and update all show "US". address.state stays the full
  name ("Alaska"), as the list, retrieve and create examples show (update's example alone shows "CA").
- Custom attributes of type Timestamp are answered as list/retrieve-customer.txt show them: UTC
  "2023-09-08 00:00:00" (a non-zero fraction of a second is kept, "2023-09-08 00:00:00.25", so no instant
  is lost). Inputs take any ISO 8601 form. lead_created_at / free_trial_started_at keep the
  "2022-10-14T00:00:00.000Z" form of create- and update-customer.txt.
- Custom attribute values (add-custom-attributes-by-email.txt's formats), 422 naming the key otherwise:
  String a JSON string of at most 255 characters (42 or true are rejected, not stringified: every String in
  the pages' examples is a JSON string); Integer a JSON integer or a string of ASCII digits with an optional
  leading "-" ("+5", "7.0", 7.0, "٣", booleans rejected: "only numeric characters"); Decimal a JSON number
  (not a boolean, finite) or a decimal string such as "12.5", "-.5", "1e3" ("1_000", "nan", "inf" rejected);
  Boolean one of TRUE, true, t, 1, FALSE, false, f, 0 (or a JSON boolean, or the JSON numbers 0 and 1).
- Field validation failures use {"<field>": ["msg"], "error_details": [{"param","code","message"}]} with 422;
  missing/bad parameters use {"code":400,"message":...,"param":...}; duplicate external_id and unknown data
  source use the documented {"errors": {...}} and {"error": "Data source not found"} shapes (422).
- Cursors are opaque base64 of (last id, filters); a cursor sent with different filters is a 400, and so is
  a search cursor sent to List Customers or the other way round.
- The deprecated first-page fields (`page`, `per_page`, `current_page`, `total_pages`) are a knob,
  legacy_page_fields, on by default as before: list-customers.txt says a first page *may* carry them, so
  a client must work without them (off). Never on an external_id look-up (README facts).
- Two account shapes (seed.py): "uniform" (the default; byte for byte the data of earlier versions for a
  seed) and "realistic" (README and issue 11: ~45% Cancelled, ~35% Active, one Stripe data source with
  ~70%, smaller Recurly/Chargebee/Braintree ones, one Custom one, a Stripe one never imported, ~2% merged
  customers, system tags).
- Merged customers (README): data_source_uuids and external_ids hold every merged record's, the primary's
  first; a data_source_uuid filter lists them under each of those data sources (so walking every data
  source sees a merged customer once per data source), external_id matches any of theirs, and `system`
  matches the primary's billing system. A create that reuses a merged record's (data source, external id)
  is the duplicate 422. The admin door's merge (SandboxControl.merge_customers) also sums MRR/ARR.
- System tags (`merged-customer`, `auto-churned-delinquent-subscription`) are ordinary tags to the API: a
  PATCH `attributes` that omits one deletes it, as on the real API (the pusher must carry them over).
- GET /v1/customers/search?email= (README): the customers whose email equals EMAIL in any case, compared
  as str.lower() of both, the same match as add-custom-attributes-by-email, so the search finds exactly
  whom the POST would change; paged like List Customers (per_page <= 200, default 200; deprecated fields
  on its first page under the same knob); a missing or blank email is the 400 naming `email`; no match on
  a first page is 404 {"code":404,"message":"Can't find any customers with email: \\"EMAIL\\"","param":"email"}
  with EMAIL as sent. GET /v1/customers/search is never read as a customer uuid; PATCH of that path
  still is (404 Customer not found).
- GET /v1/data_sources: every data source in one answer (no paging), filters `name` and `system` exact
  and case-sensitive like List Customers' `system`; created_at in the README's form, status "idle"
  ("never_imported" for one with no customers, as ChartMogul's clients' recorded answers show).
  Data sources named by admin-inserted customers are created (system Custom unless given).
- --state-file PATH: seeding stays as it is, then the journal of every change since is replayed (resulting
  documents, not requests: no validation or clock on replay); a file of another seed, size or account is
  refused. Without it nothing is kept. See journal.py.
"""

from cm_pipeline.sandbox.app import SandboxServer
from cm_pipeline.sandbox.control import SandboxControl, SandboxControlError
from cm_pipeline.sandbox.process import SandboxProcess

__all__ = ["SandboxControl", "SandboxControlError", "SandboxProcess", "SandboxServer"]
