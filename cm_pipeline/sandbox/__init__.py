"""A ChartMogul-compatible local HTTP API for the demo and the tests (stdlib only).

    python -m cm_pipeline.sandbox --port 8089 --customers 100000 [--seed 1] [--api-key K] [--latency-ms L]
        [--rate-limit RPS] [--retry-after S] [--max-connections C] [--fault-rate F] [--fault-kinds 500,drop]
        [--fault-phase before|after] [--fault-methods POST,PATCH] [--fault-seed N]

Base URL http://127.0.0.1:PORT/v1; HTTP Basic with the key as username (any non-empty key without --api-key).
In Python: SandboxServer (in-process thread), SandboxProcess (child process), SandboxControl (/_sandbox/ admin).

Choices where the reference pages leave room (all deliberate, all tested):
- POST /v1/customers answers 201 with the customer; its status is "Active" as create-customer.txt's example shows.
- PATCH with an `attributes` object replaces tags AND custom; whichever of the two it omits becomes empty
  (update-customer.txt: "Any tags and custom attributes not specified in this object will be deleted").
  A PATCH without `attributes` leaves both untouched. Custom keys must already be defined (422 naming the key).
- Add-by-email for an email with no customer: 404 {"code":404,"message":...,"param":"email"}; nothing is defined.
- Field validation failures use {"<field>": ["msg"], "error_details": [{"param","code","message"}]} with 422;
  missing/bad parameters use {"code":400,"message":...,"param":...}; duplicate external_id and unknown data
  source use the documented {"errors": {...}} and {"error": "Data source not found"} shapes (422).
- Cursors are opaque base64 of (last id, filters); a cursor sent with different filters is a 400.
"""

from cm_pipeline.sandbox.app import SandboxServer
from cm_pipeline.sandbox.control import SandboxControl, SandboxControlError
from cm_pipeline.sandbox.process import SandboxProcess

__all__ = ["SandboxControl", "SandboxControlError", "SandboxProcess", "SandboxServer"]
